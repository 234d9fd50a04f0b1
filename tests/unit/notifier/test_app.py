"""The notifier through its ASGI app: push auth, decoding, statuses, mails."""

from __future__ import annotations

import asyncio
import base64
import threading
from dataclasses import replace

import httpx
import pytest

from services.notifier.domain import MailDeferred, MailRejected
from services.notifier.main import create_app
from services.notifier.settings import NotifierSettings

PUSH_PATH = "/_ah/push-handlers/task-events"


@pytest.fixture
def app(settings, fake_mailer):
    return create_app(settings, mailer=fake_mailer)


@pytest.fixture
def client(app):
    with app.test_client() as client:
        yield client


@pytest.fixture
def push(client, settings):
    token = settings.common.push_token

    def push(body: dict) -> httpx.Response:
        return client.post(PUSH_PATH, params={"token": token}, json=body)

    return push


def test_a_processed_event_mails_the_owner_once_even_when_redelivered(
    push, fake_mailer, make_processed, make_envelope
):
    event = make_processed(task_id=7, version=1)

    first = push(make_envelope(event, message_id="m-1"))
    again = push(make_envelope(event, message_id="m-1", attempt=2))

    assert first.status_code == 204, first.text
    assert again.status_code == 204, again.text
    assert len(fake_mailer.sent) == 1
    mail = fake_mailer.sent[0]
    assert mail.recipient == "ada@example.com"
    assert mail.sender == "Audiomill <noreply@audiomill.example>"
    assert "https://audiomill.example/api/tasks/7/converted" in mail.text


def test_a_failed_event_mails_the_reason(push, fake_mailer, make_failed, make_envelope):
    response = push(make_envelope(make_failed(task_id=8)))

    assert response.status_code == 204, response.text
    (mail,) = fake_mailer.sent
    assert mail.key.kind == "failed"
    assert "The file is not valid audio." in mail.text
    assert "The file is not valid audio." in mail.html


def test_the_html_part_escapes_the_filename(
    push, fake_mailer, make_processed, make_envelope
):
    event = make_processed(filename="<script>alert('x')</script>.wav")
    assert push(make_envelope(event)).status_code == 204

    (mail,) = fake_mailer.sent
    assert "<script>" not in mail.html
    assert "&lt;script&gt;" in mail.html


def test_a_retryable_mail_fault_is_answered_503_and_the_retry_sends(
    push, fake_mailer, make_processed, make_envelope
):
    body = make_envelope(make_processed(task_id=9))
    fake_mailer.fail_with = MailDeferred("SendGrid 429: slow down")

    refused = push(body)
    assert refused.status_code == 503
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.headers["retry-after"].isdigit()
    assert "slow down" not in refused.text
    assert fake_mailer.sent == []

    fake_mailer.fail_with = None
    assert push(body).status_code == 204
    assert len(fake_mailer.sent) == 1


def test_a_mail_the_provider_refuses_is_acknowledged_and_not_retried(
    push, fake_mailer, make_processed, make_envelope
):
    body = make_envelope(make_processed(task_id=10))
    fake_mailer.fail_with = MailRejected("SendGrid 400: invalid to address")
    assert push(body).status_code == 204

    fake_mailer.fail_with = None
    assert push(body).status_code == 204
    assert fake_mailer.sent == []


@pytest.mark.parametrize(
    "body",
    [
        {"message": {"data": base64.b64encode(b"not json").decode()}},
        {"message": {"data": base64.b64encode(b'{"type": "task.processed"}').decode()}},
        {"subscription": "projects/local/subscriptions/notifier-task-events"},
    ],
    ids=["not-json", "missing-fields", "no-message"],
)
def test_a_message_that_can_never_be_handled_is_acknowledged(push, fake_mailer, body):
    response = push(body)
    assert response.status_code == 204, response.text
    assert fake_mailer.sent == []


def test_an_event_of_another_schema_is_acknowledged(
    push, fake_mailer, make_processed, make_envelope
):
    event = make_processed()
    del event["download_path"]
    assert push(make_envelope(event)).status_code == 204
    assert fake_mailer.sent == []


@pytest.mark.parametrize("params", [{}, {"token": "wrong"}])
def test_a_push_without_the_token_is_refused_with_a_challenge(
    client, fake_mailer, make_processed, make_envelope, params
):
    response = client.post(
        PUSH_PATH, params=params, json=make_envelope(make_processed())
    )
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Token")
    assert response.headers["content-type"] == "application/problem+json"
    assert fake_mailer.sent == []


def test_healthz_checks_the_database(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_an_unreachable_database_is_answered_503(
    settings, fake_mailer, make_processed, make_envelope
):
    # Nothing listens on port 1: the connection is refused at once.
    common = replace(
        settings.common, database_url="postgresql+psycopg2://postgres@127.0.0.1:1/x"
    )
    app = create_app(replace(settings, common=common), mailer=fake_mailer)
    token = settings.common.push_token

    with app.test_client() as client:
        health = client.get("/healthz")
        pushed = client.post(
            PUSH_PATH, params={"token": token}, json=make_envelope(make_processed())
        )

    assert health.status_code == 503
    assert pushed.status_code == 503
    assert "127.0.0.1" not in pushed.text
    assert fake_mailer.sent == []


def test_two_concurrent_deliveries_send_one_mail(
    app, settings, fake_mailer, make_processed, make_envelope
):
    body = make_envelope(make_processed(task_id=11))
    url = f"{PUSH_PATH}?token={settings.common.push_token}"
    fake_mailer.hold = threading.Event()

    async def deliver_twice() -> tuple[int, int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            first = asyncio.create_task(http.post(url, json=body))
            assert await asyncio.to_thread(fake_mailer.entered.wait, 10)
            second = await http.post(url, json=body)
            fake_mailer.hold.set()
            return (await first).status_code, second.status_code

    first, second = asyncio.run(deliver_twice())

    assert (first, second) == (204, 503)
    assert len(fake_mailer.sent) == 1


def test_with_oidc_push_auth_a_push_without_a_bearer_token_is_refused(
    tmp_path, database_url, fake_mailer, make_processed, make_envelope
):
    settings = NotifierSettings.from_env(
        {
            "VAR_DIR": str(tmp_path),
            "DATABASE_URL": database_url,
            "PUSH_AUTH": "oidc",
            "PUSH_AUDIENCE": "https://notifier.example/",
            "PUSH_SERVICE_ACCOUNT": "push@project.iam.gserviceaccount.com",
        }
    )
    with create_app(settings, mailer=fake_mailer).test_client() as client:
        response = client.post(
            PUSH_PATH,
            params={"token": "a shared token is not enough here"},
            json=make_envelope(make_processed()),
        )
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert fake_mailer.sent == []


def test_healthz_fails_until_the_migrations_have_run(settings, tmp_path, fake_mailer):
    empty = f"sqlite:///{tmp_path / 'not-migrated.db'}"
    common = replace(settings.common, database_url=empty)
    app = create_app(replace(settings, common=common), mailer=fake_mailer)
    with app.test_client() as client:
        response = client.get("/healthz")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
