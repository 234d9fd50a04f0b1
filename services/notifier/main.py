"""The notifier app: ``uvicorn --factory services.notifier.main:create_app``."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from connexion import AsyncApp
from connexion.middleware import MiddlewarePosition

from services.notifier.api import NotifierApi
from services.notifier.compose import TemplateComposer
from services.notifier.domain import (
    DatabaseUnavailable,
    MailDeferred,
    Mailer,
    NotificationInProgress,
    Notifier,
)
from services.notifier.mailers import open_mailer
from services.notifier.notification_log import SqlNotificationLog
from services.notifier.settings import SERVICE, NotifierSettings
from services.shared.db import make_engine, make_session_factory
from services.shared.logging import TraceMiddleware, configure_logging
from services.shared.problems import add_problem_handlers
from services.shared.pushauth import PushUnauthorized, PushVerifier
from services.shared.web import handler_resolver, spec_dir

# Seconds a push answered 503 suggests waiting; Pub/Sub applies its own
# backoff, the relay and other callers can read this.
RETRY_AFTER_SECONDS = 30


def create_app(
    settings: NotifierSettings | None = None, *, mailer: Mailer | None = None
) -> AsyncApp:
    """Build the app; with no settings, read them from the environment and
    set up logging, as the service process does."""
    if settings is None:
        settings = NotifierSettings.from_env()
        configure_logging(SERVICE, settings.common.log_level)
    common = settings.common

    engine = make_engine(common.database_url, common.database_pool_size)
    notifications = SqlNotificationLog(
        make_session_factory(engine),
        claim_timeout=timedelta(seconds=settings.claim_timeout_seconds),
    )
    if mailer is None:
        mailer = open_mailer(
            common.mail_url,
            sendgrid_api_key=settings.sendgrid_api_key,
            sendgrid_host=settings.sendgrid_api_host,
            timeout=settings.mail_timeout_seconds,
        )
    composer = TemplateComposer(settings.mail_from, common.public_base_url)
    verifier = PushVerifier.from_settings(common)
    notifier = Notifier(notifications, mailer, composer)
    handlers = NotifierApi(notifier, verifier, notifications)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        yield
        engine.dispose()

    app = AsyncApp(__name__, specification_dir=spec_dir(), lifespan=lifespan)
    app.add_api(
        "notifier.yaml",
        resolver=handler_resolver(handlers),
        validate_responses=True,
    )
    app.add_middleware(TraceMiddleware, position=MiddlewarePosition.BEFORE_EXCEPTION)

    def headers_of(error: Exception) -> dict[str, str]:
        if isinstance(error, PushUnauthorized):
            return {"WWW-Authenticate": verifier.challenge}
        return {"Retry-After": str(RETRY_AFTER_SECONDS)}

    add_problem_handlers(
        app,
        {
            PushUnauthorized: 401,
            MailDeferred: 503,
            NotificationInProgress: 503,
            DatabaseUnavailable: 503,
        },
        headers_of=headers_of,
    )
    return app
