"""Fixtures for the notifier against real servers: an aiosmtpd SMTP server
(plain, or STARTTLS with login under a certificate made here), and a local
HTTP server that answers like the SendGrid v3 API."""

from __future__ import annotations

import datetime
import ipaddress
import json
import socket
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from services.notifier.settings import NotifierSettings
from services.shared.db import upgrade
from tests.unit.notifier.notifier_fakes import MIGRATIONS, envelope, processed_event

SMTP_USER = "mailer"
SMTP_PASSWORD = "s3cret:pass"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- SMTP ------------------------------------------------------------------


class RecordingHandler:
    """Keeps each message; refuses senders, recipients and messages whose
    address's local part asks for it."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], bytes]] = []

    async def handle_MAIL(  # noqa: N802 - the aiosmtpd hook name
        self, server, session, envelope, address, mail_options
    ):
        if address.startswith("refuse-sender@"):
            return "553 5.7.1 Sender address rejected: not owned by you"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(  # noqa: N802 - the aiosmtpd hook name
        self, server, session, envelope, address, options
    ):
        if address.startswith("refuse-permanent@"):
            return "550 5.1.1 No such user"
        if address.startswith("refuse-temporary@"):
            return "451 4.3.0 Try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - hook
        if any(to.startswith("refuse-message@") for to in envelope.rcpt_tos):
            return "554 5.7.1 Message refused as spam"
        self.messages.append((list(envelope.rcpt_tos), envelope.original_content))
        return "250 Message accepted"


@dataclass
class SmtpServer:
    port: int
    handler: RecordingHandler
    logins: list[tuple[str, str]] = field(default_factory=list)
    cafile: Path | None = None


def _start_controller(**kwargs):
    aiosmtpd = pytest.importorskip("aiosmtpd.controller")
    controller = aiosmtpd.Controller(
        kwargs.pop("handler"), hostname="127.0.0.1", port=free_port(), **kwargs
    )
    try:
        controller.start()
    except (OSError, TimeoutError) as error:
        pytest.skip(f"aiosmtpd SMTP server not available: {error}")
    return controller


@pytest.fixture
def smtp_server():
    handler = RecordingHandler()
    controller = _start_controller(handler=handler)
    yield SmtpServer(controller.port, handler)
    controller.stop()


def _certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1/localhost signed by it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Audiomill test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = (
        directory / "ca.pem",
        directory / "server.pem",
        directory / "server-key.pem",
    )
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_path, cert_path, key_path


@pytest.fixture
def smtp_tls_server(tmp_path):
    """STARTTLS required, and AUTH (LOGIN/PLAIN) required after it."""
    from aiosmtpd.smtp import AuthResult, LoginPassword

    ca_path, cert_path, key_path = _certificates(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    handler = RecordingHandler()
    logins: list[tuple[str, str]] = []

    def authenticator(server, session, envelope, mechanism, auth_data):
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode()
        password = auth_data.password.decode()
        logins.append((login, password))
        ok = (login, password) == (SMTP_USER, SMTP_PASSWORD)
        return AuthResult(success=ok, handled=False)

    controller = _start_controller(
        handler=handler,
        tls_context=context,
        require_starttls=True,
        authenticator=authenticator,
        auth_required=True,
        auth_require_tls=True,
    )
    yield SmtpServer(controller.port, handler, logins, ca_path)
    controller.stop()


# --- SendGrid ----------------------------------------------------------------


class SendGridStandIn(ThreadingHTTPServer):
    """Answers ``POST /v3/mail/send`` with the next queued status (202 when
    the queue is empty) and keeps each request."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _SendGridHandler)
        self.statuses: list[int] = []
        self.requests: list[dict] = []
        self.delay_seconds = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _SendGridHandler(BaseHTTPRequestHandler):
    server: SendGridStandIn

    def do_POST(self) -> None:  # noqa: N802 - the http.server hook name
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.requests.append(
            {
                "path": self.path,
                "authorization": self.headers.get("Authorization"),
                "content_type": self.headers.get("Content-Type"),
                "json": json.loads(body or b"null"),
            }
        )
        if self.server.delay_seconds:
            threading.Event().wait(self.server.delay_seconds)
        status = self.server.statuses.pop(0) if self.server.statuses else 202
        if self.path != "/v3/mail/send":
            status = 404
        payload = (
            b""
            if status == 202
            else json.dumps(
                {"errors": [{"message": f"stand-in answered {status}"}]}
            ).encode()
        )
        self.send_response(status)
        if payload:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format, *args) -> None:  # noqa: A002 - the hook's name
        pass


@pytest.fixture
def sendgrid_api():
    server = SendGridStandIn()
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


# --- events and settings -----------------------------------------------------


@pytest.fixture
def database_url(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'notifier.db'}"
    upgrade(url, MIGRATIONS)
    return url


@pytest.fixture
def make_settings(tmp_path, database_url):
    def make(**environ: str) -> NotifierSettings:
        return NotifierSettings.from_env(
            {
                "VAR_DIR": str(tmp_path),
                "DATABASE_URL": database_url,
                "PUSH_TOKEN": "integration-push-token",
                "PUBLIC_BASE_URL": "http://127.0.0.1:8080",
                "MAIL_FROM": "Audiomill <noreply@audiomill.example>",
                **environ,
            }
        )

    return make


@pytest.fixture
def make_processed():
    def make(task_id: int = 21, version: int = 1, email: str = "ada@example.com"):
        return processed_event(
            task_id,
            version,
            owner={"id": "u-1", "username": "ada", "email": email},
            filename="<b>song</b>.mp3",
            new_format="flac",
            size_bytes=12_345_678,
            duration_seconds=61.2,
        )

    return make


@pytest.fixture
def make_envelope():
    return envelope
