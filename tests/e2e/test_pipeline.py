"""An upload becomes a converted file and one email, every hop a push."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import httpx
import pytest

from services.shared.formats import FORMATS
from tests.e2e import audio
from tests.e2e.client import eventually, links_in, mails_about, text_of
from tests.e2e.conftest import require

PIPELINE = ("auth", "tasks", "converter", "notifier")
TARGETS = [fmt.name for fmt in FORMATS if fmt.target]
TOLERANCE_SECONDS = 0.1


@pytest.fixture
def pipeline(stack):
    require(stack, *PIPELINE)
    return stack


def _source_for(target: str, sources) -> Path:
    return sources.mp3 if target == "wav" else sources.wav


def _assert_is(path: Path, target: str, seconds: float) -> None:
    container, codec = audio.EXPECTED[target]
    found = audio.probe(path)
    assert (found.container, found.codec) == (container, codec)
    assert abs(found.duration_seconds - seconds) <= TOLERANCE_SECONDS, found


@pytest.mark.parametrize("target", TARGETS)
def test_every_target_format_is_converted_and_mailed_once(
    pipeline, user, sources, outbox, tmp_path, target
):
    task = user.create(_source_for(target, sources), target)

    done = user.wait_until_final(task["id"])
    assert done["status"] == "processed", done["error"]
    assert done["version"] == 1
    assert done["processed_at"]
    assert done["links"]["converted"] == f"/api/tasks/{task['id']}/converted"

    converted = user.download(done["links"]["converted"])
    assert converted.status_code == 200
    assert len(converted.content) == done["converted_size_bytes"]
    output = tmp_path / f"converted.{target}"
    output.write_bytes(converted.content)
    _assert_is(output, target, sources.seconds)
    assert abs(done["duration_seconds"] - sources.seconds) <= TOLERANCE_SECONDS

    [mail] = outbox.wait_for(user.email, 1)
    link = f"{pipeline.base_url}/api/tasks/{task['id']}/converted"
    assert link in links_in(mail)
    assert user.download(link).content == converted.content


def test_a_reconversion_wins_and_each_version_is_mailed_once(
    pipeline, user, sources, outbox, tmp_path
):
    task = user.create(sources.wav, "ogg")
    first = user.wait_until_final(task["id"], version=1)
    assert first["status"] == "processed", first["error"]
    outbox.wait_for(user.email, 1, settle=0)

    again = user.http.put(f"/api/tasks/{task['id']}", json={"newFormat": "flac"})
    assert again.status_code == 200, again.text
    assert again.json()["version"] == 2
    assert user.download(f"/api/tasks/{task['id']}/converted").status_code == 404

    second = user.wait_until_final(task["id"], version=2)
    assert second["status"] == "processed", second["error"]
    output = tmp_path / "converted.flac"
    output.write_bytes(user.download(second["links"]["converted"]).content)
    _assert_is(output, "flac", sources.seconds)

    mails = outbox.wait_for(user.email, 2)
    assert len(mails) == 2
    assert len(mails_about(mails, "ogg")) == 1
    assert len(mails_about(mails, "flac")) == 1


def test_a_reconversion_before_the_first_result_discards_that_result(
    pipeline, user, sources, outbox, tmp_path
):
    task = user.create(sources.wav, "mp3")
    again = user.http.put(f"/api/tasks/{task['id']}", json={"newFormat": "opus"})
    assert again.status_code == 200, again.text

    done = user.wait_until_final(task["id"], version=2)
    assert done["status"] == "processed", done["error"]
    output = tmp_path / "converted.opus"
    output.write_bytes(user.download(done["links"]["converted"]).content)
    _assert_is(output, "opus", sources.seconds)

    mails = outbox.wait_for(user.email, 1, settle=1.0)
    assert len(mails_about(mails, "opus")) == 1
    # The first version was mailed only if it finished before the PUT landed.
    assert len(mails_about(mails, "mp3")) <= 1
    assert user.task(task["id"])["new_format"] == "opus"


def test_a_corrupt_upload_fails_with_a_reason_and_a_failure_mail(
    pipeline, user, outbox, tmp_path
):
    corrupt = tmp_path / "broken.flac"
    # A FLAC signature passes the upload's content check; the rest is noise.
    corrupt.write_bytes(b"fLaC" + os.urandom(32 * 1024))

    task = user.create(corrupt, "mp3")
    done = user.wait_until_final(task["id"])

    assert done["status"] == "failed"
    assert done["error"]["code"]
    assert len(done["error"]["message"]) > 10
    assert user.download(f"/api/tasks/{task['id']}/converted").status_code == 404
    [mail] = outbox.wait_for(user.email, 1)
    assert "broken.flac" in text_of(mail)
    assert done["error"]["message"] in text_of(mail)


def _child_named(parent: int, name: str) -> int | None:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        # The wheel's binary is ffmpeg-linux64-v...; comm keeps 15 characters.
        if ppid == parent and comm.startswith(name):
            return int(entry.name)
    return None


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def test_a_converter_killed_mid_transcode_gets_the_message_again(
    pipeline, user, sources, outbox, tmp_path
):
    if not Path("/proc/self/stat").exists():
        pytest.skip("/proc not available: cannot see the converter's ffmpeg")
    converter = pipeline.child_pid("converter")

    task = user.create(sources.long_wav, "m4a")
    transcoding = eventually(
        lambda: _child_named(converter, "ffmpeg"),
        30,
        "the converter to start ffmpeg",
        interval=0.01,
    )
    _kill(converter)
    _kill(transcoding)
    assert user.task(task["id"])["status"] == "uploaded"

    eventually(
        lambda: pipeline.child_pid("converter") != converter,
        15,
        "the runner to start the converter again",
    )
    done = user.wait_until_final(task["id"], timeout=120)
    assert done["status"] == "processed", done["error"]
    output = tmp_path / "converted.m4a"
    output.write_bytes(user.download(done["links"]["converted"]).content)
    _assert_is(output, "m4a", sources.long_seconds)

    assert len(outbox.wait_for(user.email, 1, settle=1.0)) == 1
    if pipeline.relay_url:
        deliveries = httpx.get(
            f"{pipeline.relay_url}/v1/deliveries",
            params={"subscription": "converter-conversion-requests"},
        ).json()["deliveries"]
        [mine] = [
            d for d in deliveries if d["attributes"].get("task_id") == str(task["id"])
        ]
        assert mine["state"] == "acked"
        assert mine["attempts"] >= 2
