"""Converter.handle: fetch, transcode, store, report; with fakes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from services.converter.conversion import (
    ConversionRequest,
    Converter,
    sweep_abandoned,
)
from services.converter.errors import CorruptInput, TranscodeTimeout, Unavailable
from services.shared import formats
from services.shared.storage import FileStorage, output_key

ORIGINAL = b"ID3 original bytes"


@pytest.fixture
def converter(storage, publisher, transcoder, tmp_path: Path) -> Converter:
    storage.objects["tasks/7/original.mp3"] = ORIGINAL
    return Converter(storage, publisher, transcoder, tmp_path)


def test_the_output_key_carries_task_and_version() -> None:
    aac = formats.get("aac")
    assert output_key(7, 3, aac.extension) == "tasks/7/v3/converted.m4a"


def test_a_request_is_converted_stored_and_reported(
    converter: Converter, storage, publisher, make_request, tmp_path: Path
) -> None:
    outcome = converter.handle(make_request(target_format="ogg"))

    assert outcome == "succeeded"
    key = "tasks/7/v2/converted.ogg"
    assert storage.objects[key] == b"converted:ogg:" + ORIGINAL
    assert storage.content_types[key] == "audio/ogg"
    [(topic, event, attributes)] = publisher.sent
    assert topic == "conversion-results"
    assert event["type"] == "conversion.succeeded"
    assert (event["task_id"], event["version"]) == (7, 2)
    assert event["output_key"] == key
    assert event["size_bytes"] == len(storage.objects[key])
    assert event["duration_seconds"] == 12.5
    assert attributes["type"] == "conversion.succeeded"
    assert list(tmp_path.iterdir()) == [], "the work directory is left clean"


@pytest.mark.parametrize(
    "error",
    [
        CorruptInput("The file could not be decoded."),
        TranscodeTimeout("The conversion took too long."),
    ],
)
def test_a_file_that_cannot_be_converted_is_reported_failed(
    converter: Converter, storage, publisher, transcoder, make_request, error
) -> None:
    transcoder.error = error

    assert converter.handle(make_request()) == "failed"

    [(topic, event, _)] = publisher.sent
    assert topic == "conversion-results"
    assert event["type"] == "conversion.failed"
    assert event["code"] == error.code
    assert event["message"] == error.message
    assert list(storage.objects) == ["tasks/7/original.mp3"]


def test_a_deleted_task_is_acked_without_output(
    converter: Converter, storage, publisher, transcoder, make_request
) -> None:
    storage.objects.clear()

    assert converter.handle(make_request()) == "discarded"

    assert publisher.sent == []
    assert storage.objects == {}
    assert transcoder.calls == 0


def test_a_redelivery_reports_the_stored_output_again_without_transcoding(
    converter: Converter, storage, publisher, transcoder, make_request
) -> None:
    request = make_request()
    converter.handle(request)
    publisher.failing = True
    with pytest.raises(Unavailable):
        converter.handle(make_request())
    publisher.failing = False

    assert converter.handle(request) == "succeeded"

    assert transcoder.calls == 1
    assert transcoder.probes == 2
    assert [e["output_key"] for _, e, _ in publisher.sent] == [
        "tasks/7/v2/converted.ogg"
    ] * 2


def test_on_file_storage_a_redelivery_probes_the_stored_output_in_place(
    publisher, transcoder, make_request, tmp_path: Path
) -> None:
    storage = FileStorage(tmp_path / "storage")
    (tmp_path / "storage/tasks/7").mkdir(parents=True)
    (tmp_path / "storage/tasks/7/original.mp3").write_bytes(ORIGINAL)
    work = tmp_path / "work"
    work.mkdir()
    converter = Converter(storage, publisher, transcoder, work)
    probed = []

    def probe(path: Path) -> float:
        probed.append(path)
        return 12.5

    transcoder.probe_duration = probe  # type: ignore[method-assign]

    converter.handle(make_request())
    assert converter.handle(make_request()) == "succeeded"

    assert transcoder.calls == 1
    assert probed == [tmp_path / "storage/tasks/7/v2/converted.ogg"]
    assert list(work.iterdir()) == []


def test_an_unreadable_stored_output_is_made_again(
    converter: Converter, storage, publisher, transcoder, make_request
) -> None:
    storage.objects["tasks/7/v2/converted.ogg"] = b"half"
    transcoder.probe_duration = lambda path: None  # type: ignore[method-assign]

    assert converter.handle(make_request()) == "succeeded"

    assert transcoder.calls == 1
    assert storage.objects["tasks/7/v2/converted.ogg"].startswith(b"converted:")


def test_a_new_version_is_converted_even_when_an_older_one_exists(
    converter: Converter, storage, transcoder, make_request
) -> None:
    converter.handle(make_request(version=1, target_format="wav"))
    converter.handle(make_request(version=2, target_format="flac"))

    assert transcoder.calls == 2
    assert {"tasks/7/v1/converted.wav", "tasks/7/v2/converted.flac"} <= set(
        storage.objects
    )


@pytest.mark.parametrize("operation", ["exists", "download_to", "upload_from"])
def test_a_storage_fault_asks_for_redelivery(
    converter: Converter, storage, publisher, make_request, operation: str
) -> None:
    storage.fail.add(operation)

    with pytest.raises(Unavailable):
        converter.handle(make_request())

    assert publisher.sent == []


def test_a_bus_fault_asks_for_redelivery(
    converter: Converter, publisher, make_request
) -> None:
    publisher.failing = True
    with pytest.raises(Unavailable):
        converter.handle(make_request())


def test_a_bus_fault_on_a_failure_asks_for_redelivery(
    converter: Converter, publisher, transcoder, make_request
) -> None:
    transcoder.error = CorruptInput("The file could not be decoded.")
    publisher.failing = True
    with pytest.raises(Unavailable):
        converter.handle(make_request())


def test_the_request_reads_the_event(make_request: Callable[..., dict[str, Any]]):
    request = ConversionRequest.from_event(make_request(target_format="m4a"))
    assert request.target is formats.get("aac")
    assert request.output_key == "tasks/7/v2/converted.m4a"
    assert (request.source_key, request.filename) == (
        "tasks/7/original.mp3",
        "song.mp3",
    )


def test_work_directories_of_stopped_processes_are_swept(tmp_path: Path) -> None:
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = int(gone.stdout)
    names = {
        "stopped": f"audiomill-task-1-{dead_pid}-abc",
        "own": f"audiomill-task-2-{os.getpid()}-abc",
        "running": f"audiomill-task-3-{os.getppid()}-abc",
        "unrelated": "audiomill-task-notes",
        "foreign": f"task-4-{dead_pid}-abc",
    }
    for name in names.values():
        (tmp_path / name).mkdir()
        (tmp_path / name / "converted.wav").write_bytes(b"partial")

    assert sweep_abandoned(tmp_path) == 2

    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [names["running"], names["unrelated"], names["foreign"]]
    )


def test_a_conversion_works_in_a_directory_named_for_its_process(
    converter: Converter, transcoder, make_request, tmp_path: Path
) -> None:
    seen = []
    transcode = transcoder.transcode

    def record(source: Path, output: Path, target):
        seen.append(output.parent.name)
        return transcode(source, output, target)

    transcoder.transcode = record  # type: ignore[method-assign]

    converter.handle(make_request())

    [name] = seen
    assert name.startswith(f"audiomill-task-7-{os.getpid()}-")
