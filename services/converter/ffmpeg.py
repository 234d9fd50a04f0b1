"""ffmpeg: finding the binary, one streaming process per conversion, and its
outcome turned into a result or a failure its owner can read.

The command reads the source file and writes the output file directly; no
audio passes through Python. The output's duration comes from ffmpeg's own
``-progress`` report, since the ffmpeg shipped in the ``imageio-ffmpeg``
wheel comes without ffprobe.
"""

from __future__ import annotations

import logging
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from services.converter.errors import (
    CorruptInput,
    TranscodeTimeout,
    Unavailable,
    Unsupported,
)
from services.shared.formats import AudioFormat

log = logging.getLogger(__name__)

SYSTEM = "system"
BUNDLED = "imageio-ffmpeg"

_DURATION = re.compile(r"^\s*Duration:\s*(\d+):(\d\d):(\d\d(?:\.\d+)?)", re.MULTILINE)
_ESTIMATED = "Estimating duration from bitrate"
_STDERR_TAIL = 2000
# Signals with which ffmpeg itself crashes: a decoder fault on this file,
# which the same file brings back on every attempt. Any other signal (KILL
# from the out-of-memory killer, TERM at shutdown) comes from the machine.
_CRASHES = frozenset(
    {signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL, signal.SIGABRT}
)
# The system errors (strerror) ffmpeg reports when the machine, not the file,
# stops it: the next attempt, maybe on another instance, can succeed. Not
# "Input/output error": ffmpeg's demuxers answer EIO for garbage in a file
# too, and a corrupt upload must fail for its owner, not retry to the
# dead-letter topic.
_MACHINE_FAULTS = (
    "No space left on device",
    "Cannot allocate memory",
    "Permission denied",
)
# How ffmpeg 5 to 9 say that an encoder would not take the decoded audio.
_ENCODER_REFUSED = (
    "Error while opening encoder",
    "Error initializing output",
    "Could not open encoder",
)


