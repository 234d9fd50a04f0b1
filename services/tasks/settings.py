"""The tasks service's settings, read once at start."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from services.shared.config import CommonSettings, Env

MIB = 1024 * 1024


@dataclass(frozen=True)
class TasksSettings:
    common: CommonSettings
    jwks_url: str
    token_issuer: str
    token_audience: str
    max_upload_bytes: int
    outbox_flush_seconds: float
    signed_url_seconds: int
    validate_responses: bool

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TasksSettings:
        env = Env(environ)
        common = CommonSettings.from_env("tasks", environ)
        common.check_push_auth()
        return cls(
            common=common,
            jwks_url=env.url(
                "AUTH_JWKS_URL",
                f"{common.public_base_url}/api/auth/jwks.json",
                ("http", "https"),
            ),
            token_issuer=env.str("TOKEN_ISSUER", "audiomill-auth") or "",
            token_audience=env.str("TOKEN_AUDIENCE", "audiomill") or "",
            max_upload_bytes=env.int("MAX_UPLOAD_BYTES", 32 * MIB, minimum=1),
            outbox_flush_seconds=env.float("OUTBOX_FLUSH_SECONDS", 5.0, minimum=0.1),
            signed_url_seconds=env.int("SIGNED_URL_SECONDS", 300, minimum=1),
            validate_responses=env.bool("VALIDATE_RESPONSES", False),
        )
