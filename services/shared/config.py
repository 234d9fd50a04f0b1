"""Settings, read once at start from the environment into typed objects.

A service builds its settings in its app factory and fails there, with a
message naming the setting, when a value is missing or malformed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit


class ConfigError(Exception):
    """A setting is missing or malformed; the message names it."""


class Env:
    """Typed access to an environment mapping."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = os.environ if environ is None else environ

    def str(self, name: str, default: str | None = None) -> str | None:
        value = self._environ.get(name)
        return default if value is None or value == "" else value

    def int(self, name: str, default: int, minimum: int | None = None) -> int:
        return self._number(name, default, minimum, int, "an integer")

    def float(self, name: str, default: float, minimum: float | None = None) -> float:
        return self._number(name, default, minimum, float, "a number")

    def _number(self, name: str, default, minimum, parse, kind: str):
        raw = self._environ.get(name)
        if raw is None or raw == "":
            return default
        try:
            value = parse(raw)
        except ValueError:
            value = None
        if value is None or not math.isfinite(value):
            raise ConfigError(f"{name} must be {kind}, got {raw!r}")
        if minimum is not None and value < minimum:
            raise ConfigError(f"{name} must be at least {minimum}, got {value}")
        return value

    def bool(self, name: str, default: bool) -> bool:
        raw = self._environ.get(name)
        if raw is None or raw == "":
            return default
        lowered = raw.strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        raise ConfigError(f"{name} must be true or false, got {raw!r}")

    def url(self, name: str, default: str, schemes: tuple[str, ...]) -> str:
        value = self.str(name, default) or default
        scheme = urlsplit(value).scheme.split("+", 1)[0]
        if scheme not in schemes:
            allowed = ", ".join(f"{s}://" for s in schemes)
            raise ConfigError(f"{name} must start with one of {allowed}; got {value!r}")
        return value

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = (self.str(name, default) or default).strip().lower()
        if value not in choices:
            raise ConfigError(
                f"{name} must be one of {', '.join(choices)}; got {value!r}"
            )
        return value


def var_dir(env: Env) -> Path:
    """Where the embedded backends keep their data (``VAR_DIR``, default var/)."""
    return Path(env.str("VAR_DIR", "var") or "var").resolve()


PUSH_AUTH_MODES = ("token", "oidc")


@dataclass(frozen=True)
class CommonSettings:
    """The settings every service reads, whatever it does."""

    service: str
    var_dir: Path
    database_url: str
    database_pool_size: int
    storage_url: str
    bus_url: str
    mail_url: str
    push_auth: str
    push_token: str | None
    push_audience: str | None
    push_service_account: str | None
    public_base_url: str
    log_level: str

    @classmethod
    def from_env(
        cls, service: str, environ: Mapping[str, str] | None = None
    ) -> CommonSettings:
        env = Env(environ)
        root = var_dir(env)
        push_auth = env.choice("PUSH_AUTH", "token", PUSH_AUTH_MODES)
        return cls(
            service=service,
            var_dir=root,
            database_url=env.url(
                "DATABASE_URL",
                f"sqlite:///{root / (service + '.db')}",
                ("sqlite", "postgresql"),
            ),
            database_pool_size=env.int("DATABASE_POOL_SIZE", 5, minimum=1),
            storage_url=env.url(
                "STORAGE_URL", f"file://{root / 'storage'}", ("file", "gs")
            ),
            bus_url=env.url("BUS_URL", "relay://127.0.0.1:8085", ("relay", "pubsub")),
            mail_url=env.url(
                "MAIL_URL", f"file://{root / 'outbox'}", ("file", "smtp", "sendgrid")
            ),
            push_auth=push_auth,
            push_token=env.str("PUSH_TOKEN"),
            push_audience=env.str("PUSH_AUDIENCE"),
            push_service_account=env.str("PUSH_SERVICE_ACCOUNT"),
            public_base_url=(
                env.str("PUBLIC_BASE_URL", "http://127.0.0.1:8080") or ""
            ).rstrip("/"),
            log_level=env.choice(
                "LOG_LEVEL", "info", ("debug", "info", "warning", "error")
            ).upper(),
        )

    def check_push_auth(self) -> None:
        """Fail fast where a service that receives pushes lacks their secret."""
        if self.push_auth == "token" and not self.push_token:
            raise ConfigError("PUSH_TOKEN must be set when PUSH_AUTH=token")
        if self.push_auth == "oidc" and not (
            self.push_audience and self.push_service_account
        ):
            raise ConfigError(
                "PUSH_AUDIENCE and PUSH_SERVICE_ACCOUNT must be set when PUSH_AUTH=oidc"
            )
