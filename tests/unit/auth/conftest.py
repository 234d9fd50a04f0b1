"""Fixtures for the auth domain tests: a migrated SQLite database in a
temporary directory, a clock the test moves, cheap password hashing and one
signing key for the whole session."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.auth.accounts import Accounts, ThrottlePolicy
from services.auth.passwords import Passwords
from services.shared.db import make_engine, make_session_factory, upgrade
from services.shared.tokens import generate_key_pem
from tests.unit.auth.auth_fakes import CHEAP, MIGRATIONS, FakeClock


@pytest.fixture(scope="session")
def signing_key_pem() -> bytes:
    return generate_key_pem()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def passwords() -> Passwords:
    return Passwords(CHEAP)


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'auth.db'}"
    upgrade(url, MIGRATIONS)
    return url


@pytest.fixture
def sessions(database_url: str):
    engine = make_engine(database_url)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def accounts(sessions, passwords, clock) -> Accounts:
    return Accounts(sessions, passwords, ThrottlePolicy(5, 900), clock)
