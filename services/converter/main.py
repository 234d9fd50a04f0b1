"""The converter app: ``uvicorn --factory services.converter.main:create_app``."""

from __future__ import annotations

import logging

from connexion import AsyncApp
from connexion.middleware import MiddlewarePosition

from services.converter.api import Handlers
from services.converter.conversion import Converter, Transcodes, sweep_abandoned
from services.converter.errors import Unavailable
from services.converter.ffmpeg import Transcoder, locate_ffmpeg
from services.converter.settings import ConverterSettings
from services.shared.bus import Publisher, open_publisher
from services.shared.logging import TraceMiddleware, configure_logging
from services.shared.problems import add_problem_handlers
from services.shared.pushauth import PushUnauthorized, PushVerifier
from services.shared.storage import Storage, open_storage
from services.shared.web import handler_resolver, spec_dir

log = logging.getLogger(__name__)

SERVICE = "converter"

# Every status the service answers with for its own errors, in one place.
# ConversionFailed never reaches the edge: it becomes a conversion.failed.
PROBLEM_STATUS: dict[type[Exception], int] = {
    PushUnauthorized: 401,
    Unavailable: 503,
}

# Seconds a push answered 503 suggests waiting; Pub/Sub applies its own
# backoff, the relay and other callers can read this.
RETRY_AFTER_SECONDS = 10


def create_app(
    settings: ConverterSettings | None = None,
    *,
    storage: Storage | None = None,
    publisher: Publisher | None = None,
    transcoder: Transcodes | None = None,
) -> AsyncApp:
    """Build the app. With no settings, read them from the environment and set
    up logging, as the service process does."""
    if settings is None:
        settings = ConverterSettings.from_env()
        configure_logging(SERVICE, settings.common.log_level)
    common = settings.common
    settings.work_dir.mkdir(parents=True, exist_ok=True)
    swept = sweep_abandoned(settings.work_dir)
    if swept:
        log.info("removed %s work directories of stopped conversions", swept)

    if transcoder is None:
        binary = locate_ffmpeg()
        log.info("converting with %s", binary.describe())
        transcoder = Transcoder(binary, settings.transcode_timeout_seconds)
    converter = Converter(
        storage or open_storage(common.storage_url),
        publisher or open_publisher(common.bus_url),
        transcoder,
        settings.work_dir,
    )
    verifier = PushVerifier.from_settings(common)
    handlers = Handlers(converter, verifier)

    app = AsyncApp(__name__, specification_dir=spec_dir())
    app.add_api(
        "converter.yaml",
        resolver=handler_resolver(handlers),
        validate_responses=True,
        swagger_ui_options=None,
    )
    app.add_middleware(TraceMiddleware, position=MiddlewarePosition.BEFORE_EXCEPTION)

    def headers_of(error: Exception) -> dict[str, str]:
        if isinstance(error, PushUnauthorized):
            return {"WWW-Authenticate": verifier.challenge}
        return {"Retry-After": str(RETRY_AFTER_SECONDS)}

    add_problem_handlers(app, PROBLEM_STATUS, headers_of=headers_of)
    return app
