"""The tasks app: ``uvicorn --factory services.tasks.main:create_app``."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import logging
from collections.abc import AsyncIterator
from typing import Any, NoReturn

import yaml
from connexion import AsyncApp
from connexion.datastructures import MediaTypeDict
from connexion.exceptions import OAuthProblem
from connexion.lifecycle import ConnexionRequest, ConnexionResponse
from connexion.middleware import MiddlewarePosition
from connexion.options import SwaggerUIOptions
from connexion.validators import VALIDATOR_MAP
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from services.shared.bus import Publisher, open_publisher
from services.shared.db import make_engine, make_session_factory
from services.shared.logging import TraceMiddleware, configure_logging
from services.shared.problems import (
    add_problem_handlers,
    no_route_handler,
    problem,
)
from services.shared.pushauth import PushVerifier
from services.shared.storage import Storage, StorageError, open_storage
from services.shared.tokens import JwksVerifier
from services.shared.web import (
    MethodBearerHandler,
    handler_resolver,
    quiet_multiple_body_types_notice,
    spec_dir,
)
from services.tasks.api import TasksApi
from services.tasks.domain import TaskService
from services.tasks.errors import (
    STATUS_OF,
    InvalidRequest,
    Unauthenticated,
    Unavailable,
    headers_of,
)
from services.tasks.outbox import Outbox
from services.tasks.results import ResultApplier
from services.tasks.settings import TasksSettings
from services.tasks.validation import ConciseParameterValidator, upload_validator

log = logging.getLogger(__name__)

# The spec's routes with a task id. connexion routes only an integer id to
# them; anything else lands on these and is told what an id looks like.
TASK_ID_ROUTES = (
    "/api/tasks/{id}",
    "/api/tasks/{id}/original",
    "/api/tasks/{id}/converted",
    "/api/download/{id}",
)
TASK_ID_METHODS = ["GET", "PUT", "DELETE"]

SPEC = "tasks.yaml"
# Faults worth retrying: the client (or Pub/Sub) is told to come back.
OUTAGES: tuple[type[Exception], ...] = (
    OperationalError,
    InterfaceError,
    PoolTimeout,
    StorageError,
)


def create_app(
    settings: TasksSettings | None = None,
    *,
    storage: Storage | None = None,
    publisher: Publisher | None = None,
    verifier: JwksVerifier | None = None,
) -> AsyncApp:
    """Build the app. With no settings, read them from the environment and set
    up logging, as the service process does; the keyword arguments replace
    the backends the settings name."""
    if settings is None:
        settings = TasksSettings.from_env()
        configure_logging("tasks", settings.common.log_level)
    common = settings.common

    engine = make_engine(common.database_url, common.database_pool_size)
    sessions = make_session_factory(engine)
    storage = storage or open_storage(common.storage_url)
    publisher = publisher or open_publisher(common.bus_url)
    verifier = verifier or JwksVerifier(
        settings.jwks_url, settings.token_issuer, settings.token_audience
    )
    outbox = Outbox(sessions, publisher)
    service = TaskService(sessions, storage, outbox, settings.max_upload_bytes)
    handlers = TasksApi(
        service,
        ResultApplier(sessions, storage, outbox),
        outbox,
        storage,
        verifier,
        PushVerifier.from_settings(common),
        engine,
        settings.signed_url_seconds,
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        tidier = asyncio.create_task(
            _tidy_periodically(outbox, service, settings.outbox_flush_seconds)
        )
        try:
            yield
        finally:
            tidier.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await tidier
            publisher.close()
            engine.dispose()

    quiet_multiple_body_types_notice()
    app = AsyncApp(
        __name__,
        specification_dir=spec_dir(),
        lifespan=lifespan,
        security_map={
            "bearer": functools.partial(MethodBearerHandler, handlers.bearer_info)
        },
        validator_map={
            "parameter": ConciseParameterValidator,
            "body": _body_validators(settings.max_upload_bytes),
        },
    )
    public, platform = split_spec(yaml.safe_load((spec_dir() / SPEC).read_text()))
    resolver = handler_resolver(handlers)
    app.add_api(
        public,
        base_path=public["servers"][0]["url"],
        resolver=resolver,
        validate_responses=settings.validate_responses,
        name="tasks",
    )
    app.add_api(
        platform,
        base_path="",
        resolver=resolver,
        validate_responses=settings.validate_responses,
        swagger_ui_options=SwaggerUIOptions(swagger_ui=False, serve_spec=False),
        name="platform",
    )
    for rule in TASK_ID_ROUTES:
        app.add_url_rule(rule, "bad-task-id", _bad_task_id, methods=TASK_ID_METHODS)
    app.add_middleware(TraceMiddleware, position=MiddlewarePosition.BEFORE_EXCEPTION)
    add_problem_handlers(app, STATUS_OF, headers_of=headers_of)
    for outage in OUTAGES:
        app.add_error_handler(outage, _unavailable)
    app.add_error_handler(OAuthProblem, _missing_token)
    no_route = no_route_handler("/api/ui/")
    app.add_error_handler(404, no_route)
    app.add_error_handler(405, no_route)
    log.info("tasks ready, uploads up to %s bytes", settings.max_upload_bytes)
    return app


def split_spec(spec: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The spec's client routes (under its server, ``/api``) and its platform
    routes (each path naming its own server ``/``), as two specs connexion
    can serve side by side."""
    public = copy.deepcopy(spec)
    platform = copy.deepcopy(spec)
    public["paths"] = {}
    platform["paths"] = {}
    for path, item in spec["paths"].items():
        if "servers" in item:
            platform["paths"][path] = {
                key: value for key, value in item.items() if key != "servers"
            }
            platform["servers"] = item["servers"]
        else:
            public["paths"][path] = item
    return public, platform


def _body_validators(max_upload_bytes: int) -> MediaTypeDict:
    validators = MediaTypeDict(VALIDATOR_MAP["body"])
    validators["multipart/form-data"] = upload_validator(max_upload_bytes)
    return validators


async def _tidy_periodically(
    outbox: Outbox, service: TaskService, interval: float
) -> None:
    """Publish what an earlier publish left pending (the bus was down, or the
    process stopped between commit and publish), and remove the files of
    uploads whose process died before their task was recorded."""
    while True:
        try:
            result = await run_in_threadpool(outbox.flush)
            if result.published:
                log.info("outbox flush published %s", result.published)
        except Exception:
            log.exception("outbox flush failed; trying again in %ss", interval)
        try:
            await run_in_threadpool(service.sweep_abandoned_uploads)
        except Exception:
            log.exception("upload sweep failed; trying again in %ss", interval)
        await asyncio.sleep(interval)


def _unavailable(_request: ConnexionRequest, error: Exception) -> ConnexionResponse:
    log.warning("answering 503: %s: %s", type(error).__name__, error)
    return problem(
        503,
        "The tasks database or file storage cannot be reached right now; "
        "try again in a few seconds.",
        headers=Unavailable.headers,
    )


async def _bad_task_id(request: Request) -> NoReturn:
    given = request.path_params.get("id", "")
    raise InvalidRequest(f"Task ids are positive integers, such as 7; got {given!r}.")


def _missing_token(_request: ConnexionRequest, error: Exception) -> ConnexionResponse:
    return problem(
        401,
        "Send `Authorization: Bearer <token>` with a token from POST /api/auth/login.",
        headers=Unauthenticated.headers,
    )
