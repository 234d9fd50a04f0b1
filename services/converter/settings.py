"""The converter's settings, read once when the app is built."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from services.shared.config import CommonSettings, Env

# Under the subscription's 600 s ack deadline (pubsub.yaml), leaving time to
# fetch the original and store the output before Pub/Sub gives up on us.
DEFAULT_TIMEOUT_SECONDS = 540


@dataclass(frozen=True)
class ConverterSettings:
    common: CommonSettings
    transcode_timeout_seconds: float
    work_dir: Path

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ConverterSettings:
        env = Env(environ)
        common = CommonSettings.from_env("converter", environ)
        common.check_push_auth()
        return cls(
            common=common,
            transcode_timeout_seconds=env.float(
                "TRANSCODE_TIMEOUT_SECONDS", DEFAULT_TIMEOUT_SECONDS, minimum=1
            ),
            work_dir=Path(env.str("WORK_DIR", tempfile.gettempdir()) or "."),
        )
