"""Fixtures for the tasks service's unit and service tests: a migrated SQLite
database per test (copied from one migrated per session), storage in a
temporary directory, a recording publisher and a signing key made here. The
service tests build their app in ``test_tasks_service``."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from services.shared.db import make_engine, make_session_factory, upgrade
from services.shared.tokens import TokenSigner, generate_key_pem
from services.tasks.domain import Owner, TaskService
from services.tasks.outbox import Outbox
from services.tasks.results import ResultApplier
from tests.unit.tasks.tasks_fakes import (
    AUDIENCE,
    ISSUER,
    FakePublisher,
    FakeStorage,
)

MIGRATIONS = Path(__file__).resolve().parents[3] / "services/tasks/migrations"
PUSH_TOKEN = "push-secret"
LIMIT = 256 * 1024


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tasks-template") / "tasks.db"
    upgrade(f"sqlite:///{path}", MIGRATIONS)
    return path


@pytest.fixture
def database_url(tmp_path: Path, migrated_template: Path) -> str:
    path = tmp_path / "tasks.db"
    shutil.copyfile(migrated_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def sessions(database_url: str):
    engine = make_engine(database_url)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def storage(tmp_path: Path) -> FakeStorage:
    return FakeStorage(tmp_path / "storage")


@pytest.fixture
def publisher() -> FakePublisher:
    return FakePublisher()


@pytest.fixture
def outbox(sessions, publisher) -> Outbox:
    return Outbox(sessions, publisher)


@pytest.fixture
def service(sessions, storage, outbox) -> TaskService:
    return TaskService(sessions, storage, outbox, max_upload_bytes=LIMIT)


@pytest.fixture
def results(sessions, storage, outbox) -> ResultApplier:
    return ResultApplier(sessions, storage, outbox)


@pytest.fixture
def owner() -> Owner:
    return Owner("1", "ada", "ada@example.com")


@pytest.fixture(scope="session")
def signing_key_pem() -> bytes:
    return generate_key_pem()


@pytest.fixture(scope="session")
def public_key_pem(signing_key_pem: bytes) -> bytes:
    key = serialization.load_pem_private_key(signing_key_pem, password=None)
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.fixture(scope="session")
def signer(signing_key_pem: bytes) -> TokenSigner:
    return TokenSigner(signing_key_pem, ISSUER, AUDIENCE, 3600)


@pytest.fixture
def auth(signer) -> dict[str, str]:
    token, _ = signer.issue("1", "ada", "ada@example.com")
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def other_auth(signer) -> dict[str, str]:
    token, _ = signer.issue("2", "grace", "grace@example.com")
    return {"Authorization": f"Bearer {token}"}
