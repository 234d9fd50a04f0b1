"""Fixtures for the auth service's unit and service tests: a migrated SQLite
database in a temporary directory, a clock the test moves, cheap password
hashing and one signing key for the whole session."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient

from services.auth.accounts import Accounts, ThrottlePolicy
from services.auth.main import create_app
from services.auth.passwords import Passwords
from services.auth.settings import AuthSettings
from services.shared.db import make_engine, make_session_factory, upgrade
from services.shared.tokens import generate_key_pem
from tests.unit.auth.auth_fakes import CHEAP, FakeClock

MIGRATIONS = Path(__file__).resolve().parents[3] / "services/auth/migrations"


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


@pytest.fixture
def settings(tmp_path: Path, database_url: str, signing_key_pem: bytes) -> AuthSettings:
    return AuthSettings.from_env(
        {
            "VAR_DIR": str(tmp_path),
            "DATABASE_URL": database_url,
            "AUTH_SIGNING_KEY": signing_key_pem.decode(),
        }
    )


@pytest.fixture
def client(settings, clock, passwords):
    app = create_app(settings, clock=clock, passwords=passwords)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client
