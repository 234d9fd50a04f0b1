"""The converter as a real process: pushes over HTTP, results to a relay,
redelivery after a fault, and after the process dies mid-transcode."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from services.shared import events, formats
from services.shared.storage import FileStorage

from .conftest import CaptureRelay, ServedConverter


def _request(task_id: int, target: str, version: int = 1) -> dict:
    return events.new_event(
        "conversion.requested",
        task_id=task_id,
        version=version,
        source_key=f"tasks/{task_id}/original.mp3",
        source_format="mp3",
        target_format=target,
        filename="tone.mp3",
    )


def test_a_push_is_converted_stored_and_published(
    served_converter: ServedConverter,
    capture_relay: CaptureRelay,
    storage_root: Path,
    make_audio: Callable[..., Path],
) -> None:
    storage = FileStorage(storage_root)
    storage.upload_from("tasks/1/original.mp3", make_audio(2.0))

    response = served_converter.push(_request(1, "opus"))

    assert response.status_code == 204, served_converter.log_tail()
    key = "tasks/1/v1/converted.opus"
    with storage.open(key) as stored:
        assert formats.sniff(stored.read(formats.SNIFF_BYTES)) == formats.get("opus")
    [(topic, event, attributes)] = capture_relay.published
    assert topic == "conversion-results"
    assert event["type"] == attributes["type"] == "conversion.succeeded"
    assert event["output_key"] == key
    assert event["size_bytes"] == storage.size(key)
    assert event["duration_seconds"] == pytest.approx(2.0, abs=0.1)


def test_a_relay_outage_is_503_then_the_redelivery_does_not_transcode_again(
    served_converter: ServedConverter,
    capture_relay: CaptureRelay,
    storage_root: Path,
    make_audio: Callable[..., Path],
) -> None:
    storage = FileStorage(storage_root)
    storage.upload_from("tasks/2/original.mp3", make_audio(2.0))
    key = "tasks/2/v1/converted.flac"

    capture_relay.refusing = True
    first = served_converter.push(_request(2, "flac"))
    assert first.status_code == 503
    assert first.headers["content-type"] == "application/problem+json"
    made = (storage_root / key).stat()

    capture_relay.refusing = False
    again = served_converter.push(_request(2, "flac"))

    assert again.status_code == 204
    assert (storage_root / key).stat().st_ino == made.st_ino, "not made again"
    [(_, event, _)] = capture_relay.published
    assert event["output_key"] == key
    assert event["duration_seconds"] == pytest.approx(2.0, abs=0.1)


def test_a_corrupt_upload_is_reported_failed_and_acked(
    served_converter: ServedConverter,
    capture_relay: CaptureRelay,
    storage_root: Path,
    make_audio: Callable[..., Path],
) -> None:
    good = make_audio(5.0).read_bytes()
    broken = storage_root / "tasks/3/original.mp3"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(good[: len(good) // 3])

    response = served_converter.push(_request(3, "ogg"))

    assert response.status_code == 204
    [(_, event, _)] = capture_relay.published
    assert event["type"] == "conversion.failed"
    assert event["code"] == "corrupt_input"
    assert "ffmpeg" not in event["message"].lower()
    assert not (storage_root / "tasks/3/v1").exists()


@pytest.mark.slow
def test_a_converter_killed_mid_transcode_converts_on_redelivery(
    served_converter: ServedConverter,
    capture_relay: CaptureRelay,
    storage_root: Path,
    make_audio: Callable[..., Path],
) -> None:
    import threading

    storage = FileStorage(storage_root)
    storage.upload_from("tasks/4/original.mp3", make_audio(240.0))
    work = Path(served_converter.env["WORK_DIR"])

    outcome: dict[str, object] = {}

    def push() -> None:
        try:
            outcome["response"] = served_converter.push(_request(4, "ogg"))
        except Exception as error:  # the connection dies with the process
            outcome["error"] = error

    pusher = threading.Thread(target=push)
    pusher.start()
    deadline = time.monotonic() + 30
    while not any(work.glob("audiomill-task-4-*/converted.ogg")):
        assert time.monotonic() < deadline, served_converter.log_tail()
        time.sleep(0.05)
    served_converter.kill()
    pusher.join(timeout=30)

    assert "response" not in outcome, "the push was never answered 2xx"
    assert not storage.exists("tasks/4/v1/converted.ogg")
    assert capture_relay.published == []

    served_converter.start()
    assert not any(work.glob("audiomill-task-4-*")), (
        "the killed conversion's work is swept"
    )
    response = served_converter.push(_request(4, "ogg"), timeout=300)

    assert response.status_code == 204, served_converter.log_tail()
    [(_, event, _)] = capture_relay.published
    assert event["type"] == "conversion.succeeded"
    assert event["duration_seconds"] == pytest.approx(240.0, abs=0.2)
    assert storage.size("tasks/4/v1/converted.ogg") == event["size_bytes"]
