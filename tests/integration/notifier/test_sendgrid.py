"""SendGridMailer and the app against a local HTTP server standing in for
the SendGrid v3 API, reached through the API client's ``host`` setting."""

from __future__ import annotations

import pytest

from services.notifier.domain import (
    MailDeferred,
    MailRejected,
    NotificationKey,
    OutgoingMail,
)
from services.notifier.mailers import SendGridMailer, open_mailer
from services.notifier.main import create_app

PUSH_PATH = "/_ah/push-handlers/task-events"


def a_mail() -> OutgoingMail:
    return OutgoingMail(
        key=NotificationKey(9, 3, "processed"),
        sender="Audiomill <noreply@audiomill.example>",
        recipient="ada@example.com",
        subject="song.mp3 is ready as flac",
        text="Ready.\n",
        html="<p>Ready.</p>\n",
        headers={"X-Audiomill-Task": "9"},
    )


def test_a_mail_is_posted_as_the_v3_api_expects(sendgrid_api):
    mailer = open_mailer(
        f"sendgrid://?host={sendgrid_api.url}", sendgrid_api_key="SG.test-key"
    )
    mailer.send(a_mail())

    (request,) = sendgrid_api.requests
    assert request["path"] == "/v3/mail/send"
    assert request["authorization"] == "Bearer SG.test-key"
    assert request["content_type"].startswith("application/json")
    body = request["json"]
    assert body["from"] == {"name": "Audiomill", "email": "noreply@audiomill.example"}
    assert body["personalizations"][0]["to"] == [{"email": "ada@example.com"}]
    assert body["subject"] == "song.mp3 is ready as flac"
    assert body["content"] == [
        {"type": "text/plain", "value": "Ready.\n"},
        {"type": "text/html", "value": "<p>Ready.</p>\n"},
    ]
    assert body["headers"] == {"X-Audiomill-Task": "9"}
    assert body["custom_args"] == {"task_id": "9", "version": "3", "kind": "processed"}


@pytest.mark.parametrize("status", [429, 500, 503, 401, 403])
def test_rate_limits_provider_faults_and_a_bad_key_are_retried(sendgrid_api, status):
    sendgrid_api.statuses.append(status)
    with pytest.raises(MailDeferred, match=str(status)):
        SendGridMailer("SG.k", host=sendgrid_api.url).send(a_mail())


@pytest.mark.parametrize("status", [400, 413])
def test_a_mail_the_api_refuses_is_rejected(sendgrid_api, status):
    sendgrid_api.statuses.append(status)
    with pytest.raises(MailRejected, match=str(status)):
        SendGridMailer("SG.k", host=sendgrid_api.url).send(a_mail())


def test_an_api_that_is_not_there_is_retried(sendgrid_api):
    url = sendgrid_api.url
    sendgrid_api.shutdown()
    sendgrid_api.server_close()
    with pytest.raises(MailDeferred, match="unreachable"):
        SendGridMailer("SG.k", host=url, timeout=2).send(a_mail())


def test_an_api_that_does_not_answer_in_time_is_retried(sendgrid_api):
    sendgrid_api.delay_seconds = 1.0
    with pytest.raises(MailDeferred):
        SendGridMailer("SG.k", host=sendgrid_api.url, timeout=0.2).send(a_mail())


def test_the_app_retries_a_rate_limit_then_sends_once(
    sendgrid_api, make_settings, make_processed, make_envelope
):
    settings = make_settings(
        MAIL_URL="sendgrid://",
        SENDGRID_API_KEY="SG.app-key",
        SENDGRID_API_HOST=sendgrid_api.url,
    )
    body = make_envelope(make_processed(task_id=31))
    params = {"token": settings.common.push_token}
    sendgrid_api.statuses.append(429)

    with create_app(settings).test_client() as client:
        statuses = [client.post(PUSH_PATH, params=params, json=body).status_code]
        statuses += [
            client.post(PUSH_PATH, params=params, json=body).status_code
            for _ in range(2)
        ]

    assert statuses == [503, 204, 204]
    assert len(sendgrid_api.requests) == 2
    sent = sendgrid_api.requests[-1]["json"]
    assert sent["custom_args"]["task_id"] == "31"
    html = sent["content"][1]["value"]
    assert "&lt;b&gt;song&lt;/b&gt;.mp3" in html
    assert 'href="http://127.0.0.1:8080/api/tasks/31/converted"' in html


def _deliver_twice(sendgrid_api, make_settings, make_processed, make_envelope):
    settings = make_settings(
        MAIL_URL=f"sendgrid://?host={sendgrid_api.url}", SENDGRID_API_KEY="SG.k"
    )
    body = make_envelope(make_processed(task_id=32))
    params = {"token": settings.common.push_token}

    with create_app(settings).test_client() as client:
        first = client.post(PUSH_PATH, params=params, json=body)
        second = client.post(PUSH_PATH, params=params, json=body)
    return first.status_code, second.status_code


def test_the_app_acks_a_refusal_and_never_asks_again(
    sendgrid_api, make_settings, make_processed, make_envelope
):
    sendgrid_api.statuses.append(400)

    statuses = _deliver_twice(
        sendgrid_api, make_settings, make_processed, make_envelope
    )

    assert statuses == (204, 204)
    assert len(sendgrid_api.requests) == 1


def test_the_app_retries_a_provider_fault_and_the_retry_sends(
    sendgrid_api, make_settings, make_processed, make_envelope
):
    sendgrid_api.statuses.append(500)

    statuses = _deliver_twice(
        sendgrid_api, make_settings, make_processed, make_envelope
    )

    assert statuses == (503, 204)
    assert len(sendgrid_api.requests) == 2
