"""ffmpeg: locating it, the command line, and real transcodes of small files."""

from __future__ import annotations

import os
import random
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from services.converter import ffmpeg as ffmpeg_module
from services.converter.errors import (
    CorruptInput,
    TranscodeTimeout,
    Unavailable,
    Unsupported,
)
from services.converter.ffmpeg import (
    BUNDLED,
    SYSTEM,
    FfmpegBinary,
    Transcoder,
    build_command,
    locate_ffmpeg,
)
from services.shared import formats

# Words from ffmpeg's own output that must never reach a user.
FFMPEG_WORDS = ("ffmpeg", "stream #", "@ 0x", "Lavf", "demux", "errno", "[")


def test_path_comes_first() -> None:
    binary = locate_ffmpeg(which=lambda name: f"/opt/bin/{name}")
    assert binary == FfmpegBinary("/opt/bin/ffmpeg", SYSTEM)


def test_without_one_on_path_the_wheel_provides_it() -> None:
    binary = locate_ffmpeg(which=lambda name: None)
    assert binary.origin == BUNDLED
    assert os.access(binary.path, os.X_OK)
    assert "imageio-ffmpeg" in binary.describe()
    assert binary.version() != "unknown"


def test_the_command_streams_file_to_file_with_catalog_settings() -> None:
    target = formats.get("opus")
    command = build_command("ffmpeg", Path("in.bin"), Path("out.opus"), target)
    assert command[0] == "ffmpeg"
    joined = " ".join(command)
    assert "-i in.bin -vn -map_metadata 0 -c:a libopus -b:a 128k -f opus" in joined
    assert command[-1] == "out.opus"
    assert "-nostdin" in command and "-xerror" in command
    assert command[command.index("-progress") + 1] == "pipe:1"


@pytest.mark.parametrize("target", formats.names())
def test_every_target_transcodes_keeping_tags_and_duration(
    ffmpeg: FfmpegBinary,
    make_audio: Callable[..., Path],
    tmp_path: Path,
    target: str,
) -> None:
    fmt = formats.get(target)
    source = make_audio("mp3", 2.0)
    output = tmp_path / f"out.{fmt.extension}"

    result = Transcoder(ffmpeg, timeout_seconds=60).transcode(source, output, fmt)

    head = output.read_bytes()[: formats.SNIFF_BYTES]
    assert formats.sniff(head) == fmt
    assert result.size_bytes == output.stat().st_size
    assert result.duration_seconds == pytest.approx(2.0, abs=0.1)
    # Ogg keeps tags on the stream, the others on the file: ffmpeg's listing
    # of the output shows both.
    listing = subprocess.run(
        [ffmpeg.path, "-hide_banner", "-i", str(output)],
        capture_output=True,
        text=True,
        check=False,
    ).stderr
    assert re.search(r"^\s*title\s*: Test Tone$", listing, re.MULTILINE | re.I)


def test_wma_takes_surround_high_rate_audio(
    ffmpeg: FfmpegBinary, make_audio: Callable[..., Path], tmp_path: Path
) -> None:
    source = make_audio("flac", 1.0, "-ar", "96000", "-ac", "6")
    output = tmp_path / "out.wma"
    result = Transcoder(ffmpeg, 60).transcode(source, output, formats.get("wma"))
    assert result.duration_seconds == pytest.approx(1.0, abs=0.1)


def _assert_readable(message: str) -> None:
    assert message.endswith(".")
    for word in FFMPEG_WORDS:
        assert word.lower() not in message.lower(), word


