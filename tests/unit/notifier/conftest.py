"""Fixtures for the notifier's unit and service tests: a migrated SQLite
database in a temporary directory, a mailer that keeps what it is given,
and builders of task events and push envelopes."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.notifier.settings import NotifierSettings
from services.shared.db import upgrade
from tests.unit.notifier.notifier_fakes import (
    MIGRATIONS,
    FakeMailer,
    envelope,
    failed_event,
    processed_event,
)

PUSH_TOKEN = "unit-push-token"


@pytest.fixture
def fake_mailer() -> FakeMailer:
    return FakeMailer()


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'notifier.db'}"
    upgrade(url, MIGRATIONS)
    return url


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> NotifierSettings:
    return NotifierSettings.from_env(
        {
            "VAR_DIR": str(tmp_path),
            "DATABASE_URL": database_url,
            "PUSH_TOKEN": PUSH_TOKEN,
            "PUBLIC_BASE_URL": "https://audiomill.example/",
            "MAIL_FROM": "Audiomill <noreply@audiomill.example>",
        }
    )


@pytest.fixture
def make_processed():
    return processed_event


@pytest.fixture
def make_failed():
    return failed_event


@pytest.fixture
def make_envelope():
    return envelope
