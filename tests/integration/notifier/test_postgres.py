"""The notification log on PostgreSQL: migrations, and one winner among
concurrent deliveries of the same event."""

from __future__ import annotations

from datetime import timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from services.notifier.domain import ClaimState, NotificationKey
from services.notifier.main import create_app
from services.notifier.models import Base
from services.notifier.notification_log import SqlNotificationLog
from services.shared.db import make_engine, make_session_factory, upgrade
from tests.unit.notifier.notifier_fakes import MIGRATIONS, FakeClock, claim_at_once

KEY = NotificationKey(41, 1, "processed")
PUSH_PATH = "/_ah/push-handlers/task-events"


pytestmark = pytest.mark.postgres


@pytest.fixture
def engine(postgres_database):
    url = postgres_database("notifier")
    upgrade(url, MIGRATIONS)
    engine = make_engine(url, pool_size=10)
    yield engine
    engine.dispose()


@pytest.fixture
def notifications(engine):
    return SqlNotificationLog(make_session_factory(engine), timedelta(minutes=5))


def test_migrations_match_the_models(engine):
    with engine.connect() as connection:
        differences = compare_metadata(
            MigrationContext.configure(connection), Base.metadata
        )
    assert differences == []


def test_concurrent_claims_give_exactly_one_winner(notifications):
    states = claim_at_once(notifications, KEY, 10)

    assert states.count(ClaimState.CLAIMED) == 1
    assert states.count(ClaimState.BUSY) == 9


def test_sent_rejected_and_released_claims(notifications):
    _state, claim = notifications.claim(KEY, "ada@example.com", "e-1")
    notifications.release(claim)
    _state, claim = notifications.claim(KEY, "ada@example.com", "e-1")
    notifications.mark_sent(claim)
    assert notifications.claim(KEY, "ada@example.com", "e-2") == (ClaimState.DONE, None)
    assert notifications.status_of(KEY) == "sent"

    other = NotificationKey(41, 2, "failed")
    _state, claim = notifications.claim(other, "ada@example.com", "e-3")
    notifications.mark_rejected(claim, "x" * 900)
    assert notifications.status_of(other) == "rejected"


def test_a_stale_claim_is_taken_over_on_postgresql(engine):
    clock = FakeClock()
    notifications = SqlNotificationLog(
        make_session_factory(engine), timedelta(minutes=5), clock=clock
    )
    _state, old = notifications.claim(KEY, "ada@example.com", "e-1")

    clock.now += timedelta(minutes=4)
    assert notifications.claim(KEY, "ada@example.com", "e-1")[0] is ClaimState.BUSY
    clock.now += timedelta(minutes=2)
    state, new = notifications.claim(KEY, "ada@example.com", "e-1")

    assert state is ClaimState.CLAIMED and new.token != old.token


def test_the_app_sends_once_on_postgresql(
    engine, make_settings, make_processed, make_envelope, tmp_path
):
    url = engine.url.render_as_string(hide_password=False)
    settings = make_settings(DATABASE_URL=url)
    body = make_envelope(make_processed(task_id=42))
    params = {"token": settings.common.push_token}

    with create_app(settings).test_client() as client:
        statuses = [
            client.post(PUSH_PATH, params=params, json=body).status_code
            for _ in range(3)
        ]
        health = client.get("/healthz")

    assert statuses == [204, 204, 204]
    assert health.status_code == 200
    assert len(list((tmp_path / "outbox").glob("task-42-v1-processed-*.eml"))) == 1
