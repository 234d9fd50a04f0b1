"""The HTTP edge of the tasks service: one method per ``operationId`` of
``openapi/tasks.yaml``, each parsing its input, calling one domain rule and
shaping the answer."""

from __future__ import annotations

import logging
from typing import Any

from connexion import request
from sqlalchemy import Engine, text
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.responses import Response

from services.shared import events, formats
from services.shared.events import InvalidEvent
from services.shared.pushauth import PushUnauthorized, PushVerifier
from services.shared.storage import Storage
from services.shared.tokens import InvalidToken, JwksVerifier, KeysUnavailable
from services.tasks.domain import Owner, StoredFile, TaskService
from services.tasks.downloads import file_response
from services.tasks.errors import (
    Forbidden,
    PushUnauthenticated,
    Unauthenticated,
    Unavailable,
)
from services.tasks.models import Task
from services.tasks.outbox import Outbox
from services.tasks.results import ResultApplier

log = logging.getLogger(__name__)

RESULT_TYPES = ("conversion.succeeded", "conversion.failed")
JSON = {"Content-Type": "application/json"}
# A JSON body, its status and headers, as connexion takes them.
Reply = tuple[Any, int, dict[str, str]]


def task_json(task: Task) -> dict[str, Any]:
    path = f"/api/tasks/{task.id}"
    processed = task.status == "processed"
    return {
        "id": task.id,
        "filename": task.filename,
        "original_format": task.original_format,
        "new_format": task.new_format,
        "status": task.status,
        "version": task.version,
        "size_bytes": task.size_bytes,
        "created_at": task.created_at.isoformat(),
        "updated_at": task.updated_at.isoformat(),
        "processed_at": task.processed_at.isoformat() if task.processed_at else None,
        "error": (
            {"code": task.error_code, "message": task.error_message or ""}
            if task.error_code
            else None
        ),
        "duration_seconds": task.duration_seconds if processed else None,
        "converted_size_bytes": task.converted_size_bytes if processed else None,
        "links": {
            "self": path,
            "original": f"{path}/original",
            "converted": f"{path}/converted" if processed else None,
        },
    }


def format_json(fmt: formats.AudioFormat) -> dict[str, Any]:
    return {
        "name": fmt.name,
        "extension": fmt.extension,
        "media_type": fmt.media_type,
        "source": fmt.source,
        "target": fmt.target,
        "aliases": list(fmt.aliases),
    }


class TasksApi:
    def __init__(
        self,
        service: TaskService,
        results: ResultApplier,
        outbox: Outbox,
        storage: Storage,
        verifier: JwksVerifier,
        push_verifier: PushVerifier,
        engine: Engine,
        signed_url_seconds: int,
    ) -> None:
        self._service = service
        self._results = results
        self._outbox = outbox
        self._storage = storage
        self._verifier = verifier
        self._push = push_verifier
        self._engine = engine
        self._signed_url_seconds = signed_url_seconds

    # Security --------------------------------------------------------------

    async def bearer_info(self, token: str) -> dict[str, Any]:
        """The claims of a valid access token; connexion puts them in
        ``token_info``."""
        try:
            claims = await run_in_threadpool(self._verifier.verify, token)
        except KeysUnavailable as error:
            log.warning("cannot check an access token: %s", error)
            raise Unavailable(
                "Access tokens cannot be checked right now, as the sign-in "
                "service does not answer; try again in a few seconds."
            ) from None
        except InvalidToken as error:
            raise Unauthenticated(
                f"The access token was refused: {error}. "
                "Get a new one from POST /api/auth/login."
            ) from None
        Owner.from_claims(claims)
        return claims

    # Tasks -----------------------------------------------------------------

    def create_task(
        self,
        token_info: dict[str, Any],
        body: dict[str, Any] | None = None,
        file: UploadFile | None = None,
        audio: UploadFile | None = None,
    ) -> Reply:
        body = body or {}
        part = file or audio
        given = body.get("filename")
        named = part.filename if part else None
        # The first version's clients put the real name in the filename field.
        filename = (given or named) if file is None else (named or given)
        try:
            task = self._service.create(
                Owner.from_claims(token_info),
                part.file if part else None,
                filename,
                body.get("newFormat"),
            )
        finally:
            for upload in (file, audio):
                if upload is not None:
                    upload.file.close()
        return task_json(task), 201, {**JSON, "Location": f"/api/tasks/{task.id}"}

    def list_tasks(
        self,
        token_info: dict[str, Any],
        max: int = 100,
        order: int = 0,
        status: str | None = None,
    ) -> Reply:
        tasks = self._service.list(
            Owner.from_claims(token_info), max, order == 1, status
        )
        return [task_json(task) for task in tasks], 200, JSON

    def get_task(self, token_info: dict[str, Any], id: int) -> Reply:
        return (
            task_json(self._service.get(Owner.from_claims(token_info), id)),
            200,
            JSON,
        )

    def reconvert_task(
        self, token_info: dict[str, Any], id: int, body: dict[str, Any] | None = None
    ) -> Reply:
        new_format = (body or {}).get("newFormat")
        task = self._service.reconvert(Owner.from_claims(token_info), id, new_format)
        return task_json(task), 200, JSON

    def delete_task(self, token_info: dict[str, Any], id: int) -> tuple[None, int]:
        self._service.delete(Owner.from_claims(token_info), id)
        return None, 204

    # Files -----------------------------------------------------------------

    def download_original(self, token_info: dict[str, Any], id: int) -> Response:
        stored = self._service.original(Owner.from_claims(token_info), id)
        return self._file(stored)

    def download_original_legacy(self, token_info: dict[str, Any], id: int) -> Response:
        return self.download_original(token_info, id)

    def download_converted(self, token_info: dict[str, Any], id: int) -> Response:
        stored = self._service.converted(Owner.from_claims(token_info), id)
        return self._file(stored)

    def _file(self, stored: StoredFile) -> Response:
        return file_response(
            self._storage,
            stored,
            request.headers.get("range"),
            request.headers.get("if-range"),
            self._signed_url_seconds,
        )

    def list_formats(self) -> Reply:
        return [format_json(fmt) for fmt in formats.FORMATS], 200, JSON

    # Platform --------------------------------------------------------------

    def receive_conversion_result(
        self, body: Any = None, token: str | None = None
    ) -> tuple[None, int]:
        try:
            self._push.verify(request.headers, request.query_params)
        except PushUnauthorized as error:
            raise PushUnauthenticated(
                f"Push refused: {error}.", self._push.challenge
            ) from None
        try:
            message = events.decode_push(body)
        except InvalidEvent as error:
            log.warning("dropping an unusable conversion result: %s", error)
            return None, 204
        if message.event["type"] not in RESULT_TYPES:
            log.warning(
                "dropping %s pushed as a conversion result (message %s)",
                message.event["type"],
                message.message_id,
            )
            return None, 204
        self._results.apply(message.event)
        return None, 204

    def flush_outbox(self) -> Reply:
        if request.headers.get("x-appengine-cron") != "true":
            raise Forbidden(
                "This route is for App Engine cron, which sends X-Appengine-Cron: true."
            )
        result = self._outbox.flush()
        return {"published": result.published, "pending": result.pending}, 200, JSON

    def flush_outbox_cron(self) -> Reply:
        return self.flush_outbox()

    def health(self) -> Reply:
        try:
            with self._engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except Exception as error:
            log.warning("health check: the database does not answer: %s", error)
            raise Unavailable(
                "The tasks database does not answer; try again shortly."
            ) from None
        return {"status": "ok"}, 200, JSON
