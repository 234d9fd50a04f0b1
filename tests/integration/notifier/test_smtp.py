"""SmtpMailer and the app against a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import email
import email.policy
import socket
import time
from dataclasses import replace

import pytest

from services.notifier.domain import (
    MailDeferred,
    MailRejected,
    NotificationKey,
    OutgoingMail,
)
from services.notifier.mailers import SmtpMailer, open_mailer
from services.notifier.main import create_app


def a_mail(recipient: str = "ada@example.com") -> OutgoingMail:
    return OutgoingMail(
        key=NotificationKey(5, 2, "failed"),
        sender="Audiomill <noreply@audiomill.example>",
        recipient=recipient,
        subject="song.mp3 could not be converted to ogg",
        text="It failed.\n",
        html="<p>It failed.</p>\n",
        headers={"X-Audiomill-Task": "5"},
    )


def parsed(raw: bytes) -> email.message.EmailMessage:
    # SMTP carries CRLF line ends; compare the text as written.
    return email.message_from_bytes(
        raw.replace(b"\r\n", b"\n"), policy=email.policy.default
    )


def test_plain_smtp_delivers_both_parts(smtp_server):
    open_mailer(f"smtp://127.0.0.1:{smtp_server.port}").send(a_mail())

    ((recipients, raw),) = smtp_server.handler.messages
    assert recipients == ["ada@example.com"]
    message = parsed(raw)
    assert message["Subject"] == "song.mp3 could not be converted to ogg"
    assert message["X-Audiomill-Task"] == "5"
    assert message.get_body(("plain",)).get_content() == "It failed.\n"
    assert message.get_body(("html",)).get_content() == "<p>It failed.</p>\n"


def test_starttls_and_login_deliver(smtp_tls_server):
    url = (
        f"smtp://mailer:s3cret%3Apass@127.0.0.1:{smtp_tls_server.port}"
        f"?starttls=1&cafile={smtp_tls_server.cafile}"
    )
    open_mailer(url).send(a_mail())

    assert smtp_tls_server.logins == [("mailer", "s3cret:pass")]
    assert len(smtp_tls_server.handler.messages) == 1


def test_a_wrong_password_is_retried_not_dropped(smtp_tls_server):
    url = (
        f"smtp://mailer:wrong@127.0.0.1:{smtp_tls_server.port}"
        f"?starttls=1&cafile={smtp_tls_server.cafile}"
    )
    with pytest.raises(MailDeferred, match="login refused"):
        open_mailer(url).send(a_mail())
    assert smtp_tls_server.handler.messages == []


def test_a_certificate_we_do_not_trust_stops_the_send(smtp_tls_server):
    # The system trust store does not know the test CA.
    mailer = SmtpMailer(
        "127.0.0.1",
        smtp_tls_server.port,
        username="mailer",
        password="s3cret:pass",
        starttls=True,
    )
    with pytest.raises(MailDeferred, match="CERTIFICATE_VERIFY_FAILED"):
        mailer.send(a_mail())
    assert smtp_tls_server.logins == []


def test_without_starttls_a_server_that_requires_it_defers(smtp_tls_server):
    mailer = SmtpMailer("127.0.0.1", smtp_tls_server.port)
    with pytest.raises(MailDeferred):
        mailer.send(a_mail())
    assert smtp_tls_server.handler.messages == []


def test_a_permanent_refusal_is_rejected(smtp_server):
    mailer = SmtpMailer("127.0.0.1", smtp_server.port)
    with pytest.raises(MailRejected, match="550"):
        mailer.send(a_mail("refuse-permanent@example.com"))


def test_a_permanent_refusal_of_the_message_is_rejected(smtp_server):
    mailer = SmtpMailer("127.0.0.1", smtp_server.port)
    with pytest.raises(MailRejected, match="554"):
        mailer.send(a_mail("refuse-message@example.com"))
    assert smtp_server.handler.messages == []


def test_a_refused_sender_is_retried_not_dropped(smtp_server):
    # MAIL_FROM is refused for every mail: a setting to fix, not this mail.
    mail = replace(a_mail(), sender="Audiomill <refuse-sender@audiomill.example>")
    with pytest.raises(MailDeferred, match="553"):
        SmtpMailer("127.0.0.1", smtp_server.port).send(mail)
    assert smtp_server.handler.messages == []


def test_a_temporary_refusal_is_deferred(smtp_server):
    mailer = SmtpMailer("127.0.0.1", smtp_server.port)
    with pytest.raises(MailDeferred, match="451"):
        mailer.send(a_mail("refuse-temporary@example.com"))


def test_a_server_that_is_not_there_defers(smtp_server):
    port = smtp_server.port
    mailer = SmtpMailer("127.0.0.1", port + 1 if port < 65535 else port - 1, timeout=2)
    with pytest.raises(MailDeferred):
        mailer.send(a_mail())


def test_the_app_mails_through_smtp_once_per_version(
    smtp_server, make_settings, make_processed, make_envelope
):
    settings = make_settings(MAIL_URL=f"smtp://127.0.0.1:{smtp_server.port}")
    app = create_app(settings)
    params = {"token": settings.common.push_token}
    path = "/_ah/push-handlers/task-events"

    with app.test_client() as client:
        for _delivery in range(2):
            response = client.post(
                path, params=params, json=make_envelope(make_processed(version=1))
            )
            assert response.status_code == 204, response.text
        response = client.post(
            path, params=params, json=make_envelope(make_processed(version=2))
        )
        assert response.status_code == 204, response.text

    messages = [parsed(raw) for _to, raw in smtp_server.handler.messages]
    assert [m["X-Audiomill-Version"] for m in messages] == ["1", "2"]
    html = messages[0].get_body(("html",)).get_content()
    assert "&lt;b&gt;song&lt;/b&gt;.mp3" in html
    assert "http://127.0.0.1:8080/api/tasks/21/converted" in html
    text = messages[0].get_body(("plain",)).get_content()
    assert "12.3 MB" in text and "1:01" in text


def test_the_app_answers_503_while_the_server_refuses_for_now(
    smtp_server, make_settings, make_processed, make_envelope
):
    settings = make_settings(MAIL_URL=f"smtp://127.0.0.1:{smtp_server.port}")
    body = make_envelope(make_processed(email="refuse-temporary@example.com"))
    with create_app(settings).test_client() as client:
        response = client.post(
            "/_ah/push-handlers/task-events",
            params={"token": settings.common.push_token},
            json=body,
        )
    assert response.status_code == 503
    assert smtp_server.handler.messages == []


def test_a_server_that_never_greets_times_out_and_defers():
    # A listening socket nobody accepts on: the connection opens, no
    # greeting ever comes.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        mailer = SmtpMailer("127.0.0.1", port, timeout=0.3)
        started = time.monotonic()
        with pytest.raises(MailDeferred, match="timed out"):
            mailer.send(a_mail())
    assert time.monotonic() - started < 3


def test_non_ascii_names_arrive_intact(smtp_server):
    name = "Grüße — 日本の歌.mp3"
    mail = replace(
        a_mail(),
        subject=f"{name} could not be converted to ogg",
        text=f"{name} failed.\n",
        html=f"<p>{name} failed.</p>\n",
    )
    SmtpMailer("127.0.0.1", smtp_server.port).send(mail)

    ((_to, raw),) = smtp_server.handler.messages
    message = parsed(raw)
    assert message["Subject"] == f"{name} could not be converted to ogg"
    assert message.get_body(("plain",)).get_content() == f"{name} failed.\n"
