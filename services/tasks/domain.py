"""The rules of tasks: creating one from an upload, listing, re-converting,
deleting, serving its files, and applying conversion results.

Every change to a task and the event announcing it are committed together
(see ``outbox``); files are written before that transaction and removed again
if it fails, so no request leaves a task half made.
"""

from __future__ import annotations

import logging
import re
import unicodedata
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, BinaryIO

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from services.shared import events, formats
from services.shared.formats import AudioFormat
from services.shared.storage import ObjectNotFound, Storage, StorageError
from services.tasks.errors import (
    FileNotReady,
    InvalidRequest,
    TaskNotFound,
    Unauthenticated,
    UnsupportedMedia,
    UploadTooLarge,
)
from services.tasks.models import Task
from services.tasks.outbox import Outbox

log = logging.getLogger(__name__)

MAX_FILENAME = 255
_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")


def utcnow() -> datetime:
    return datetime.now(UTC)


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


def clean_filename(name: str | None, fmt: AudioFormat) -> str:
    """The last path part of ``name``, without control characters, at most
    255 characters long; a name with nothing left becomes ``audio.EXT``."""
    name = unicodedata.normalize("NFC", name or "")
    name = re.split(r"[/\\]", name)[-1]
    name = _UNSAFE.sub("", name).strip()
    if name in ("", ".", ".."):
        return f"audio.{fmt.extension}"
    if len(name) > MAX_FILENAME:
        stem, dot, extension = name.rpartition(".")
        if dot and 0 < len(extension) <= 16:
            name = stem[: MAX_FILENAME - len(extension) - 1] + "." + extension
        else:
            name = name[:MAX_FILENAME]
    return name


def output_prefix(task_id: int) -> str:
    """Where the converter writes a task's outputs (``tasks/<id>/v<n>/...``).
    Uploads live under a random ``tasks/<hex>/`` prefix instead, because the
    file is stored before the task row, and its id, exist; the two never
    overlap, as an upload's prefix is 32 hex digits and never only digits."""
    return f"tasks/{task_id}/"


def converted_name(filename: str, fmt: AudioFormat) -> str:
    stem, dot, _ = filename.rpartition(".")
    return f"{stem if dot and stem else filename}.{fmt.extension}"


def target_format(name: str | None) -> AudioFormat:
    """The format ``name`` asks for, checked to be one we write."""
    if not name:
        raise InvalidRequest(
            "newFormat is missing; name one of: " + ", ".join(_target_names())
        )
    try:
        fmt = formats.get(name)
    except formats.UnknownFormat:
        raise InvalidRequest(
            f"newFormat {name!r} is not a format we convert to; use one of: "
            + ", ".join(_target_names())
        ) from None
    if not fmt.target:
        raise InvalidRequest(
            f"{fmt.name} cannot be converted to; use one of: "
            + ", ".join(_target_names())
        )
    return fmt


def _target_names() -> list[str]:
    return [fmt.name for fmt in formats.targets()]


def read_head(upload: BinaryIO) -> bytes:
    """The first ``SNIFF_BYTES`` of ``upload`` (fewer only at its end)."""
    head = b""
    while len(head) < formats.SNIFF_BYTES:
        chunk = upload.read(formats.SNIFF_BYTES - len(head))
        if not chunk:
            break
        head += chunk
    return head


class LimitedReader:
    """``head`` then the rest of ``upload``, raising UploadTooLarge as soon as
    more than ``limit`` bytes have been read, so reading stops there."""

    def __init__(self, head: bytes, upload: BinaryIO, limit: int) -> None:
        self._head = head
        self._upload = upload
        self._limit = limit
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        if self._head:
            chunk, self._head = self._head, b""
        else:
            # Read one byte past the limit at most, enough to know it is over.
            room = self._limit - self.count + 1
            chunk = self._upload.read(room if size < 0 else min(size, room))
        self.count += len(chunk)
        if self.count > self._limit:
            raise UploadTooLarge(self._limit)
        return chunk


@dataclass(frozen=True)
class ResultOutcome:
    """What applying a conversion result did: ``applied``, ``stale`` (an
    older version), ``deleted`` (no such task) or ``duplicate``."""

    kind: str
    task_id: int
    version: int


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
        in one transaction; the stored file is removed if that fails."""
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
        try:
            size = self._storage.save(source_key, reader, source.media_type)
        except UploadTooLarge:
            self._discard(source_key)
            raise

        try:
            task, entry_id = self._insert(owner, name, source, target, prefix, size)
        except BaseException:
            self._discard(source_key)
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

    def _discard(self, key: str) -> None:
        try:
            self._storage.delete(key)
        except StorageError:
            log.exception("could not remove %s after a failed upload", key)

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
        self._storage.delete_prefix(output_prefix(task.id))
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

    # Results -------------------------------------------------------------

    def apply_result(self, event: dict[str, Any]) -> ResultOutcome:
        """Apply a validated ``conversion.succeeded`` or ``conversion.failed``.

        Only a result for the task's current version, while it waits for one,
        changes anything; the output of any other is removed (a stale version
        or a deleted task), and a redelivery is a no-op.
        """
        task_id, version = event["task_id"], event["version"]
        succeeded = event["type"] == "conversion.succeeded"
        output = event.get("output_key") if succeeded else None
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
