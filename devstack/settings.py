"""Reading the environment for the devstack processes, once, at start."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

# The variable the runner fills with ``{"<App Engine service>": "<base URL>"}``
# for the relay and the gateway.
ENDPOINTS_VARIABLE = "DEVSTACK_ENDPOINTS"


class SettingError(ValueError):
    """A setting has a value the process cannot start with."""


def environ_or_default(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if environ is None else environ


def var_dir(environ: Mapping[str, str]) -> Path:
    return Path(environ.get("VAR_DIR") or "var").resolve()


def read_bool(environ: Mapping[str, str], name: str, default: bool) -> bool:
    raw = environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise SettingError(f"{name} must be a boolean (1/0, true/false), got {raw!r}")


def read_int(
    environ: Mapping[str, str], name: str, default: int, minimum: int = 1
) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise SettingError(f"{name} must be at least {minimum}, got {value}")
    return value


def read_path(environ: Mapping[str, str], name: str, default: Path) -> Path:
    raw = environ.get(name, "").strip()
    return Path(raw).resolve() if raw else default


def read_endpoints(environ: Mapping[str, str]) -> dict[str, str]:
    raw = environ.get(ENDPOINTS_VARIABLE, "").strip()
    if not raw:
        return {}
    try:
        endpoints = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise SettingError(f"{ENDPOINTS_VARIABLE} is not JSON: {exc}") from None
    if not isinstance(endpoints, dict) or not all(
        isinstance(key, str) and isinstance(value, str)
        for key, value in endpoints.items()
    ):
        raise SettingError(f"{ENDPOINTS_VARIABLE} must map service names to base URLs")
    return {name: url.rstrip("/") for name, url in endpoints.items()}
