"""The account rules: sign-up checks, case-insensitive uniqueness, log-in and
its throttle, against a real (SQLite) database and a clock the test moves."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from services.auth.accounts import (
    Accounts,
    SignupForm,
    ThrottlePolicy,
    check_signup,
    login_identifier,
)
from services.auth.errors import (
    AccountsUnavailable,
    AccountTaken,
    InvalidCredentials,
    InvalidLogin,
    InvalidSignup,
    TooManyAttempts,
)
from services.auth.models import LoginFailure, User
from services.auth.passwords import HashCost, Passwords
from tests.unit.auth.auth_fakes import PASSWORD, FakeClock, guess_at_once


def fields(**changes):
    base = {
        "username": "ada",
        "email": "ada@example.com",
        "password1": PASSWORD,
        "password2": PASSWORD,
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def signup(accounts: Accounts, username="ada", email="ada@example.com") -> User:
    return accounts.signup(SignupForm(username, email, PASSWORD))


# Sign-up rules


def test_a_valid_signup_is_normalised():
    form = check_signup(fields(username="  Ada ", email=" Ada@Example.com "))

    assert form == SignupForm("Ada", "Ada@Example.com", PASSWORD)


def test_the_first_versions_user_field_names_the_account():
    form = check_signup(fields(username=None, user="ada"))

    assert form.username == "ada"


def test_username_and_user_may_both_come_when_they_agree():
    assert check_signup(fields(user="ada")).username == "ada"


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"username": None}, "`username` is required"),
        ({"username": "  "}, "`username` is required"),
        ({"user": "bob"}, "once, as `username` or as `user`"),
        ({"username": "ab"}, "3 to 32"),
        ({"username": "a" * 33}, "3 to 32"),
        ({"username": "ada lovelace"}, "3 to 32"),
        ({"username": "ada@home"}, "3 to 32"),
        ({"email": None}, "`email` is required"),
        ({"email": "ada"}, "name@example.com"),
        ({"email": "ada@example"}, "name@example.com"),
        ({"email": "ada@@example.com"}, "name@example.com"),
        ({"email": "ada lovelace@example.com"}, "name@example.com"),
        ({"email": "@example.com"}, "name@example.com"),
        ({"email": "ada@example."}, "name@example.com"),
        ({"email": "a" * 250 + "@example.com"}, "at most 254"),
        ({"password1": "short", "password2": "short"}, "at least 8 characters"),
        ({"password1": None, "password2": None}, "at least 8 characters"),
        ({"password2": PASSWORD + "!"}, "`password1` and `password2` differ"),
        ({"password2": None}, "`password1` and `password2` differ"),
        ({"email": 5}, "`email` is required"),
    ],
)
def test_a_broken_rule_is_named(changes, expected):
    with pytest.raises(InvalidSignup) as refused:
        check_signup(fields(**changes))

    assert expected in refused.value.detail


def test_every_broken_rule_is_named_at_once():
    with pytest.raises(InvalidSignup) as refused:
        check_signup(fields(username="x", email="nope", password2="other"))

    detail = refused.value.detail
    assert "`username`" in detail
    assert "`email`" in detail
    assert "differ" in detail


def test_a_password_is_taken_as_typed_spaces_included():
    form = check_signup(fields(password1="  spaced  ", password2="  spaced  "))

    assert form.password == "  spaced  "


# Sign-up against the database


def test_signup_stores_an_argon2id_hash_and_lowercased_keys(accounts, sessions):
    user = signup(accounts, "Ada", "Ada@Example.com")

    with sessions() as session:
        stored = session.get(User, user.id)
    assert (stored.username, stored.username_key) == ("Ada", "ada")
    assert (stored.email, stored.email_key) == ("Ada@Example.com", "ada@example.com")
    assert stored.password_hash.startswith("$argon2id$")
    assert PASSWORD not in stored.password_hash
    assert stored.created_at.tzinfo is not None


@pytest.mark.parametrize(
    ("username", "email", "expected"),
    [
        ("ADA", "other@example.com", "username 'ADA' is taken"),
        ("other", "ADA@EXAMPLE.COM", "An account with this email exists"),
        ("Ada", "Ada@example.com", "username 'Ada' is taken"),
    ],
)
def test_a_taken_name_is_refused_whatever_its_case(
    accounts, sessions, username, email, expected
):
    signup(accounts)

    with pytest.raises(AccountTaken, match=expected):
        signup(accounts, username, email)
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(User)) == 1


def test_a_signup_losing_a_race_is_told_the_name_is_taken(accounts, monkeypatch):
    signup(accounts)
    answers = iter([None, "The username 'ada' is taken; choose another."])
    monkeypatch.setattr(Accounts, "_taken", staticmethod(lambda *_: next(answers)))

    with pytest.raises(AccountTaken, match="taken"):
        signup(accounts, "ada", "second@example.com")


# Log-in


def test_login_identifier_prefers_the_username_then_the_email():
    assert login_identifier({"username": "ada", "email": "x@y.z"}) == "ada"
    assert login_identifier({"email": " ada@example.com "}) == "ada@example.com"
    with pytest.raises(InvalidLogin, match="`username` or `email`"):
        login_identifier({"password": PASSWORD})


@pytest.mark.parametrize(
    "identifier", ["ada", "ADA", "ada@example.com", "Ada@EXAMPLE.com"]
)
def test_login_by_username_or_email_ignores_case(accounts, identifier):
    user = signup(accounts)

    assert accounts.login(identifier, PASSWORD).id == user.id


def test_unknown_account_and_wrong_password_are_refused_alike(accounts):
    signup(accounts)

    with pytest.raises(InvalidCredentials) as wrong:
        accounts.login("ada", "wrong password")
    with pytest.raises(InvalidCredentials) as unknown:
        accounts.login("nobody", PASSWORD)

    assert wrong.value.detail == unknown.value.detail


class FakePasswords(Passwords):
    """Real hashing that also counts the verifications spent."""

    def __init__(self) -> None:
        super().__init__(HashCost(1, 8, 1))
        self.verified = 0
        self.dummies = 0

    def verify(self, password_hash: str, password: str) -> bool:
        self.verified += 1
        return super().verify(password_hash, password)

    def verify_dummy(self, password: str) -> bool:
        self.dummies += 1
        return super().verify_dummy(password)


def test_an_unknown_account_costs_one_verification(sessions, clock):
    fake = FakePasswords()
    accounts = Accounts(sessions, fake, ThrottlePolicy(), clock)

    with pytest.raises(InvalidCredentials):
        accounts.login("nobody", PASSWORD)

    assert fake.dummies == 1


# The throttle


def fail(accounts: Accounts, identifier: str, times: int) -> None:
    for _ in range(times):
        with pytest.raises(InvalidCredentials):
            accounts.login(identifier, "wrong password")


def test_five_failures_lock_the_account_even_for_the_right_password(accounts, clock):
    signup(accounts)
    fail(accounts, "ada", 5)

    clock.advance(60)
    with pytest.raises(TooManyAttempts) as locked:
        accounts.login("ada", PASSWORD)

    assert locked.value.retry_after == 900 - 60
    assert "840 seconds" in locked.value.detail


def test_the_lock_lifts_when_the_oldest_failure_leaves_the_window(accounts, clock):
    signup(accounts)
    for _ in range(5):
        fail(accounts, "ada", 1)
        clock.advance(100)

    # Failures at 0, 100, ..., 400 s; now is 500 s: the first ages out at 900 s.
    with pytest.raises(TooManyAttempts) as locked:
        accounts.login("ada", PASSWORD)
    assert locked.value.retry_after == 400

    clock.advance(400)
    assert accounts.login("ada", PASSWORD).username == "ada"


def test_a_failure_after_the_lock_lifts_locks_again_until_the_next_ages_out(
    accounts, clock
):
    signup(accounts)
    for _ in range(5):
        fail(accounts, "ada", 1)
        clock.advance(100)
    clock.advance(400)

    fail(accounts, "ada", 1)

    with pytest.raises(TooManyAttempts) as locked:
        accounts.login("ada", PASSWORD)
    assert locked.value.retry_after == 100


def test_failures_by_username_and_by_email_count_for_one_account(accounts):
    signup(accounts)
    fail(accounts, "ada", 3)
    fail(accounts, "ADA@example.com", 2)

    with pytest.raises(TooManyAttempts):
        accounts.login("ada", PASSWORD)


def test_a_success_clears_the_failures(accounts, sessions):
    signup(accounts)
    fail(accounts, "ada", 4)

    accounts.login("ada", PASSWORD)
    fail(accounts, "ada", 4)

    assert accounts.login("ada", PASSWORD).username == "ada"


def test_four_failures_do_not_lock(accounts):
    signup(accounts)
    fail(accounts, "ada", 4)

    assert accounts.login("ada", PASSWORD).username == "ada"


def test_one_account_locked_leaves_the_others_alone(accounts):
    signup(accounts)
    signup(accounts, "bob", "bob@example.com")
    fail(accounts, "ada", 5)

    assert accounts.login("bob", PASSWORD).username == "bob"


def test_unknown_accounts_are_throttled_like_known_ones(accounts):
    fail(accounts, "nobody", 5)

    with pytest.raises(TooManyAttempts):
        accounts.login("nobody", PASSWORD)


def test_the_throttle_lives_in_the_database_not_in_one_instance(
    sessions, passwords, clock
):
    first = Accounts(sessions, passwords, ThrottlePolicy(), clock)
    second = Accounts(sessions, passwords, ThrottlePolicy(), clock)
    signup(first)

    fail(first, "ada", 5)

    with pytest.raises(TooManyAttempts):
        second.login("ada", PASSWORD)


def test_locked_attempts_are_not_recorded_and_old_failures_are_pruned(
    accounts, sessions, clock
):
    signup(accounts)
    fail(accounts, "ada", 5)
    for _ in range(3):
        with pytest.raises(TooManyAttempts):
            accounts.login("ada", "wrong password")

    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(LoginFailure)) == 5

    clock.advance(901)
    fail(accounts, "ada", 1)
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(LoginFailure)) == 1


def test_failures_that_left_the_window_go_for_every_account(accounts, sessions, clock):
    signup(accounts)
    fail(accounts, "ada", 2)
    for name in ("typo-1", "typo-2", "typo-3"):
        fail(accounts, name, 1)

    clock.advance(901)
    fail(accounts, "someone-else", 1)

    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(LoginFailure)) == 1


def test_a_failed_clean_up_leaves_the_answer_a_401(accounts, monkeypatch):
    def unavailable(*_args):
        raise AccountsUnavailable()

    monkeypatch.setattr(Accounts, "_forget_failures_before", unavailable)

    fail(accounts, "nobody", 1)


def test_the_throttle_numbers_are_settings(sessions, passwords):
    clock = FakeClock()
    accounts = Accounts(sessions, passwords, ThrottlePolicy(2, 60), clock)
    signup(accounts)
    fail(accounts, "ada", 2)

    with pytest.raises(TooManyAttempts) as locked:
        accounts.login("ada", PASSWORD)
    assert locked.value.retry_after == 60


def test_a_hash_made_with_an_older_cost_is_upgraded_at_login(sessions, clock):
    weak = Accounts(sessions, Passwords(HashCost(1, 8, 1)), ThrottlePolicy(), clock)
    user = signup(weak)
    stronger = Passwords(HashCost(2, 16, 1))
    Accounts(sessions, stronger, ThrottlePolicy(), clock).login("ada", PASSWORD)

    with sessions() as session:
        upgraded = session.get(User, user.id).password_hash
    assert not stronger.needs_rehash(upgraded)
    assert stronger.verify(upgraded, PASSWORD)


def test_a_burst_of_guesses_gets_no_more_than_the_allowed_failures(sessions, clock):
    # SQLite ignores FOR UPDATE; its single writer must make the attempts
    # take turns, with a hash slow enough that unserialised ones would overlap.
    passwords = Passwords(HashCost(1, 2048, 1), concurrency=10)
    accounts = Accounts(sessions, passwords, ThrottlePolicy(5, 900), clock)
    signup(accounts)

    outcomes = guess_at_once(accounts, "ada", 10)

    assert outcomes == ["InvalidCredentials"] * 5 + ["TooManyAttempts"] * 5
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(LoginFailure)) == 5


def test_concurrent_right_passwords_all_get_in(sessions, clock):
    from concurrent.futures import ThreadPoolExecutor

    accounts = Accounts(
        sessions,
        Passwords(HashCost(1, 1024, 1), concurrency=4),
        ThrottlePolicy(),
        clock,
    )
    signup(accounts)

    with ThreadPoolExecutor(8) as pool:
        users = list(pool.map(lambda _: accounts.login("ada", PASSWORD), range(8)))

    assert {user.username for user in users} == {"ada"}


def test_a_name_with_no_account_is_not_kept_in_clear(accounts, sessions):
    fail(accounts, "MyS3cretPassw0rd", 1)

    with sessions() as session:
        (key,) = session.scalars(select(LoginFailure.account_key)).all()
    assert "s3cret" not in key.lower()
