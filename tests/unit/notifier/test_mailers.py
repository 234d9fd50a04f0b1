from __future__ import annotations

import email
import email.policy
from pathlib import Path

import pytest

from services.notifier.domain import MailDeferred, NotificationKey, OutgoingMail
from services.notifier.mailers import (
    FileMailer,
    SendGridMailer,
    SmtpMailer,
    open_mailer,
)
from services.shared.config import ConfigError


def a_mail(task_id: int = 7, version: int = 2) -> OutgoingMail:
    return OutgoingMail(
        key=NotificationKey(task_id, version, "processed"),
        sender="Audiomill <noreply@audiomill.example>",
        recipient="ada@example.com",
        subject="song.mp3 is ready as ogg",
        text="Your file song.mp3 is ready.\n",
        html="<p>Your file <strong>song.mp3</strong> is ready.</p>\n",
        headers={"X-Audiomill-Task": str(task_id)},
    )


def test_file_mailer_writes_one_complete_eml_named_for_the_task(tmp_path):
    outbox = tmp_path / "outbox"
    FileMailer(outbox).send(a_mail())

    files = sorted(outbox.iterdir())
    assert len(files) == 1, files
    assert files[0].name.startswith("task-7-v2-processed-")
    assert files[0].suffix == ".eml"

    message = email.message_from_bytes(
        files[0].read_bytes(), policy=email.policy.default
    )
    assert message["To"] == "ada@example.com"
    assert message["From"] == "Audiomill <noreply@audiomill.example>"
    assert message["Subject"] == "song.mp3 is ready as ogg"
    assert message["X-Audiomill-Task"] == "7"
    assert message["Message-ID"]
    assert message.get_body(("plain",)).get_content() == a_mail().text
    assert message.get_body(("html",)).get_content() == a_mail().html


def test_file_mailer_keeps_a_second_send_beside_the_first(tmp_path):
    mailer = FileMailer(tmp_path)
    mailer.send(a_mail())
    mailer.send(a_mail())
    assert len(list(tmp_path.glob("task-7-v2-processed-*.eml"))) == 2


def test_file_mailer_that_cannot_finish_defers_and_leaves_nothing(
    tmp_path, monkeypatch
):
    def refuse(_source, _target):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("services.notifier.mailers.os.replace", refuse)
    with pytest.raises(MailDeferred, match="No space left"):
        FileMailer(tmp_path).send(a_mail())
    assert list(tmp_path.iterdir()) == []


def test_file_mailer_whose_outbox_is_a_file_defers(tmp_path):
    blocker = tmp_path / "outbox"
    blocker.write_text("not a directory")
    with pytest.raises(MailDeferred):
        FileMailer(blocker).send(a_mail())


def test_mail_url_file_relative_and_absolute(tmp_path):
    assert open_mailer("file://var/outbox").directory == Path("var/outbox")
    assert open_mailer(f"file://{tmp_path}/out").directory == tmp_path / "out"
    with pytest.raises(ConfigError):
        open_mailer("file://")


def test_mail_url_smtp_with_login_and_starttls():
    mailer = open_mailer(
        "smtp://mailer%40example.com:p%3Ass@smtp.example.com:587?starttls=1",
        timeout=3,
    )
    assert isinstance(mailer, SmtpMailer)
    assert (mailer.host, mailer.port) == ("smtp.example.com", 587)
    assert mailer.username == "mailer@example.com"
    assert mailer.password == "p:ss"
    assert mailer.starttls is True
    assert mailer.timeout == 3


def test_mail_url_smtp_plain():
    mailer = open_mailer("smtp://127.0.0.1:2525")
    assert isinstance(mailer, SmtpMailer)
    assert mailer.username is None
    assert mailer.starttls is False
    assert open_mailer("smtp://relay.example.com").port == 25


def test_mail_url_smtp_needs_a_host_and_a_numeric_port():
    with pytest.raises(ConfigError):
        open_mailer("smtp://:25")
    with pytest.raises(ConfigError):
        open_mailer("smtp://host:notaport")


def test_mail_url_sendgrid_needs_a_key_and_takes_a_host():
    with pytest.raises(ConfigError, match="SENDGRID_API_KEY"):
        open_mailer("sendgrid://")

    default = open_mailer("sendgrid://", sendgrid_api_key="SG.x")
    assert isinstance(default, SendGridMailer)
    assert default.host == "https://api.sendgrid.com"

    from_setting = open_mailer(
        "sendgrid://", sendgrid_api_key="SG.x", sendgrid_host="http://127.0.0.1:9/"
    )
    assert from_setting.host == "http://127.0.0.1:9"

    from_url = open_mailer(
        "sendgrid://?host=http://127.0.0.1:8/",
        sendgrid_api_key="SG.x",
        sendgrid_host="http://127.0.0.1:9",
    )
    assert from_url.host == "http://127.0.0.1:8"


def test_mail_url_other_schemes_are_refused():
    with pytest.raises(ConfigError):
        open_mailer("mailgun://")


def test_file_mailer_keeps_non_ascii_names_intact(tmp_path):
    name = "Grüße — 日本の歌 " + "x" * 200 + ".mp3"
    mail = OutgoingMail(
        key=NotificationKey(3, 1, "processed"),
        sender="Audiomill <noreply@audiomill.example>",
        recipient="ada@example.com",
        subject=f"{name} is ready as ogg",
        text=f"Your file {name} is ready.\n",
        html=f"<p>Your file {name} is ready.</p>\n",
    )
    FileMailer(tmp_path).send(mail)

    (path,) = tmp_path.glob("*.eml")
    raw = path.read_bytes()
    assert raw.isascii(), "headers and bodies are transfer-encoded"
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert message["Subject"] == f"{name} is ready as ogg"
    assert message.get_body(("plain",)).get_content() == mail.text
    assert message.get_body(("html",)).get_content() == mail.html
