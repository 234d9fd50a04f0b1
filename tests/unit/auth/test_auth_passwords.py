"""argon2id hashing, and an unknown account costing what a wrong password
costs."""

from __future__ import annotations

import contextlib
import statistics
import time

from services.auth.passwords import HashCost, Passwords
from tests.unit.auth.auth_fakes import PASSWORD


def test_hashes_are_argon2id_with_the_configured_cost():
    passwords = Passwords(HashCost(time_cost=2, memory_cost_kib=16, parallelism=1))

    hashed = passwords.hash(PASSWORD)

    assert hashed.startswith("$argon2id$v=19$m=16,t=2,p=1$")
    assert passwords.verify(hashed, PASSWORD)
    assert not passwords.verify(hashed, PASSWORD + "x")


def test_a_damaged_hash_verifies_nothing(passwords):
    assert not passwords.verify("not-a-hash", PASSWORD)
    assert not passwords.verify("", PASSWORD)


def test_the_dummy_check_is_always_false(passwords):
    assert passwords.verify_dummy(PASSWORD) is False


def test_a_cost_change_asks_for_a_rehash():
    old = Passwords(HashCost(1, 8, 1)).hash(PASSWORD)

    assert Passwords(HashCost(2, 8, 1)).needs_rehash(old)
    assert not Passwords(HashCost(1, 8, 1)).needs_rehash(old)


def _median_ms(action, runs: int = 15) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def test_an_unknown_account_costs_about_what_a_wrong_password_costs(accounts, clock):
    # A cost high enough that hashing, not the database, dominates.
    from services.auth.accounts import Accounts, SignupForm, ThrottlePolicy
    from services.auth.errors import InvalidCredentials

    real = Accounts(
        accounts._sessions,
        Passwords(HashCost(1, 4096, 1)),
        ThrottlePolicy(10**6, 1),
        clock,
    )
    real.signup(SignupForm("ada", "ada@example.com", PASSWORD))

    def attempt(identifier):
        def run():
            clock.advance(2)
            with contextlib.suppress(InvalidCredentials):
                real.login(identifier, "wrong password")

        return run

    wrong = _median_ms(attempt("ada"))
    unknown = _median_ms(attempt("nobody"))

    assert 0.6 < unknown / wrong < 1.6, (unknown, wrong)
