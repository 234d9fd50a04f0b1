"""sniff() against real files written by ffmpeg, and against junk."""

import random
import shutil
import subprocess
import zlib
from pathlib import Path

import pytest

from services.shared import formats

# (file stem, expected format name, ffmpeg output arguments)
REAL = [
    ("mp3", "mp3", ["-c:a", "libmp3lame", "-f", "mp3"]),
    ("mp3-no-id3", "mp3", ["-c:a", "libmp3lame", "-id3v2_version", "0", "-f", "mp3"]),
    ("mp3-22k", "mp3", ["-ar", "22050", "-c:a", "libmp3lame", "-f", "mp3"]),
    ("mp3-8k", "mp3", ["-ar", "8000", "-c:a", "libmp3lame", "-f", "mp3"]),
    ("mp3-cbr320", "mp3", ["-c:a", "libmp3lame", "-b:a", "320k", "-f", "mp3"]),
    (
        "mp3-big-tag",
        "mp3",
        ["-metadata", "comment=" + "x" * 9000, "-c:a", "libmp3lame", "-f", "mp3"],
    ),
    ("wav", "wav", ["-c:a", "pcm_s16le", "-f", "wav"]),
    ("wav-rf64", "wav", ["-c:a", "pcm_s16le", "-rf64", "always", "-f", "wav"]),
    ("ogg", "ogg", ["-c:a", "libvorbis", "-f", "ogg"]),
    ("flac", "flac", ["-c:a", "flac", "-f", "flac"]),
    ("m4a", "m4a", ["-c:a", "aac", "-f", "ipod"]),
    ("mp4", "m4a", ["-c:a", "aac", "-f", "mp4"]),
    ("adts", "m4a", ["-c:a", "aac", "-f", "adts"]),
    ("opus", "opus", ["-c:a", "libopus", "-f", "opus"]),
    ("opus-in-ogg", "opus", ["-c:a", "libopus", "-f", "ogg"]),
    ("wma", "wma", ["-c:a", "wmav2", "-f", "asf"]),
]

# Real audio, but in a format or codec the catalog does not take.
UNSUPPORTED = [
    ("mp2", ["-c:a", "mp2", "-f", "mp2"]),
    ("flac-in-ogg", ["-c:a", "flac", "-f", "ogg"]),
    ("au", ["-c:a", "pcm_s16be", "-f", "au"]),
]


def _ffmpeg() -> str:
    found = shutil.which("ffmpeg")
    if found:
        return found
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """The first 4 KiB of each file, keyed by stem."""
    out_dir = tmp_path_factory.mktemp("sniff")
    heads = {}
    for stem, args in [(s, a) for s, _, a in REAL] + UNSUPPORTED:
        path = out_dir / stem
        subprocess.run(
            [_ffmpeg(), "-v", "error", "-y", "-f", "lavfi", "-i", "sine=d=1"]
            + args
            + [str(path)],
            check=True,
            timeout=60,
        )
        heads[stem] = path.read_bytes()[: formats.SNIFF_BYTES]
    return heads


@pytest.mark.parametrize(("stem", "expected"), [(s, e) for s, e, _ in REAL])
def test_real_files_are_recognised(
    made: dict[str, bytes], stem: str, expected: str
) -> None:
    found = formats.sniff(made[stem])
    assert found is not None and found.name == expected


@pytest.mark.parametrize("stem", [s for s, _ in UNSUPPORTED])
def test_unsupported_audio_is_none(made: dict[str, bytes], stem: str) -> None:
    assert formats.sniff(made[stem]) is None


def test_a_short_head_of_a_real_file_is_enough(made: dict[str, bytes]) -> None:
    for stem, expected, _ in REAL:
        if stem != "mp3-big-tag":
            assert formats.sniff(made[stem][:512]).name == expected, stem


@pytest.mark.parametrize(("stem", "expected"), [("mp3-no-id3", "mp3"), ("adts", "m4a")])
def test_zero_padding_before_the_first_frame_is_skipped(
    made: dict[str, bytes], stem: str, expected: str
) -> None:
    found = formats.sniff(bytes(600) + made[stem])
    assert found is not None and found.name == expected


def _png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        crc = zlib.crc32(body).to_bytes(4, "big")
        return len(data).to_bytes(4, "big") + body + crc

    ihdr = (1).to_bytes(4, "big") * 2 + bytes([8, 0, 0, 0, 0])
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00\x00"))
        + chunk(b"IEND", b"")
    )


JUNK = {
    "empty": b"",
    "text": b"This is not audio, even if it is called song.mp3\n" * 40,
    "json": b'{"file": "song.mp3", "format": "mp3"}',
    "png": _png(),
    "jpeg": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01" + bytes(200),
    "pdf": b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n",
    "zip": b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + bytes(100),
    "avi": b"RIFF\x24\x00\x00\x00AVI LIST" + bytes(100),
    "quicktime": b"\x00\x00\x00\x14ftypqt  \x00\x00\x02\x00qt  " + bytes(100),
    "h264-mp4": b"\x00\x00\x00\x18ftypavc1\x00\x00\x00\x00avc1mp71" + bytes(64),
    "ogg-theora": b"OggS\x00\x02" + bytes(20) + b"\x01\x2a\x80theora" + bytes(64),
    "id3-then-text": b"ID3\x03\x00\x00\x00\x00\x00\x0a" + bytes(10) + b"hello" * 50,
    "bad-id3-size": b"ID3\x03\x00\x00\x80\x80\x80\x80" + bytes(100),
    "lone-frame-sync": b"\xff\xfb\x90\x64" + bytes(2000),
    "zeros": bytes(4096),
    "ff-bytes": b"\xff" * 4096,
}


@pytest.mark.parametrize("name", sorted(JUNK))
def test_junk_is_none(name: str) -> None:
    assert formats.sniff(JUNK[name]) is None


def test_random_bytes_are_none() -> None:
    rng = random.Random(20261203)
    hits = [
        formats.sniff(head)
        for head in (rng.randbytes(4096) for _ in range(300))
        if formats.sniff(head) is not None
    ]
    assert hits == []


def test_the_name_plays_no_part(tmp_path: Path) -> None:
    path = tmp_path / "song.mp3"
    path.write_bytes(_png())
    assert formats.sniff(path.read_bytes()) is None
