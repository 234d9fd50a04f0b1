"""The auth service's settings, read once at start."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from services.auth.accounts import ThrottlePolicy
from services.auth.passwords import HashCost
from services.shared.config import CommonSettings, ConfigError, Env
from services.shared.tokens import load_or_create_key

SERVICE = "auth"
KEY_FILE_NAME = "auth-key.pem"


@dataclass(frozen=True)
class AuthSettings:
    common: CommonSettings
    signing_key_pem: bytes
    signing_key_source: str
    token_ttl_seconds: int
    token_issuer: str
    token_audience: str
    throttle: ThrottlePolicy
    hash_cost: HashCost
    hash_concurrency: int

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AuthSettings:
        env = Env(environ)
        common = CommonSettings.from_env(SERVICE, environ)
        key_pem, key_source = signing_key(env, common.var_dir)
        return cls(
            common=common,
            signing_key_pem=key_pem,
            signing_key_source=key_source,
            token_ttl_seconds=env.int("TOKEN_TTL_SECONDS", 3600, minimum=60),
            token_issuer=env.str("TOKEN_ISSUER", "audiomill-auth") or "",
            token_audience=env.str("TOKEN_AUDIENCE", "audiomill") or "",
            throttle=ThrottlePolicy(
                max_failures=env.int("LOGIN_MAX_FAILURES", 5, minimum=1),
                window_seconds=env.int("LOGIN_WINDOW_SECONDS", 900, minimum=1),
            ),
            hash_cost=HashCost(
                time_cost=env.int("PASSWORD_HASH_TIME_COST", 3, minimum=1),
                memory_cost_kib=env.int("PASSWORD_HASH_MEMORY_KIB", 65536, minimum=8),
                parallelism=env.int("PASSWORD_HASH_PARALLELISM", 4, minimum=1),
            ),
            hash_concurrency=env.int("PASSWORD_HASH_CONCURRENCY", 2, minimum=1),
        )


def signing_key(env: Env, var_dir: Path) -> tuple[bytes, str]:
    """The RSA private key that signs tokens, and where it came from:
    ``AUTH_SIGNING_KEY`` (the PEM itself, or an ``sm://`` reference the
    entrypoint resolved), else the file ``AUTH_SIGNING_KEY_FILE``, else a key
    kept under ``VAR_DIR`` and made on first start, as the local stack wants.

    Note: every instance must sign with the same key, so a deployment with
    more than one machine sets ``AUTH_SIGNING_KEY``; a key made under a
    machine's own ``VAR_DIR`` is only shared by the processes on it."""
    pem = env.str("AUTH_SIGNING_KEY")
    path = env.str("AUTH_SIGNING_KEY_FILE")
    if pem and path:
        raise ConfigError("set AUTH_SIGNING_KEY or AUTH_SIGNING_KEY_FILE, not both")
    if pem and pem.startswith("sm://"):
        raise ConfigError(
            "AUTH_SIGNING_KEY is a Secret Manager reference that nothing resolved; "
            "start the process through `python -m services.shared.gcp.secrets`"
        )
    if pem:
        key = _checked(pem.replace("\\n", "\n").encode(), "AUTH_SIGNING_KEY")
        return key, "AUTH_SIGNING_KEY"

    if path:
        try:
            key = _checked(Path(path).read_bytes(), "AUTH_SIGNING_KEY_FILE")
            return key, f"AUTH_SIGNING_KEY_FILE ({path})"
        except OSError as error:
            raise ConfigError(
                f"AUTH_SIGNING_KEY_FILE names {path}, which cannot be read: "
                f"{error.strerror}"
            ) from None

    default = var_dir / KEY_FILE_NAME
    try:
        key = _checked(load_or_create_key(default), f"the key at {default}")
        return key, f"{default} (made on first start when missing)"
    except OSError as error:
        raise ConfigError(
            f"set AUTH_SIGNING_KEY or AUTH_SIGNING_KEY_FILE: no key could be made "
            f"at {default}: {error.strerror}"
        ) from None


def _checked(pem: bytes, source: str) -> bytes:
    if b"PRIVATE KEY-----" not in pem:
        raise ConfigError(f"{source} must hold a PEM-encoded RSA private key")
    return pem
