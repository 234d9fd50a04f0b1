"""Applying conversion results to tasks: a result for the current version
settles the task and is announced; any other is discarded with its output."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from services.shared import events
from services.shared.storage import Storage, task_outputs_prefix
from services.tasks.models import Task
from services.tasks.outbox import Outbox, utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ResultOutcome:
    """What applying a conversion result did: ``applied``, ``stale`` (an
    older version), ``deleted`` (no such task), ``duplicate`` or ``foreign``
    (an output outside the task's own ``tasks/<id>/``)."""

    kind: str
    task_id: int
    version: int


class ResultApplier:
    def __init__(
        self,
        session_factory: sessionmaker[Session],
        storage: Storage,
        outbox: Outbox,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._sessions = session_factory
        self._storage = storage
        self._outbox = outbox
        self._clock = clock

    def apply(self, event: dict[str, Any]) -> ResultOutcome:
        """Apply a validated ``conversion.succeeded`` or ``conversion.failed``.

        Only a result for the task's current version, while it waits for one,
        changes anything; the output of any other is removed (a stale version
        or a deleted task), and a redelivery is a no-op. A result naming an
        output outside the task's own prefix is refused whole, so that no
        message can make a task point at, or remove, another task's file.
        """
        task_id, version = event["task_id"], event["version"]
        succeeded = event["type"] == "conversion.succeeded"
        output = event.get("output_key") if succeeded else None
        if output and not output.startswith(task_outputs_prefix(task_id)):
            log.error(
                "dropping the result for task %s version %s: its output %s is "
                "not under %s",
                task_id,
                version,
                output,
                task_outputs_prefix(task_id),
                extra={"task_id": task_id},
            )
            return ResultOutcome(kind="foreign", task_id=task_id, version=version)
        entry_id = None
        with self._sessions() as session, session.begin():
            task = session.get(Task, task_id, with_for_update=True)
            if task is None:
                kind = "deleted"
            elif task.version != version:
                kind = "stale"
            elif task.status != "uploaded":
                kind = "duplicate"
                output = None
            else:
                kind = "applied"
                entry_id = self._record_result(session, task, event)
                output = None

        if output and (task is None or output != task.output_key):
            self._storage.delete(output)
        log.info(
            "%s result %s for task %s version %s",
            kind,
            event["type"],
            task_id,
            version,
            extra={"task_id": task_id},
        )
        if entry_id is not None:
            self._outbox.publish([entry_id])
        return ResultOutcome(kind=kind, task_id=task_id, version=version)

    def _record_result(self, session: Session, task: Task, event: dict) -> int:
        now = self._clock()
        task.processed_at = now
        task.updated_at = now
        owner = {
            "id": task.owner_id,
            "username": task.owner_username,
            "email": task.owner_email,
        }
        common = {
            "task_id": task.id,
            "version": task.version,
            "owner": owner,
            "filename": task.filename,
            "original_format": task.original_format,
            "new_format": task.new_format,
        }
        if event["type"] == "conversion.succeeded":
            task.status = "processed"
            task.output_key = event["output_key"]
            task.converted_size_bytes = event["size_bytes"]
            task.duration_seconds = event["duration_seconds"]
            announcement = events.new_event(
                "task.processed",
                **common,
                size_bytes=event["size_bytes"],
                duration_seconds=event["duration_seconds"],
                download_path=f"/api/tasks/{task.id}/converted",
            )
        else:
            task.status = "failed"
            task.error_code = event["code"]
            task.error_message = event["message"]
            announcement = events.new_event(
                "task.failed",
                **common,
                error={"code": event["code"], "message": event["message"]},
            )
        entry = self._outbox.add(session, announcement)
        session.flush()
        return entry.id
