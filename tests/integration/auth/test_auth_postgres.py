"""The auth service on a real PostgreSQL server: its migrations, the sign-up,
log-in and throttle flow through the app, and the throttle holding under
concurrent attempts from several instances."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, func, inspect, select, text
from starlette.testclient import TestClient

from services.auth.accounts import Accounts, SignupForm, ThrottlePolicy
from services.auth.errors import AccountTaken, InvalidCredentials
from services.auth.main import create_app
from services.auth.models import Base, LoginFailure, User
from services.auth.passwords import HashCost, Passwords
from services.auth.settings import AuthSettings
from services.shared.db import make_engine, make_session_factory, upgrade
from services.shared.tokens import generate_key_pem
from tests.unit.auth.auth_fakes import (
    CHEAP,
    MIGRATIONS,
    PASSWORD,
    FakeClock,
    guess_at_once,
)

pytestmark = pytest.mark.postgres
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def database_url(postgres_database) -> str:
    url = postgres_database("auth")
    upgrade(url, MIGRATIONS)
    return url


@pytest.fixture(scope="module")
def engine(database_url):
    engine = make_engine(database_url, pool_size=12)
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine):
    with engine.begin() as connection:
        connection.execute(text("TRUNCATE users, login_failures RESTART IDENTITY"))
    return make_session_factory(engine)


@pytest.fixture(scope="module")
def signing_key() -> str:
    return generate_key_pem().decode()


def app_on(database_url: str, signing_key: str, tmp_path: Path, clock: FakeClock):
    settings = AuthSettings.from_env(
        {
            "VAR_DIR": str(tmp_path),
            "DATABASE_URL": database_url,
            "AUTH_SIGNING_KEY": signing_key,
        }
    )
    return create_app(settings, clock=clock, passwords=Passwords(CHEAP))


def count(sessions, model) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(model))


# Migrations


def test_the_migrations_build_exactly_the_models(engine):
    with engine.connect() as connection:
        differences = compare_metadata(
            MigrationContext.configure(connection), Base.metadata
        )

    assert differences == []


def test_the_migrate_command_applies_and_reapplies_cleanly(postgres_database):
    url = postgres_database("auth_cli")
    environ = {**os.environ, "DATABASE_URL": url, "VAR_DIR": "/nonexistent-var"}

    for _ in range(2):
        done = subprocess.run(
            [sys.executable, "-m", "services.shared.migrate", "auth"],
            cwd=ROOT,
            env=environ,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr

    migrated = create_engine(url)
    try:
        tables = set(inspect(migrated).get_table_names())
        with migrated.connect() as connection:
            version = connection.execute(
                text("SELECT version_num FROM alembic_version")
            )
            assert version.scalar() == "0002"
    finally:
        migrated.dispose()
    assert {"users", "login_failures"} <= tables


def test_the_migrations_go_down_and_up_again(postgres_database):
    from alembic import command

    from services.shared.db import alembic_config

    url = postgres_database("auth_down")
    upgrade(url, MIGRATIONS)
    command.downgrade(alembic_config(url, MIGRATIONS), "base")
    upgrade(url, MIGRATIONS)

    migrated = create_engine(url)
    try:
        assert {"users", "login_failures"} <= set(inspect(migrated).get_table_names())
    finally:
        migrated.dispose()


# The flow through the app


def test_signup_login_me_and_the_throttle(
    database_url, signing_key, sessions, tmp_path
):
    clock = FakeClock()
    body = {
        "user": "Ada",
        "email": "Ada@Example.com",
        "password1": PASSWORD,
        "password2": PASSWORD,
    }
    with TestClient(app_on(database_url, signing_key, tmp_path, clock)) as client:
        created = client.post("/api/auth/signup", json=body)
        assert created.status_code == 201, created.text
        again = {**body, "user": "ADA", "email": "other@example.com"}
        assert client.post("/api/auth/signup", json=again).status_code == 409
        assert count(sessions, User) == 1

        login = client.post(
            "/api/auth/login", data={"email": "ada@example.com", "password": PASSWORD}
        )
        assert login.status_code == 200, login.text
        token = login.json()["token"]
        me = client.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})
        assert me.json() == created.json()

        for _ in range(5):
            wrong = {"username": "ada", "password": "bad guess"}
            assert client.post("/api/auth/login", json=wrong).status_code == 401
        clock.advance(30)
        locked = client.post(
            "/api/auth/login", json={"username": "ada", "password": PASSWORD}
        )
        assert locked.status_code == 429
        assert locked.headers["retry-after"] == "870"
        assert locked.headers["content-type"].startswith("application/problem+json")

        clock.advance(870)
        again = client.post(
            "/api/auth/login", json={"username": "ada", "password": PASSWORD}
        )
        assert again.status_code == 200

    assert client.get("/healthz").status_code == 200


def test_the_throttle_state_is_shared_by_instances(
    database_url, signing_key, sessions, tmp_path
):
    clock = FakeClock()
    first = TestClient(app_on(database_url, signing_key, tmp_path, clock))
    second = TestClient(app_on(database_url, signing_key, tmp_path, clock))
    body = {
        "username": "ada",
        "email": "ada@example.com",
        "password1": PASSWORD,
        "password2": PASSWORD,
    }
    with first, second:
        assert first.post("/api/auth/signup", json=body).status_code == 201
        for _ in range(5):
            wrong = {"username": "ada", "password": "bad guess"}
            assert first.post("/api/auth/login", json=wrong).status_code == 401

        locked = second.post(
            "/api/auth/login", json={"username": "ada", "password": PASSWORD}
        )

    assert locked.status_code == 429


def test_timestamps_come_back_in_utc(sessions):
    accounts = Accounts(sessions, Passwords(CHEAP), ThrottlePolicy(), FakeClock())
    user = accounts.signup(SignupForm("ada", "ada@example.com", PASSWORD))

    with sessions() as session:
        stored = session.get(User, user.id)
    assert stored.created_at == FakeClock().now
    assert stored.created_at.utcoffset().total_seconds() == 0


def test_failures_that_left_the_window_go_for_every_account(sessions):
    clock = FakeClock()
    accounts = Accounts(sessions, Passwords(CHEAP), ThrottlePolicy(5, 900), clock)
    for name in ("typo-1", "typo-2", "typo-3"):
        with pytest.raises(InvalidCredentials):
            accounts.login(name, "wrong password")

    clock.advance(901)
    with pytest.raises(InvalidCredentials):
        accounts.login("someone-else", "wrong password")

    assert count(sessions, LoginFailure) == 1


# Concurrency


def test_a_burst_of_guesses_gets_no_more_than_the_allowed_failures(sessions):
    # A hash slow enough that unserialised attempts would overlap.
    passwords = Passwords(HashCost(1, 2048, 1), concurrency=10)
    accounts = Accounts(sessions, passwords, ThrottlePolicy(5, 900))
    accounts.signup(SignupForm("ada", "ada@example.com", PASSWORD))

    outcomes = guess_at_once(accounts, "ada", 10)

    assert outcomes == ["InvalidCredentials"] * 5 + ["TooManyAttempts"] * 5
    assert count(sessions, LoginFailure) == 5


def test_two_signups_racing_for_one_name_leave_one_account(sessions):
    accounts = Accounts(sessions, Passwords(CHEAP), ThrottlePolicy())
    start = threading.Barrier(6)

    def sign_up(number: int) -> str:
        start.wait(10)
        try:
            accounts.signup(SignupForm("Ada", f"ada{number}@example.com", PASSWORD))
        except AccountTaken:
            return "taken"
        return "created"

    with ThreadPoolExecutor(6) as pool:
        outcomes = list(pool.map(sign_up, range(6)))

    assert sorted(outcomes) == ["created"] + ["taken"] * 5
    assert count(sessions, User) == 1


def test_concurrent_right_passwords_all_get_in(sessions):
    accounts = Accounts(
        sessions, Passwords(HashCost(1, 2048, 1), concurrency=4), ThrottlePolicy()
    )
    accounts.signup(SignupForm("ada", "ada@example.com", PASSWORD))

    with ThreadPoolExecutor(10) as pool:
        users = list(pool.map(lambda _: accounts.login("ada", PASSWORD), range(10)))

    assert {user.username for user in users} == {"ada"}
    assert count(sessions, LoginFailure) == 0
