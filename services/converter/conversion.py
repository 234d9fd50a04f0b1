"""Converting one task version: fetch the original, transcode, store the
output, report the outcome on ``conversion-results``.

Delivery is at least once, so a request may arrive again after its output
was stored: the output key carries the task id and version, and an output
already there is reported again rather than made again.

Each conversion works in its own temporary directory, named after the task
and the process, and removed when the conversion ends. A process killed
mid-transcode cannot remove its own, so the next converter process to start
removes those of processes that are gone (on App Engine ``/tmp`` is held in
memory, and a long WAV output there is hundreds of MB).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from services.converter import staging
from services.converter.errors import ConversionFailed, Unavailable, Unsupported
from services.shared import events, formats
from services.shared.bus import BusError, Publisher
from services.shared.formats import AudioFormat
from services.shared.storage import (
    ObjectNotFound,
    Storage,
    StorageError,
    output_key,
)

log = logging.getLogger(__name__)

# A conversion's work directory: WORK_PREFIX, task id, process id, random.
WORK_PREFIX = "audiomill-task-"
_WORK_NAME = re.compile(re.escape(WORK_PREFIX) + r"\d+-(\d+)-")


class Transcodes(Protocol):
    """What the converter needs from ffmpeg (``ffmpeg.Transcoder``)."""

    def transcode(self, source: Path, output: Path, target: AudioFormat) -> Any:
        """Write ``output``; return an object with ``duration_seconds``."""

    def probe_duration(self, path: Path) -> float | None:
        """The duration of a file this converter wrote; None if unreadable."""


@dataclass(frozen=True)
class ConversionRequest:
    task_id: int
    version: int
    source_key: str
    source_format: str
    target: AudioFormat
    filename: str

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> ConversionRequest:
        """The request inside a validated ``conversion.requested`` event."""
        return cls(
            task_id=event["task_id"],
            version=event["version"],
            source_key=event["source_key"],
            source_format=event["source_format"],
            target=formats.get(event["target_format"]),
            filename=event["filename"],
        )

    @property
    def output_key(self) -> str:
        return output_key(self.task_id, self.version, self.target.extension)


@dataclass(frozen=True)
class Output:
    key: str
    size_bytes: int
    duration_seconds: float


class Converter:
    """Produces and reports conversions; built once per app."""

    def __init__(
        self,
        storage: Storage,
        publisher: Publisher,
        transcoder: Transcodes,
        work_dir: Path | None = None,
    ) -> None:
        self.storage = storage
        self.publisher = publisher
        self.transcoder = transcoder
        self.work_dir = work_dir

    def handle(self, event: dict[str, Any]) -> str:
        """Convert the requested task version and publish the outcome.

        Returns what happened: ``succeeded``, ``failed`` or ``discarded``
        (the original is gone, so the task was deleted). Raises
        ``Unavailable`` when the request should be delivered again.
        """
        request = ConversionRequest.from_event(event)
        extra = {"task_id": request.task_id}
        try:
            output = self.produce(request)
        except ConversionFailed as failure:
            log.info(
                "task %s v%s failed: %s",
                request.task_id,
                request.version,
                failure.code,
                extra=extra,
            )
            self._publish(
                "conversion.failed",
                request,
                code=failure.code,
                message=failure.message,
            )
            return "failed"
        if output is None:
            log.info(
                "task %s v%s: original %s is gone; nothing to convert",
                request.task_id,
                request.version,
                request.source_key,
                extra=extra,
            )
            return "discarded"
        self._publish(
            "conversion.succeeded",
            request,
            output_key=output.key,
            size_bytes=output.size_bytes,
            duration_seconds=output.duration_seconds,
        )
        log.info(
            "task %s v%s converted to %s: %s bytes, %.1f s",
            request.task_id,
            request.version,
            request.target.name,
            output.size_bytes,
            output.duration_seconds,
            extra=extra,
        )
        return "succeeded"

    def produce(self, request: ConversionRequest) -> Output | None:
        """The stored output of ``request``, made now or found from an earlier
        delivery; None when the original no longer exists."""
        if not request.target.target:
            raise Unsupported(f"Conversion to {request.target.name} is not offered.")
        key = request.output_key
        with tempfile.TemporaryDirectory(
            dir=self.work_dir, prefix=f"{WORK_PREFIX}{request.task_id}-{os.getpid()}-"
        ) as tmp:
            work = Path(tmp)
            if self._exists(key):
                existing = self._describe_existing(key, work)
                if existing is not None:
                    return existing

            try:
                source = staging.fetch(self.storage, request.source_key, work)
            except ObjectNotFound:
                return None
            except StorageError as error:
                raise Unavailable(f"cannot fetch {request.source_key}") from error

            converted = work / f"converted.{request.target.extension}"
            result = self.transcoder.transcode(source, converted, request.target)
            if source.is_relative_to(work):
                source.unlink()

            try:
                size = staging.store(
                    self.storage, key, converted, request.target.media_type
                )
            except StorageError as error:
                raise Unavailable(f"cannot store {key}") from error
            return Output(key, size, result.duration_seconds)

    def _exists(self, key: str) -> bool:
        try:
            return self.storage.exists(key)
        except StorageError as error:
            raise Unavailable(f"cannot look up {key}") from error

    def _describe_existing(self, key: str, work: Path) -> Output | None:
        # An earlier delivery stored this output but its result was not
        # published (or not acked). Report it again without transcoding.
        try:
            path = staging.fetch(self.storage, key, work, name="existing")
        except ObjectNotFound:
            return None
        except StorageError as error:
            raise Unavailable(f"cannot fetch {key}") from error
        duration = self.transcoder.probe_duration(path)
        if duration is None:
            log.warning("output %s exists but cannot be read; making it again", key)
            return None
        log.info("output %s exists from an earlier delivery; reporting it", key)
        return Output(key, path.stat().st_size, duration)

    def _publish(self, type_: str, request: ConversionRequest, **fields: Any) -> None:
        event = events.new_event(
            type_, task_id=request.task_id, version=request.version, **fields
        )
        data, attributes = events.encode(event)
        try:
            self.publisher.publish(events.TOPIC_OF[type_], data, attributes)
        except BusError as error:
            raise Unavailable(f"cannot publish {type_}") from error


def sweep_abandoned(work_dir: Path) -> int:
    """Remove the work directories that converter processes no longer running
    left in ``work_dir``, and any of this process's own: called at start,
    before this process converts anything. Returns how many went."""
    removed = 0
    for path in work_dir.glob(WORK_PREFIX + "*"):
        match = _WORK_NAME.match(path.name)
        if match is None or not path.is_dir():
            continue
        pid = int(match.group(1))
        if pid != os.getpid() and _running(pid):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed += 1
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process, alive
    return True
