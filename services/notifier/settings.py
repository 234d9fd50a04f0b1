"""The notifier's settings, read once at start."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parseaddr
from urllib.parse import urlsplit

from services.shared.config import CommonSettings, ConfigError, Env

SERVICE = "notifier"
DEFAULT_MAIL_FROM = "Audiomill <noreply@audiomill.localhost>"


@dataclass(frozen=True)
class NotifierSettings:
    common: CommonSettings
    mail_from: str
    sendgrid_api_key: str | None
    sendgrid_api_host: str | None
    mail_timeout_seconds: float
    claim_timeout_seconds: int

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> NotifierSettings:
        env = Env(environ)
        common = CommonSettings.from_env(SERVICE, environ)
        common.check_push_auth()
        settings = cls(
            common=common,
            mail_from=env.str("MAIL_FROM", DEFAULT_MAIL_FROM) or DEFAULT_MAIL_FROM,
            sendgrid_api_key=env.str("SENDGRID_API_KEY"),
            sendgrid_api_host=env.str("SENDGRID_API_HOST"),
            mail_timeout_seconds=env.float("MAIL_TIMEOUT_SECONDS", 10.0, minimum=1.0),
            claim_timeout_seconds=env.int("MAIL_CLAIM_TIMEOUT_SECONDS", 300, minimum=1),
        )
        settings.check()
        return settings

    def check(self) -> None:
        if "@" not in parseaddr(self.mail_from)[1]:
            raise ConfigError(f"MAIL_FROM must be an address, got {self.mail_from!r}")
        scheme = urlsplit(self.common.mail_url).scheme
        if scheme == "sendgrid" and not self.sendgrid_api_key:
            raise ConfigError("SENDGRID_API_KEY must be set when MAIL_URL=sendgrid://")
        if self.claim_timeout_seconds <= 3 * self.mail_timeout_seconds:
            raise ConfigError(
                "MAIL_CLAIM_TIMEOUT_SECONDS must be more than three times "
                "MAIL_TIMEOUT_SECONDS, so a slow send is never taken over"
            )
