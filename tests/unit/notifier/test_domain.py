from __future__ import annotations

from datetime import timedelta

import pytest

from services.notifier.compose import TemplateComposer
from services.notifier.domain import (
    MailDeferred,
    MailRejected,
    NotificationInProgress,
    NotificationKey,
    Notifier,
    Outcome,
)
from services.notifier.notification_log import SqlNotificationLog
from services.shared.db import make_engine, make_session_factory


@pytest.fixture
def notifications(database_url):
    engine = make_engine(database_url)
    yield SqlNotificationLog(make_session_factory(engine), timedelta(minutes=5))
    engine.dispose()


@pytest.fixture
def notifier(notifications, fake_mailer) -> Notifier:
    composer = TemplateComposer("noreply@audiomill.example", "http://127.0.0.1:8080")
    return Notifier(notifications, fake_mailer, composer)


def test_an_event_sends_one_mail_and_a_redelivery_none(
    notifier, notifications, fake_mailer, make_processed
):
    event = make_processed(task_id=3, version=1)

    assert notifier.notify(event) is Outcome.SENT
    assert notifier.notify(event) is Outcome.DUPLICATE
    assert notifier.notify(dict(event, event_id="another-id")) is Outcome.DUPLICATE

    assert len(fake_mailer.sent) == 1
    assert fake_mailer.sent[0].key == NotificationKey(3, 1, "processed")
    assert notifications.status_of(NotificationKey(3, 1, "processed")) == "sent"


def test_each_task_version_gets_its_own_mail(notifier, fake_mailer, make_processed):
    notifier.notify(make_processed(task_id=3, version=1))
    notifier.notify(make_processed(task_id=3, version=2))
    assert [mail.key.version for mail in fake_mailer.sent] == [1, 2]


def test_a_deferred_mail_releases_its_claim_so_the_retry_sends(
    notifier, notifications, fake_mailer, make_failed
):
    event = make_failed(task_id=4)
    fake_mailer.fail_with = MailDeferred("SendGrid 429")

    with pytest.raises(MailDeferred):
        notifier.notify(event)
    assert notifications.status_of(NotificationKey(4, 1, "failed")) is None

    fake_mailer.fail_with = None
    assert notifier.notify(event) is Outcome.SENT
    assert len(fake_mailer.sent) == 1


def test_an_unexpected_fault_releases_the_claim_too(
    notifier, notifications, fake_mailer, make_processed
):
    fake_mailer.fail_with = RuntimeError("bug in a provider library")
    with pytest.raises(RuntimeError):
        notifier.notify(make_processed(task_id=5))
    assert notifications.status_of(NotificationKey(5, 1, "processed")) is None


def test_a_rejected_mail_is_recorded_and_never_tried_again(
    notifier, notifications, fake_mailer, make_processed
):
    event = make_processed(task_id=6)
    fake_mailer.fail_with = MailRejected("SendGrid 400: invalid address")

    assert notifier.notify(event) is Outcome.REJECTED
    fake_mailer.fail_with = None
    assert notifier.notify(event) is Outcome.DUPLICATE
    assert fake_mailer.sent == []
    assert notifications.status_of(NotificationKey(6, 1, "processed")) == "rejected"


def test_a_delivery_while_another_is_sending_is_told_to_come_back(
    notifier, notifications, make_processed
):
    event = make_processed(task_id=8)
    notifications.claim(NotificationKey(8, 1, "processed"), "ada@example.com", "x")
    with pytest.raises(NotificationInProgress):
        notifier.notify(event)


def test_an_owner_without_an_address_is_acknowledged_without_a_claim(
    notifier, notifications, fake_mailer, make_processed
):
    event = make_processed(task_id=9)
    event["owner"]["email"] = "not-an-address"
    assert notifier.notify(event) is Outcome.UNDELIVERABLE
    assert fake_mailer.sent == []
    assert notifications.status_of(NotificationKey(9, 1, "processed")) is None


def test_other_event_types_are_ignored(notifier, fake_mailer, make_processed):
    event = dict(make_processed(), type="task.archived")
    assert notifier.notify(event) is Outcome.IGNORED
    assert fake_mailer.sent == []
