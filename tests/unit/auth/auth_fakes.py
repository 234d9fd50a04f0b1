"""Test doubles and constants shared by the auth tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

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
