"""The rules of tasks: creating one from an upload, listing, re-converting,
deleting and serving its files (results are in ``results``).

Every change to a task and the event announcing it are committed together
(see ``outbox``); files are written before that transaction and removed again
if it fails, so no request leaves a task half made. An upload is recorded as
pending before its file is written, so that the files of a process that dies
before the task commits are swept later.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, BinaryIO

from sqlalchemy import delete, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from services.shared import events, formats
from services.shared.formats import AudioFormat
from services.shared.storage import (
    ObjectNotFound,
    Storage,
    StorageError,
    task_outputs_prefix,
)
from services.tasks.errors import (
    FileNotReady,
    InvalidRequest,
    TaskNotFound,
    Unauthenticated,
    UnsupportedMedia,
)
from services.tasks.models import PendingUpload, Task
from services.tasks.outbox import Outbox, utcnow
from services.tasks.uploads import (
    LimitedReader,
    clean_filename,
    converted_name,
    read_head,
    target_format,
)

log = logging.getLogger(__name__)

# A pending upload older than this belongs to a request that died: storing
# one takes seconds, and App Engine ends any request after ten minutes.
ABANDONED_AFTER = timedelta(hours=1)
SWEEP_BATCH = 100


@dataclass(frozen=True)
class Owner:
    """The caller, as the access token names them."""

    id: str
    username: str
    email: str

    @classmethod
    def from_claims(cls, claims: dict[str, Any]) -> Owner:
        values = [claims.get(name) for name in ("sub", "username", "email")]
        if not all(isinstance(value, str) and value for value in values):
            raise Unauthenticated(
                "The access token lacks the sub, username or email claim; "
                "log in again at POST /api/auth/login for a new one."
            )
        return cls(*values)


@dataclass(frozen=True)
class StoredFile:
    """A file of a task, ready to be served."""

    key: str
    download_name: str
    media_type: str
    size: int


class TaskService:
    def __init__(
        self,
        session_factory: sessionmaker[Session],
        storage: Storage,
        outbox: Outbox,
        max_upload_bytes: int,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._sessions = session_factory
        self._storage = storage
        self._outbox = outbox
        self.max_upload_bytes = max_upload_bytes
        self._clock = clock

    # Creating ------------------------------------------------------------

    def create(
        self,
        owner: Owner,
        upload: BinaryIO | None,
        filename: str | None,
        new_format: str | None,
    ) -> Task:
        """Store the upload, then record the task and its conversion request
        in one transaction; the stored file is removed if either fails."""
        target = target_format(new_format)
        if upload is None:
            raise InvalidRequest(
                "No file was sent; send it as the multipart part named file."
            )

        head = read_head(upload)
        if not head:
            raise InvalidRequest("The file is empty; send a file with audio in it.")
        source = formats.sniff(head)
        if source is None or not source.source:
            raise UnsupportedMedia(
                "The file is not audio in a format we read (checked by its "
                "content, not its name); send one of: "
                + ", ".join(fmt.name for fmt in formats.sources())
            )
        if source == target:
            raise InvalidRequest(
                f"The file is already {source.name}; ask for another newFormat."
            )

        name = clean_filename(filename, source)
        prefix = f"tasks/{uuid.uuid4().hex}/"
        source_key = f"{prefix}original.{source.extension}"
        reader = LimitedReader(head, upload, self.max_upload_bytes)
        self._reserve(prefix)
        try:
            size = self._storage.save(source_key, reader, source.media_type)
            task, entry_id = self._insert(owner, name, source, target, prefix, size)
        except BaseException:
            self._abandon(prefix)
            raise
        log.info(
            "created task %s: %s %s to %s, %s bytes",
            task.id,
            name,
            source.name,
            target.name,
            size,
            extra={"task_id": task.id},
        )
        self._outbox.publish([entry_id])
        return task

    def _insert(
        self,
        owner: Owner,
        filename: str,
        source: AudioFormat,
        target: AudioFormat,
        prefix: str,
        size: int,
    ) -> tuple[Task, int]:
        now = self._clock()
        with self._sessions() as session, session.begin():
            task = Task(
                owner_id=owner.id,
                owner_username=owner.username,
                owner_email=owner.email,
                filename=filename,
                original_format=source.name,
                new_format=target.name,
                status="uploaded",
                version=1,
                storage_prefix=prefix,
                source_key=f"{prefix}original.{source.extension}",
                size_bytes=size,
                created_at=now,
                updated_at=now,
            )
            session.add(task)
            session.flush()
            entry = self._outbox.add(session, self._conversion_requested(task))
            session.execute(delete(PendingUpload).where(PendingUpload.prefix == prefix))
            session.flush()
            return task, entry.id

    def _conversion_requested(self, task: Task) -> dict[str, Any]:
        return events.new_event(
            "conversion.requested",
            task_id=task.id,
            version=task.version,
            source_key=task.source_key,
            source_format=task.original_format,
            target_format=task.new_format,
            filename=task.filename,
        )

    def _reserve(self, prefix: str) -> None:
        with self._sessions() as session, session.begin():
            session.add(PendingUpload(prefix=prefix, created_at=self._clock()))

    def _abandon(self, prefix: str) -> None:
        """Remove a failed upload's files, then its pending record; what a
        fault leaves behind here, the sweep removes.

        A commit can fail on the client's side after the server applied it,
        and that commit also removed the pending record: without it, the
        task exists and its file stays.
        """
        try:
            with self._sessions() as session:
                if session.get(PendingUpload, prefix) is None:
                    log.warning("%s was recorded despite the error; kept", prefix)
                    return
            self._storage.delete_prefix(prefix)
            self._release(prefix)
        except (StorageError, SQLAlchemyError) as error:
            log.warning("%s of a failed upload is left to the sweep: %s", prefix, error)

    def _release(self, prefix: str) -> None:
        with self._sessions() as session, session.begin():
            session.execute(delete(PendingUpload).where(PendingUpload.prefix == prefix))

    def sweep_abandoned_uploads(self) -> int:
        """Remove the files of uploads pending for longer than any request
        lasts (their process died before the task was recorded); how many."""
        cutoff = self._clock() - ABANDONED_AFTER
        with self._sessions() as session:
            prefixes = list(
                session.scalars(
                    select(PendingUpload.prefix)
                    .where(PendingUpload.created_at < cutoff)
                    .limit(SWEEP_BATCH)
                )
            )
        for prefix in prefixes:
            self._storage.delete_prefix(prefix)
            self._release(prefix)
            log.info("removed the files of an abandoned upload under %s", prefix)
        return len(prefixes)

    # Reading -------------------------------------------------------------

    def list(
        self, owner: Owner, limit: int, descending: bool, status: str | None
    ) -> list[Task]:
        query = select(Task).where(Task.owner_id == owner.id)
        if status:
            query = query.where(Task.status == status)
        query = query.order_by(Task.id.desc() if descending else Task.id.asc())
        with self._sessions() as session:
            return list(session.scalars(query.limit(limit)))

    def get(self, owner: Owner, task_id: int) -> Task:
        with self._sessions() as session:
            return self._owned(session, owner, task_id)

    def _owned(
        self, session: Session, owner: Owner, task_id: int, lock: bool = False
    ) -> Task:
        task = session.get(Task, task_id, with_for_update=lock or None)
        if task is None or task.owner_id != owner.id:
            raise TaskNotFound(task_id)
        return task

    def original(self, owner: Owner, task_id: int) -> StoredFile:
        task = self.get(owner, task_id)
        fmt = formats.get(task.original_format)
        return self._stored(task, task.source_key, task.filename, fmt)

    def converted(self, owner: Owner, task_id: int) -> StoredFile:
        task = self.get(owner, task_id)
        if task.status != "processed" or not task.output_key:
            raise FileNotReady(
                f"Task {task_id} has no converted file: it is {task.status}"
                + (
                    f" ({task.error_message})"
                    if task.status == "failed" and task.error_message
                    else "; try again once it is processed"
                )
                + "."
            )
        fmt = formats.get(task.new_format)
        return self._stored(
            task, task.output_key, converted_name(task.filename, fmt), fmt
        )

    def _stored(self, task: Task, key: str, name: str, fmt: AudioFormat) -> StoredFile:
        try:
            size = self._storage.size(key)
        except ObjectNotFound:
            log.error("file %s of task %s is missing", key, task.id)
            raise FileNotReady(
                f"The file of task {task.id} is missing from storage; "
                "delete the task and upload it again."
            ) from None
        return StoredFile(
            key=key, download_name=name, media_type=fmt.media_type, size=size
        )

    # Changing ------------------------------------------------------------

    def reconvert(self, owner: Owner, task_id: int, new_format: str | None) -> Task:
        """Start a new version of the task converting to ``new_format``."""
        target = target_format(new_format)
        with self._sessions() as session, session.begin():
            task = self._owned(session, owner, task_id, lock=True)
            if target.name == task.original_format:
                raise InvalidRequest(
                    f"The original is already {target.name}; ask for another newFormat."
                )
            old_output = task.output_key
            task.version += 1
            task.new_format = target.name
            task.status = "uploaded"
            task.output_key = None
            task.converted_size_bytes = None
            task.duration_seconds = None
            task.error_code = None
            task.error_message = None
            task.processed_at = None
            task.updated_at = self._clock()
            entry = self._outbox.add(session, self._conversion_requested(task))
            session.flush()
            entry_id = entry.id
        log.info(
            "task %s version %s: converting to %s",
            task.id,
            task.version,
            target.name,
            extra={"task_id": task.id},
        )
        if old_output:
            self._remove_quietly(old_output, task.id)
        self._outbox.publish([entry_id])
        return task

    def delete(self, owner: Owner, task_id: int) -> None:
        """Remove every stored file of the task, then the task.

        Files go first, so a storage fault leaves the task in place for the
        client to delete again; a result applied meanwhile may have added an
        output, which is removed once the row is gone.
        """
        task = self.get(owner, task_id)
        self._storage.delete_prefix(task.storage_prefix)
        self._storage.delete_prefix(task_outputs_prefix(task.id))
        if task.output_key:
            self._storage.delete(task.output_key)

        with self._sessions() as session, session.begin():
            current = self._owned(session, owner, task_id, lock=True)
            late_output = current.output_key
            session.delete(current)
        if late_output and late_output != task.output_key:
            self._remove_quietly(late_output, task_id)
        log.info("deleted task %s", task_id, extra={"task_id": task_id})

    def _remove_quietly(self, key: str, task_id: int) -> None:
        try:
            self._storage.delete(key)
        except StorageError:
            log.exception(
                "could not remove %s; it is left over", key, extra={"task_id": task_id}
            )
