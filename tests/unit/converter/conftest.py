"""Fakes and fixtures for the converter's unit tests."""

from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from services.converter.ffmpeg import FfmpegBinary, Transcoded, locate_ffmpeg
from services.converter.settings import ConverterSettings
from services.shared import events
from services.shared.bus import BusError
from services.shared.formats import AudioFormat
from services.shared.storage import ObjectNotFound, StorageError

PUSH_TOKEN = "push-secret"


class FakeStorage:
    """Objects in a dict; ``fail`` names the operations that raise."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.content_types: dict[str, str | None] = {}
        self.fail: set[str] = set()

    def _check(self, operation: str) -> None:
        if operation in self.fail:
            raise StorageError(f"{operation} failed")

    def save(self, key: str, fileobj: BinaryIO, content_type: str | None = None) -> int:
        self._check("save")
        data = fileobj.read()
        self.objects[key] = data
        self.content_types[key] = content_type
        return len(data)

    def open(self, key: str) -> BinaryIO:
        self._check("open")
        if key not in self.objects:
            raise ObjectNotFound(key)
        return io.BytesIO(self.objects[key])

    def size(self, key: str) -> int:
        return len(self.open(key).getvalue())  # type: ignore[attr-defined]

    def exists(self, key: str) -> bool:
        self._check("exists")
        return key in self.objects

    def delete(self, key: str) -> None:
        self.objects.pop(key, None)

    def delete_prefix(self, prefix: str) -> int:
        doomed = [k for k in self.objects if k.startswith(prefix)]
        for key in doomed:
            del self.objects[key]
        return len(doomed)

    def download_to(self, key: str, path: Path) -> None:
        self._check("download_to")
        Path(path).write_bytes(self.open(key).read())

    def upload_from(self, key: str, path: Path, content_type: str | None = None) -> int:
        self._check("upload_from")
        with open(path, "rb") as source:
            return self.save(key, source, content_type)

    def signed_url(
        self, key: str, *, filename: str, content_type: str, expires_seconds: int
    ) -> str | None:
        return None


class FakePublisher:
    """Keeps what is published; ``failing`` makes every publish raise."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any], dict[str, str]]] = []
        self.failing = False

    def publish(self, topic: str, data: bytes, attributes: dict[str, str]) -> str:
        if self.failing:
            raise BusError("bus down")
        event = json.loads(data)
        events.validate(event)
        self.sent.append((topic, event, attributes))
        return f"m-{len(self.sent)}"

    def close(self) -> None:
        return None


@dataclass
class FakeTranscoder:
    """Writes a recognisable output, or raises ``error``."""

    duration: float = 12.5
    error: Exception | None = None
    calls: int = 0
    probes: int = 0

    def transcode(self, source: Path, output: Path, target: AudioFormat) -> Transcoded:
        self.calls += 1
        if self.error is not None:
            raise self.error
        data = b"converted:" + target.name.encode() + b":" + source.read_bytes()
        output.write_bytes(data)
        return Transcoded(size_bytes=len(data), duration_seconds=self.duration)

    def probe_duration(self, path: Path) -> float:
        self.probes += 1
        return self.duration


@pytest.fixture
def storage() -> FakeStorage:
    return FakeStorage()


@pytest.fixture
def publisher() -> FakePublisher:
    return FakePublisher()


@pytest.fixture
def transcoder() -> FakeTranscoder:
    return FakeTranscoder()


@pytest.fixture
def settings(tmp_path: Path) -> ConverterSettings:
    work = tmp_path / "work"
    work.mkdir()
    return ConverterSettings.from_env(
        {
            "VAR_DIR": str(tmp_path / "var"),
            "PUSH_TOKEN": PUSH_TOKEN,
            "WORK_DIR": str(work),
            "TRANSCODE_TIMEOUT_SECONDS": "60",
        }
    )


@pytest.fixture
def make_request() -> Callable[..., dict[str, Any]]:
    def make(**fields: Any) -> dict[str, Any]:
        values = {
            "task_id": 7,
            "version": 2,
            "source_key": "tasks/7/original.mp3",
            "source_format": "mp3",
            "target_format": "ogg",
            "filename": "song.mp3",
            **fields,
        }
        return events.new_event("conversion.requested", **values)

    return make


@pytest.fixture
def make_envelope() -> Callable[..., dict[str, Any]]:
    def make(event: dict[str, Any], message_id: str = "m-1") -> dict[str, Any]:
        data, attributes = events.encode(event)
        return {
            "message": {
                "data": base64.b64encode(data).decode(),
                "attributes": attributes,
                "messageId": message_id,
                "publishTime": "2026-01-01T00:00:00Z",
            },
            "subscription": "projects/local/subscriptions/converter-requests",
            "deliveryAttempt": 1,
        }

    return make


@pytest.fixture(scope="session")
def ffmpeg() -> FfmpegBinary:
    return locate_ffmpeg()


@pytest.fixture(scope="session")
def make_audio(
    ffmpeg: FfmpegBinary, tmp_path_factory: pytest.TempPathFactory
) -> Callable[..., Path]:
    """Real audio written by ffmpeg: a tagged sine of ``seconds``."""
    made: dict[tuple[str, float], Path] = {}
    where = tmp_path_factory.mktemp("audio")

    def make(muxer: str = "mp3", seconds: float = 1.0, *args: str) -> Path:
        key = (muxer + " ".join(args), seconds)
        if key not in made:
            path = where / f"sine-{len(made)}.{muxer}"
            subprocess.run(
                [ffmpeg.path, "-v", "error", "-nostdin", "-y", "-f", "lavfi"]
                + ["-i", f"sine=frequency=440:duration={seconds}"]
                + ["-metadata", "title=Test Tone", *args, "-f", muxer, str(path)],
                check=True,
                timeout=60,
            )
            made[key] = path
        copy = where / f"copy-{len(list(where.iterdir()))}-{made[key].name}"
        shutil.copy(made[key], copy)
        return copy

    return make
