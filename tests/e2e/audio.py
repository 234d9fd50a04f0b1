"""Test audio made with ffmpeg, and what a file turns out to be.

ffmpeg is the system's where there is one, else the ``imageio-ffmpeg``
wheel's. ffprobe answers the format, codec and duration where it exists;
without it (the wheel ships none) the same facts come from ``ffmpeg -i``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

# What ffprobe calls each target's container and codec.
EXPECTED = {
    "mp3": ("mp3", "mp3"),
    "wav": ("wav", "pcm_s16le"),
    "ogg": ("ogg", "vorbis"),
    "flac": ("flac", "flac"),
    "m4a": ("mov,mp4,m4a,3gp,3g2,mj2", "aac"),
    "opus": ("ogg", "opus"),
    "wma": ("asf", "wmav2"),
}


@dataclass(frozen=True)
class Probe:
    container: str
    codec: str
    duration_seconds: float


def ffmpeg() -> str:
    found = shutil.which("ffmpeg")
    if found:
        return found
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def tone(path: Path, seconds: float, frequency: int = 440) -> Path:
    """A sine tone, mono 44.1 kHz, encoded by the extension of ``path``."""
    subprocess.run(
        [
            ffmpeg(),
            "-nostdin",
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            f"sine=frequency={frequency}:duration={seconds}:sample_rate=44100",
            "-ac",
            "1",
            "-metadata",
            "title=e2e tone",
            str(path),
        ],
        check=True,
        timeout=120,
    )
    return path


def probe(path: Path) -> Probe:
    ffprobe = shutil.which("ffprobe")
    if ffprobe:
        done = subprocess.run(
            [
                ffprobe,
                "-v",
                "error",
                "-show_entries",
                "format=format_name,duration:stream=codec_name,codec_type",
                "-of",
                "json",
                str(path),
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        facts = json.loads(done.stdout)
        audio = [s for s in facts["streams"] if s.get("codec_type") == "audio"]
        return Probe(
            container=facts["format"]["format_name"],
            codec=audio[0]["codec_name"] if audio else "",
            duration_seconds=float(facts["format"]["duration"]),
        )
    return _probe_with_ffmpeg(path)


def _probe_with_ffmpeg(path: Path) -> Probe:
    done = subprocess.run(
        [ffmpeg(), "-nostdin", "-hide_banner", "-i", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    container = re.search(r"^Input #0, (.+?), from ", done.stderr, re.MULTILINE)
    duration = re.search(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)", done.stderr)
    codec = re.search(r"Audio: (\w+)", done.stderr)
    if not (container and duration and codec):
        raise AssertionError(f"ffmpeg cannot read {path}:\n{done.stderr[-1500:]}")
    hours, minutes, seconds = duration.groups()
    return Probe(
        container=container.group(1),
        codec=codec.group(1),
        duration_seconds=int(hours) * 3600 + int(minutes) * 60 + float(seconds),
    )
