"""The benchmark compares like with like: the same encoder settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.convert import bare_command
from services.converter.ffmpeg import build_command
from services.shared import formats


def _encoding(command: list[str]) -> list[str]:
    """From ``-i SOURCE`` to the output: what decides the result."""
    return command[command.index("-i") : -1]


@pytest.mark.parametrize("target", formats.names())
def test_bare_ffmpeg_uses_the_converters_encoder_settings(target: str) -> None:
    fmt = formats.get(target)
    source, output = Path("in.mp3"), Path(f"out.{fmt.extension}")

    converter = _encoding(build_command("ffmpeg", source, output, fmt))
    bare = _encoding(bare_command("ffmpeg", source, output, fmt))

    assert [a for a in converter if a != "-y"] == [a for a in bare if a != "-y"]