def test_a_truncated_file_is_corrupt_input(
    ffmpeg: FfmpegBinary, make_audio: Callable[..., Path], tmp_path: Path
) -> None:
    source = make_audio("mp3", 10.0)
    data = source.read_bytes()
    source.write_bytes(data[: len(data) // 2])
    output = tmp_path / "out.ogg"

    with pytest.raises(CorruptInput) as caught:
        Transcoder(ffmpeg, 60).transcode(source, output, formats.get("ogg"))

    assert caught.value.code == "corrupt_input"
    assert "incomplete" in caught.value.message
    _assert_readable(caught.value.message)


@pytest.mark.parametrize("muxer", ["mp3", "flac", "ipod", "ogg"])
def test_a_valid_head_over_garbage_is_corrupt_input(
    ffmpeg: FfmpegBinary,
    make_audio: Callable[..., Path],
    tmp_path: Path,
    muxer: str,
) -> None:
    source = make_audio(muxer, 3.0, *(["-c:a", "aac"] if muxer == "ipod" else []))
    head = source.read_bytes()[:3000]
    source.write_bytes(head + os.urandom(60_000))
    output = tmp_path / "out.wav"

    with pytest.raises(CorruptInput) as caught:
        Transcoder(ffmpeg, 60).transcode(source, output, formats.get("wav"))

    _assert_readable(caught.value.message)
    assert not output.exists()


def test_a_flac_head_over_noise_that_ffmpeg_reads_as_eio_is_corrupt_input(
    ffmpeg: FfmpegBinary, tmp_path: Path
) -> None:
    # With this seed ffmpeg 5.1 stops with "Input/output error", which once
    # made the converter retry a corrupt upload until it was dead-lettered.
    noise = random.Random(17)
    source = tmp_path / "broken.flac"
    source.write_bytes(b"fLaC" + bytes(noise.getrandbits(8) for _ in range(32768)))

    with pytest.raises(CorruptInput) as caught:
        Transcoder(ffmpeg, 60).transcode(source, tmp_path / "o.mp3", formats.get("mp3"))

    _assert_readable(caught.value.message)


def test_text_is_corrupt_input(ffmpeg: FfmpegBinary, tmp_path: Path) -> None:
    source = tmp_path / "song.mp3"
    source.write_text("not audio at all\n" * 100)
    with pytest.raises(CorruptInput) as caught:
        Transcoder(ffmpeg, 60).transcode(source, tmp_path / "o.ogg", formats.get("ogg"))
    _assert_readable(caught.value.message)


def test_past_the_time_limit_is_a_timeout(
    ffmpeg: FfmpegBinary, make_audio: Callable[..., Path], tmp_path: Path
) -> None:
    source = make_audio("wav", 120.0)
    output = tmp_path / "out.ogg"

    with pytest.raises(TranscodeTimeout) as caught:
        Transcoder(ffmpeg, timeout_seconds=0.05).transcode(
            source, output, formats.get("ogg")
        )

    assert caught.value.code == "timeout"
    assert "0.05 seconds" in caught.value.message
    assert not output.exists()


def _script(tmp_path: Path, body: str) -> FfmpegBinary:
    path = tmp_path / "fake-ffmpeg"
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return FfmpegBinary(str(path), SYSTEM)


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        ("echo 'Unknown encoder libopus' >&2; exit 1", Unsupported),
        ("echo 'Encoder not found' >&2; exit 8", Unsupported),
        ("echo 'Could not open encoder before EOF' >&2; exit 1", Unsupported),
        ("echo 'Error writing: No space left on device' >&2; exit 1", Unavailable),
        ("echo 'in.mp3: Permission denied' >&2; exit 1", Unavailable),
        ("echo 'Error reading: Input/output error' >&2; exit 1", CorruptInput),
        ("kill -9 $$", Unavailable),
        ("kill -15 $$", Unavailable),
        ("kill -11 $$", CorruptInput),
        ("kill -6 $$", CorruptInput),
        ("echo 'Output file does not contain any stream' >&2; exit 1", CorruptInput),
        ("echo 'anything else' >&2; exit 1", CorruptInput),
    ],
)
def test_ffmpeg_outcomes_map_to_failures(
    tmp_path: Path, body: str, kind: type[Exception]
) -> None:
    source = tmp_path / "in.mp3"
    source.write_bytes(b"x")
    transcoder = Transcoder(_script(tmp_path, body), 10)
    with pytest.raises(kind) as caught:
        transcoder.transcode(source, tmp_path / "o.opus", formats.get("opus"))
    if hasattr(caught.value, "message"):
        _assert_readable(caught.value.message)


def test_an_exit_without_progress_is_corrupt_input(tmp_path: Path) -> None:
    source = tmp_path / "in.mp3"
    source.write_bytes(b"x")
    transcoder = Transcoder(_script(tmp_path, "exit 0"), 10)
    with pytest.raises(CorruptInput):
        transcoder.transcode(source, tmp_path / "o.ogg", formats.get("ogg"))


def test_a_missing_binary_is_unavailable(tmp_path: Path) -> None:
    source = tmp_path / "in.mp3"
    source.write_bytes(b"x")
    transcoder = Transcoder(FfmpegBinary(str(tmp_path / "nope"), SYSTEM), 10)
    with pytest.raises(Unavailable):
        transcoder.transcode(source, tmp_path / "o.ogg", formats.get("ogg"))


def test_probe_reads_the_duration_of_a_file(
    ffmpeg: FfmpegBinary, make_audio: Callable[..., Path]
) -> None:
    path = make_audio("ogg", 3.0)
    assert Transcoder(ffmpeg, 60).probe_duration(path) == pytest.approx(3.0, abs=0.05)


def test_probe_of_junk_is_none(ffmpeg: FfmpegBinary, tmp_path: Path) -> None:
    path = tmp_path / "junk.ogg"
    path.write_bytes(b"junk" * 10)
    assert Transcoder(ffmpeg, 60).probe_duration(path) is None


def test_the_module_says_which_ffmpeg(capsys: pytest.CaptureFixture[str]) -> None:
    ffmpeg_module.main()
    assert capsys.readouterr().out.startswith("ffmpeg ")
