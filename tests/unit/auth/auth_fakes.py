"""Test doubles and constants shared by the auth tests."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

from services.auth.errors import InvalidCredentials, TooManyAttempts
from services.auth.passwords import HashCost

MIGRATIONS = Path(__file__).resolve().parents[3] / "services/auth/migrations"
# Cheap enough for a fast suite; the rules under test do not depend on cost.
CHEAP = HashCost(time_cost=1, memory_cost_kib=8, parallelism=1)
PASSWORD = "correct horse battery"


class FakeClock:
    """A clock that stands still until the test moves it."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def guess_at_once(accounts, name: str, guesses: int) -> list[str]:
    """Fire ``guesses`` wrong log-ins for ``name`` in parallel; the sorted
    names of what each got."""
    start = threading.Barrier(guesses)

    def guess(number: int) -> str:
        start.wait(10)
        try:
            accounts.login(name, f"guess {number}")
        except (InvalidCredentials, TooManyAttempts) as refused:
            return type(refused).__name__
        return "accepted"

    with ThreadPoolExecutor(guesses) as pool:
        return sorted(pool.map(guess, range(guesses)))
