"""Test doubles and event builders shared by the notifier tests, unit and
integration alike."""

from __future__ import annotations

import base64
import json
import threading
from datetime import UTC, datetime
from pathlib import Path

from services.notifier.domain import OutgoingMail
from services.shared.events import new_event

MIGRATIONS = Path(__file__).resolve().parents[3] / "services/notifier/migrations"


class FakeMailer:
    """Keeps each mail; ``fail_with`` makes the next sends raise instead, and
    ``hold`` makes a send wait until the test releases it."""

    def __init__(self) -> None:
        self.sent: list[OutgoingMail] = []
        self.fail_with: Exception | None = None
        self.hold: threading.Event | None = None
        self.entered = threading.Event()

    def send(self, mail: OutgoingMail) -> None:
        self.entered.set()
        if self.hold is not None:
            assert self.hold.wait(10), "the test never released the send"
        if self.fail_with is not None:
            raise self.fail_with
        self.sent.append(mail)


class FakeClock:
    """A clock that stands still until the test moves ``now``."""

    def __init__(self) -> None:
        self.now = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def processed_event(task_id: int = 7, version: int = 1, **overrides) -> dict:
    fields = {
        "task_id": task_id,
        "version": version,
        "owner": {"id": "u-1", "username": "ada", "email": "ada@example.com"},
        "filename": "song.mp3",
        "original_format": "mp3",
        "new_format": "ogg",
        "size_bytes": 4_200_000,
        "duration_seconds": 185.4,
        "download_path": f"/api/tasks/{task_id}/converted",
    }
    fields.update(overrides)
    return new_event("task.processed", **fields)


def failed_event(task_id: int = 7, version: int = 1, **overrides) -> dict:
    fields = {
        "task_id": task_id,
        "version": version,
        "owner": {"id": "u-1", "username": "ada", "email": "ada@example.com"},
        "filename": "song.mp3",
        "original_format": "mp3",
        "new_format": "ogg",
        "error": {"code": "corrupt_input", "message": "The file is not valid audio."},
    }
    fields.update(overrides)
    return new_event("task.failed", **fields)


def envelope(event: dict, message_id: str = "m-1", attempt: int = 1) -> dict:
    data = base64.b64encode(json.dumps(event).encode()).decode()
    return {
        "message": {
            "data": data,
            "attributes": {"type": event.get("type", "")},
            "messageId": message_id,
            "publishTime": "2026-12-03T09:00:00Z",
        },
        "subscription": "projects/local/subscriptions/notifier-task-events",
        "deliveryAttempt": attempt,
    }


def claim_at_once(notifications, key, count: int) -> list:
    """``count`` threads claiming ``key`` at the same instant; their states."""
    import threading

    barrier = threading.Barrier(count)
    states = []

    def claim() -> None:
        barrier.wait()
        states.append(notifications.claim(key, "ada@example.com", "e-1")[0])

    threads = [threading.Thread(target=claim) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return states
