from __future__ import annotations

from datetime import timedelta

import pytest

from services.notifier.domain import ClaimState, NotificationKey
from services.notifier.notification_log import SqlNotificationLog
from services.shared.db import make_engine, make_session_factory
from tests.unit.notifier.notifier_fakes import FakeClock, claim_at_once

KEY = NotificationKey(7, 1, "processed")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def notifications(database_url, clock):
    engine = make_engine(database_url)
    yield SqlNotificationLog(
        make_session_factory(engine), timedelta(minutes=5), clock=clock
    )
    engine.dispose()


def test_first_claim_wins_and_a_second_is_busy(notifications):
    state, claim = notifications.claim(KEY, "ada@example.com", "e-1")
    assert state is ClaimState.CLAIMED and claim is not None

    assert notifications.claim(KEY, "ada@example.com", "e-1") == (ClaimState.BUSY, None)
    assert notifications.status_of(KEY) == "claimed"


def test_a_sent_notification_is_done(notifications):
    _state, claim = notifications.claim(KEY, "ada@example.com", "e-1")
    notifications.mark_sent(claim)

    assert notifications.claim(KEY, "ada@example.com", "e-2") == (ClaimState.DONE, None)
    assert notifications.status_of(KEY) == "sent"


def test_a_rejected_notification_is_done(notifications):
    _state, claim = notifications.claim(KEY, "ada@example.com", "e-1")
    notifications.mark_rejected(claim, "SendGrid 400: bad address")

    assert notifications.claim(KEY, "ada@example.com", "e-1")[0] is ClaimState.DONE
    assert notifications.status_of(KEY) == "rejected"


def test_a_released_claim_can_be_claimed_again(notifications):
    _state, claim = notifications.claim(KEY, "ada@example.com", "e-1")
    notifications.release(claim)

    assert notifications.status_of(KEY) is None
    assert notifications.claim(KEY, "ada@example.com", "e-1")[0] is ClaimState.CLAIMED


def test_each_version_and_kind_is_its_own_notification(notifications):
    for key in (
        KEY,
        NotificationKey(7, 2, "processed"),
        NotificationKey(7, 1, "failed"),
    ):
        assert notifications.claim(key, "ada@example.com", "e")[0] is ClaimState.CLAIMED


def test_a_stale_claim_is_taken_over_and_the_old_holder_loses_it(notifications, clock):
    _state, old = notifications.claim(KEY, "ada@example.com", "e-1")

    clock.now += timedelta(minutes=4)
    assert notifications.claim(KEY, "ada@example.com", "e-1")[0] is ClaimState.BUSY

    clock.now += timedelta(minutes=2)
    state, new = notifications.claim(KEY, "ada@example.com", "e-1")
    assert state is ClaimState.CLAIMED and new.token != old.token

    # The holder that timed out can neither finish nor release the new claim.
    notifications.release(old)
    notifications.mark_sent(old)
    assert notifications.status_of(KEY) == "claimed"
    notifications.mark_sent(new)
    assert notifications.status_of(KEY) == "sent"


def test_concurrent_claims_give_exactly_one_winner(notifications):
    states = claim_at_once(notifications, KEY, 8)

    assert states.count(ClaimState.CLAIMED) == 1
    assert states.count(ClaimState.BUSY) == 7
