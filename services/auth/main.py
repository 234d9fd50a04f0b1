"""The auth app: ``uvicorn --factory services.auth.main:create_app``."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
from collections.abc import AsyncIterator
from typing import Any

from connexion import AsyncApp
from connexion.exceptions import OAuthProblem
from connexion.lifecycle import ConnexionRequest, ConnexionResponse
from connexion.middleware import MiddlewarePosition
from sqlalchemy import Engine, select
from sqlalchemy.exc import DBAPIError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from services.auth.accounts import Accounts, Clock, utc_now
from services.auth.api import AuthApi
from services.auth.errors import (
    AccountsUnavailable,
    AccountTaken,
    InvalidCredentials,
    InvalidLogin,
    InvalidSignup,
    TooManyAttempts,
    Unauthenticated,
)
from services.auth.models import LoginFailure
from services.auth.passwords import Passwords
from services.auth.settings import SERVICE, AuthSettings
from services.shared.config import ConfigError
from services.shared.db import make_engine, make_session_factory
from services.shared.logging import TraceMiddleware, configure_logging
from services.shared.problems import (
    PROBLEM_JSON,
    add_problem_handlers,
    no_route_handler,
    problem,
)
from services.shared.tokens import TokenSigner
from services.shared.web import (
    MethodBearerHandler,
    handler_resolver,
    quiet_multiple_body_types_notice,
    spec_dir,
)

log = logging.getLogger(__name__)

# Every status the service answers with for its own errors, in one place.
PROBLEM_STATUS: dict[type[Exception], int] = {
    InvalidSignup: 400,
    InvalidLogin: 400,
    Unauthenticated: 401,
    InvalidCredentials: 401,
    AccountTaken: 409,
    TooManyAttempts: 429,
    AccountsUnavailable: 503,
}


BEARER_CHALLENGE = 'Bearer realm="audiomill"'
RETRY_AFTER_UNAVAILABLE_SECONDS = 5


def create_app(
    settings: AuthSettings | None = None,
    *,
    clock: Clock = utc_now,
    passwords: Passwords | None = None,
    **overrides: Any,
) -> AsyncApp:
    """Build the app. With no settings, read them from the environment and set
    up logging, as the service process does; ``overrides`` replace settings
    fields by name."""
    if settings is None:
        settings = AuthSettings.from_env()
        configure_logging(SERVICE, settings.common.log_level)
    if overrides:
        settings = dataclasses.replace(settings, **overrides)
    common = settings.common

    try:
        signer = TokenSigner(
            settings.signing_key_pem,
            settings.token_issuer,
            settings.token_audience,
            settings.token_ttl_seconds,
        )
    except ValueError as error:
        raise ConfigError(f"the token-signing key is unusable: {error}") from None
    engine = make_engine(common.database_url, common.database_pool_size)
    accounts = Accounts(
        make_session_factory(engine),
        passwords or Passwords(settings.hash_cost, settings.hash_concurrency),
        settings.throttle,
        clock,
    )
    handlers = AuthApi(accounts, signer, signer.verifier())

    quiet_multiple_body_types_notice()

    @contextlib.asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        yield
        engine.dispose()

    app = AsyncApp(
        __name__,
        lifespan=lifespan,
        specification_dir=spec_dir(),
        security_map={
            "bearer": functools.partial(MethodBearerHandler, handlers.bearer_info)
        },
    )
    app.add_api(
        "auth.yaml", resolver=handler_resolver(handlers), validate_responses=True
    )
    app.add_url_rule("/healthz", "healthz", functools.partial(_healthz, engine))
    app.add_middleware(TraceMiddleware, position=MiddlewarePosition.BEFORE_EXCEPTION)
    add_problem_handlers(app, PROBLEM_STATUS, headers_of=_problem_headers)
    app.add_error_handler(OAuthProblem, _missing_token)
    no_route = no_route_handler("/api/auth/ui/")
    app.add_error_handler(404, no_route)
    app.add_error_handler(405, no_route)
    log.info(
        "auth ready, signing with key %s from %s",
        signer.kid,
        settings.signing_key_source,
    )
    return app


def _problem_headers(error: Exception) -> dict[str, str]:
    if isinstance(error, TooManyAttempts):
        return {"Retry-After": str(error.retry_after)}
    if isinstance(error, Unauthenticated):
        return {"WWW-Authenticate": f'{BEARER_CHALLENGE}, error="invalid_token"'}
    if isinstance(error, AccountsUnavailable):
        return {"Retry-After": str(RETRY_AFTER_UNAVAILABLE_SECONDS)}
    return {}


def _missing_token(_request: ConnexionRequest, _error: Exception) -> ConnexionResponse:
    return problem(
        401,
        "Send `Authorization: Bearer <token>` with a token from POST /api/auth/login.",
        headers={"WWW-Authenticate": BEARER_CHALLENGE},
    )


async def _healthz(engine: Engine, _request: Request) -> JSONResponse:
    try:
        await run_in_threadpool(_ping, engine)
    except DBAPIError as error:
        log.warning("health check: the auth database is not ready: %s", error)
        return JSONResponse(
            {
                "type": "about:blank",
                "title": "Service Unavailable",
                "status": 503,
                "detail": (
                    "The auth database does not answer or lacks its tables "
                    "(python -m services.shared.migrate auth); try again shortly."
                ),
            },
            status_code=503,
            media_type=PROBLEM_JSON,
            headers={"Retry-After": str(RETRY_AFTER_UNAVAILABLE_SECONDS)},
        )
    return JSONResponse({"status": "ok"})


def _ping(engine: Engine) -> None:
    """Reach the database and the newest table, so an unmigrated one fails."""
    with engine.connect() as connection:
        connection.execute(select(LoginFailure.id).limit(1))