@dataclass(frozen=True)
class FfmpegBinary:
    """An ffmpeg executable and where it came from."""

    path: str
    origin: str

    def version(self) -> str:
        """The version ffmpeg reports (``5.1.6-0+deb12u1``), or ``unknown``."""
        try:
            done = subprocess.run(
                [self.path, "-hide_banner", "-version"],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return "unknown"
        words = done.stdout.split(maxsplit=3)
        return words[2] if len(words) > 2 and words[0] == "ffmpeg" else "unknown"

    def describe(self) -> str:
        where = {SYSTEM: "from PATH", BUNDLED: "from the imageio-ffmpeg wheel"}
        origin = where.get(self.origin, self.origin)
        return f"ffmpeg {self.version()} at {self.path} ({origin})"


def locate_ffmpeg(
    which: Callable[[str], str | None] = shutil.which,
) -> FfmpegBinary:
    """The ffmpeg on PATH, else the one inside the ``imageio-ffmpeg`` wheel."""
    found = which("ffmpeg")
    if found:
        return FfmpegBinary(found, SYSTEM)
    try:
        import imageio_ffmpeg

        return FfmpegBinary(imageio_ffmpeg.get_ffmpeg_exe(), BUNDLED)
    except (ImportError, RuntimeError) as error:
        raise Unavailable(f"no ffmpeg on PATH and none bundled: {error}") from error


def build_command(
    ffmpeg: str, source: Path, output: Path, target: AudioFormat
) -> list[str]:
    """One ffmpeg process from ``source`` to ``output``, encoded as ``target``
    says, keeping the tags; it reports progress on stdout."""
    return [
        ffmpeg,
        "-hide_banner",
        "-nostdin",
        "-nostats",
        # A decoding error stops the conversion instead of leaving a gap.
        "-xerror",
        "-progress",
        "pipe:1",
        "-i",
        str(source),
        "-vn",
        "-map_metadata",
        "0",
        "-c:a",
        target.codec,
        *target.encoder_args,
        "-f",
        target.muxer,
        "-y",
        str(output),
    ]


@dataclass(frozen=True)
class Transcoded:
    """What one transcode produced."""

    size_bytes: int
    duration_seconds: float


class Transcoder:
    """Runs ffmpeg on local files, within a time limit."""

    def __init__(self, binary: FfmpegBinary, timeout_seconds: float) -> None:
        self.binary = binary
        self.timeout_seconds = timeout_seconds

    def transcode(self, source: Path, output: Path, target: AudioFormat) -> Transcoded:
        """Convert ``source`` into ``output``; raise ``ConversionFailed`` for a
        file that cannot be converted and ``Unavailable`` for a local fault."""
        command = build_command(self.binary.path, source, output, target)
        try:
            done = subprocess.run(
                command,
                capture_output=True,
                timeout=self.timeout_seconds,
                check=False,
            )
        except subprocess.TimeoutExpired:
            output.unlink(missing_ok=True)
            raise TranscodeTimeout(
                "The conversion took longer than the limit of "
                f"{self.timeout_seconds:g} seconds and was stopped."
            ) from None
        except OSError as error:
            raise Unavailable(f"cannot run {self.binary.path}: {error}") from error

        stderr = done.stderr.decode("utf-8", "replace")
        if done.returncode != 0:
            output.unlink(missing_ok=True)
            raise _failure(done.returncode, stderr, target)

        decoded = _output_seconds(done.stdout.decode("ascii", "replace"))
        declared = _declared_seconds(stderr)
        if decoded is None or decoded <= 0:
            output.unlink(missing_ok=True)
            log.info("ffmpeg decoded no audio: %s", stderr[-_STDERR_TAIL:])
            raise CorruptInput("The file contains no audio that could be decoded.")
        if declared is not None and decoded < declared - max(1.0, 0.05 * declared):
            output.unlink(missing_ok=True)
            raise CorruptInput(
                "The file is incomplete: it says it lasts "
                f"{_clock(declared)} but only {_clock(decoded)} of it could be "
                "read. Upload the whole file again."
            )
        return Transcoded(
            size_bytes=output.stat().st_size, duration_seconds=round(decoded, 3)
        )

    def probe_duration(self, path: Path) -> float | None:
        """The duration of a file, by decoding it to nowhere (the bundled
        ffmpeg has no ffprobe); None when it cannot be read as audio."""
        command = [
            self.binary.path,
            "-hide_banner",
            "-nostdin",
            "-nostats",
            "-progress",
            "pipe:1",
            "-i",
            str(path),
            "-map",
            "0:a",
            "-f",
            "null",
            "-",
        ]
        try:
            done = subprocess.run(
                command, capture_output=True, timeout=self.timeout_seconds, check=False
            )
        except subprocess.TimeoutExpired:
            return None
        except OSError as error:
            raise Unavailable(f"cannot run {self.binary.path}: {error}") from error
        seconds = _output_seconds(done.stdout.decode("ascii", "replace"))
        if done.returncode != 0 or not seconds:
            tail = done.stderr.decode("utf-8", "replace")[-_STDERR_TAIL:]
            log.warning("cannot probe %s: %s", path.name, tail)
            return None
        return round(seconds, 3)


def _failure(returncode: int, stderr: str, target: AudioFormat) -> Exception:
    tail = stderr[-_STDERR_TAIL:]
    if returncode < 0 and -returncode in _CRASHES:
        log.error("ffmpeg crashed with signal %s: %s", -returncode, tail)
        return CorruptInput(
            "The file could not be decoded: it is damaged or uses a variant of "
            "its format this server cannot read."
        )
    if returncode < 0:
        # Killed from outside: the machine, not the file, is the likely cause.
        log.warning("ffmpeg killed by signal %s: %s", -returncode, tail)
        return Unavailable(f"ffmpeg was killed by signal {-returncode}")
    if any(sign in stderr for sign in _MACHINE_FAULTS):
        log.error("ffmpeg hit a fault of this machine: %s", tail)
        return Unavailable("the converter's disk or memory failed")
    if "Encoder not found" in stderr or "Unknown encoder" in stderr:
        log.error("this ffmpeg lacks the %s encoder: %s", target.codec, tail)
        return Unsupported(
            f"Conversion to {target.name} is not available on this server."
        )
    if any(sign in stderr for sign in _ENCODER_REFUSED):
        log.info("the %s encoder refused this audio: %s", target.codec, tail)
        return Unsupported(
            f"This file's audio (its channels or sample rate) cannot be encoded "
            f"as {target.name}."
        )
    if "does not contain any stream" in stderr or "matches no streams" in stderr:
        log.info("ffmpeg found no audio stream: %s", tail)
        return CorruptInput("The file contains no audio stream.")
    log.info("ffmpeg failed with exit code %s: %s", returncode, tail)
    return CorruptInput(
        "The file could not be decoded: it is damaged, incomplete or not the "
        "audio format its content claims."
    )


def _output_seconds(progress: str) -> float | None:
    """The end of the output, from the last ``out_time_us`` report."""
    latest = None
    for line in progress.splitlines():
        key, _, value = line.partition("=")
        if key == "out_time_us" and value.strip().lstrip("-").isdigit():
            latest = int(value) / 1_000_000
    return latest


def _declared_seconds(stderr: str) -> float | None:
    """The input's duration as its container states it; None where ffmpeg had
    to guess it from the bit rate or the container gives none."""
    if _ESTIMATED in stderr:
        return None
    match = _DURATION.search(stderr)
    if match is None:
        return None
    hours, minutes, seconds = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def _clock(seconds: float) -> str:
    whole = int(seconds)
    if whole >= 3600:
        return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"
    return f"{whole // 60}:{whole % 60:02d}"


def main() -> None:
    """``python -m services.converter.ffmpeg``: say which ffmpeg is used."""
    sys.stdout.write(locate_ffmpeg().describe() + "\n")


if __name__ == "__main__":
    main()
