"""The mail providers behind ``Mailer``, one per ``MAIL_URL`` scheme.

- ``file://DIR``: one ``.eml`` file per mail, for the local stack and tests.
- ``smtp://[user:pass@]host:port[?starttls=1&cafile=PATH]``: any SMTP server.
- ``sendgrid://[?host=URL]``: the SendGrid v3 API, the key from
  ``SENDGRID_API_KEY``.

Each one turns a provider answer into ``MailDeferred`` (worth delivering the
event again) or ``MailRejected`` (acknowledged, never retried).
"""

from __future__ import annotations

import logging
import os
import secrets
import smtplib
import ssl
import tempfile
import urllib.error
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import python_http_client.exceptions
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import Category, CustomArg, Header, Mail

from services.notifier.domain import MailDeferred, Mailer, MailRejected, OutgoingMail
from services.shared.config import ConfigError

log = logging.getLogger(__name__)

# The provider could not be used as configured (a bad key or password, TLS
# or login required): retrying, and past the attempt limit dead-lettering,
# keeps the mail until an operator fixes it, where acking would drop it.
_CONFIGURATION_STATUSES = frozenset({401, 403})
_SMTP_CONFIGURATION_CODES = frozenset({530, 534, 535, 538})


def to_email_message(mail: OutgoingMail) -> EmailMessage:
    """The MIME form of a mail: a text part and an HTML alternative."""
    message = EmailMessage()
    message["From"] = mail.sender
    message["To"] = mail.recipient
    message["Subject"] = mail.subject
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = make_msgid(idstring=mail.key.reference, domain="audiomill")
    for name, value in mail.headers.items():
        message[name] = value
    message.set_content(mail.text)
    message.add_alternative(mail.html, subtype="html")
    return message


class FileMailer:
    """Writes each mail to ``DIR/task-<id>-v<version>-<kind>-<stamp>.eml``.

    The file appears whole or not at all: it is written under a dot name in
    the same directory and renamed into place. The stamp keeps a second send
    of the same notification visible instead of overwriting the first.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def send(self, mail: OutgoingMail) -> None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        name = f"{mail.key.reference}-{stamp}-{secrets.token_hex(3)}.eml"
        data = bytes(to_email_message(mail))
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            descriptor, temporary = tempfile.mkstemp(
                prefix=".", suffix=".part", dir=self.directory
            )
            try:
                with os.fdopen(descriptor, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(temporary, self.directory / name)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
        except OSError as error:
            raise MailDeferred(f"cannot write to the outbox: {error}") from error
        log.info("wrote %s", self.directory / name, extra={"task_id": mail.key.task_id})


class SmtpMailer:
    """Sends through an SMTP server, with STARTTLS and login when configured."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.starttls = starttls
        self.ssl_context = ssl_context
        self.timeout = timeout

    def send(self, mail: OutgoingMail) -> None:
        message = to_email_message(mail)
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                if self.starttls:
                    smtp.starttls(
                        context=self.ssl_context or ssl.create_default_context()
                    )
                if self.username is not None:
                    smtp.login(self.username, self.password or "")
                smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused as error:
            codes = [code for code, _text in error.recipients.values()]
            _raise_for_smtp(min(codes), "refused the recipient")
        except smtplib.SMTPDataError as error:
            _raise_for_smtp(error.smtp_code, _decoded(error.smtp_error))
        except smtplib.SMTPAuthenticationError as error:
            raise MailDeferred(f"SMTP login refused ({error.smtp_code})") from error
        except smtplib.SMTPResponseException as error:
            # A refused greeting, HELO, STARTTLS or sender refuses every mail,
            # not this one: retried like a bad login, never dropped.
            code, text = error.smtp_code, _decoded(error.smtp_error)
            raise MailDeferred(f"SMTP {code}: {text}") from error
        except (smtplib.SMTPException, OSError) as error:
            # Unreachable, disconnected, TLS failure, STARTTLS not offered.
            raise MailDeferred(f"SMTP server unusable: {error}") from error


def _raise_for_smtp(code: int, text: str) -> None:
    if 500 <= code < 600 and code not in _SMTP_CONFIGURATION_CODES:
        raise MailRejected(f"SMTP {code}: {text}")
    raise MailDeferred(f"SMTP {code}: {text}")


def _decoded(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


class SendGridMailer:
    """Sends through the SendGrid v3 API client (``POST /v3/mail/send``)."""

    def __init__(
        self,
        api_key: str,
        host: str = "https://api.sendgrid.com",
        timeout: float = 10.0,
    ) -> None:
        self.host = host
        self._client = SendGridAPIClient(api_key=api_key, host=host)
        # The client passes this to every urllib request it makes.
        self._client.client.timeout = timeout

    def send(self, mail: OutgoingMail) -> None:
        message = Mail(
            from_email=mail.sender,
            to_emails=mail.recipient,
            subject=mail.subject,
            plain_text_content=mail.text,
            html_content=mail.html,
        )
        for name, value in mail.headers.items():
            message.header = Header(name, value)
        message.category = Category(f"task-{mail.key.kind}")
        message.custom_arg = [
            CustomArg("task_id", str(mail.key.task_id)),
            CustomArg("version", str(mail.key.version)),
            CustomArg("kind", mail.key.kind),
        ]
        try:
            response = self._client.send(message)
        except python_http_client.exceptions.HTTPError as error:
            status = error.status_code
            detail = _decoded(error.body or b"")[:300]
            if status == 429 or status >= 500 or status in _CONFIGURATION_STATUSES:
                raise MailDeferred(f"SendGrid {status}: {detail}") from error
            raise MailRejected(f"SendGrid {status}: {detail}") from error
        except (urllib.error.URLError, OSError) as error:
            raise MailDeferred(f"SendGrid unreachable: {error}") from error
        log.info(
            "SendGrid accepted %s (%s)",
            mail.key.reference,
            response.status_code,
            extra={"task_id": mail.key.task_id},
        )


def open_mailer(
    url: str,
    *,
    sendgrid_api_key: str | None = None,
    sendgrid_host: str | None = None,
    timeout: float = 10.0,
) -> Mailer:
    """The ``Mailer`` that ``MAIL_URL`` names."""
    parts = urlsplit(url)
    query = {name: values[-1] for name, values in parse_qs(parts.query).items()}
    if parts.scheme == "file":
        path = unquote(parts.netloc + parts.path)
        if not path:
            raise ConfigError("MAIL_URL file:// needs a directory")
        return FileMailer(Path(path))
    if parts.scheme == "smtp":
        if not parts.hostname:
            raise ConfigError("MAIL_URL smtp:// needs a host")
        try:
            port = parts.port or 25
        except ValueError:
            raise ConfigError(f"MAIL_URL has a bad port: {url!r}") from None
        cafile = query.get("cafile")
        context = ssl.create_default_context(cafile=cafile) if cafile else None
        return SmtpMailer(
            parts.hostname,
            port,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            starttls=query.get("starttls", "0").lower() in {"1", "true", "yes"},
            ssl_context=context,
            timeout=timeout,
        )
    if parts.scheme == "sendgrid":
        if not sendgrid_api_key:
            raise ConfigError("SENDGRID_API_KEY must be set when MAIL_URL=sendgrid://")
        host = query.get("host") or sendgrid_host or "https://api.sendgrid.com"
        return SendGridMailer(sendgrid_api_key, host=host.rstrip("/"), timeout=timeout)
    raise ConfigError(f"MAIL_URL scheme {parts.scheme!r} is not supported")
