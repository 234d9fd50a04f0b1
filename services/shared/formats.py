"""The catalog of audio formats Audiomill accepts and produces.

One table serves upload validation (``sniff``), the ``/api/formats`` endpoint
and the converter's encoder settings, so a format is added in one place.

``sniff`` recognises a format from the first bytes of a file's content, never
from its name: magic numbers for the container formats, and for MPEG audio and
ADTS the frame headers themselves, checked against the next frame where the
head holds it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "FORMATS",
    "SNIFF_BYTES",
    "AudioFormat",
    "UnknownFormat",
    "get",
    "names",
    "sniff",
    "sources",
    "targets",
]

SNIFF_BYTES = 4096
"""How much of the start of a file ``sniff`` needs to decide."""


@dataclass(frozen=True)
class AudioFormat:
    """One audio format: how it is named, served and encoded."""

    name: str
    extension: str
    media_type: str
    source: bool
    target: bool
    codec: str
    muxer: str
    encoder_args: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()


class UnknownFormat(ValueError):
    """A format name that is not in the catalog."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(
            f"unknown audio format {name!r}; supported: {', '.join(names())}"
        )


FORMATS: tuple[AudioFormat, ...] = (
    AudioFormat(
        name="mp3",
        extension="mp3",
        media_type="audio/mpeg",
        source=True,
        target=True,
        codec="libmp3lame",
        muxer="mp3",
        # VBR around 190 kbit/s; ID3v2.3 is the tag version most players read.
        encoder_args=("-q:a", "2", "-id3v2_version", "3"),
    ),
    AudioFormat(
        name="wav",
        extension="wav",
        media_type="audio/wav",
        source=True,
        target=True,
        codec="pcm_s16le",
        muxer="wav",
    ),
    AudioFormat(
        name="ogg",
        extension="ogg",
        media_type="audio/ogg",
        source=True,
        target=True,
        codec="libvorbis",
        muxer="ogg",
        encoder_args=("-q:a", "5"),
    ),
    AudioFormat(
        name="flac",
        extension="flac",
        media_type="audio/flac",
        source=True,
        target=True,
        codec="flac",
        muxer="flac",
    ),
    AudioFormat(
        name="m4a",
        extension="m4a",
        media_type="audio/mp4",
        source=True,
        target=True,
        codec="aac",
        # The ipod muxer writes the "M4A " brand; faststart puts the index
        # first so a download can start playing before it completes.
        muxer="ipod",
        encoder_args=("-b:a", "192k", "-movflags", "+faststart"),
        aliases=("aac",),
    ),
    AudioFormat(
        name="opus",
        extension="opus",
        media_type="audio/opus",
        source=True,
        target=True,
        codec="libopus",
        muxer="opus",
        encoder_args=("-b:a", "128k"),
    ),
    AudioFormat(
        name="wma",
        extension="wma",
        media_type="audio/x-ms-wma",
        source=True,
        target=True,
        codec="wmav2",
        muxer="asf",
        # WMA v2 takes at most two channels at up to 48 kHz: fold anything
        # richer down to what it takes (ffmpeg picks the nearest).
        encoder_args=(
            "-b:a",
            "192k",
            "-af",
            "aformat=channel_layouts=mono|stereo"
            ":sample_rates=48000|44100|32000|22050|16000|11025|8000",
        ),
    ),
)

_BY_NAME: dict[str, AudioFormat] = {
    key: fmt for fmt in FORMATS for key in (fmt.name, *fmt.aliases)
}


def names() -> tuple[str, ...]:
    """The canonical format names, in catalog order."""
    return tuple(fmt.name for fmt in FORMATS)


def sources() -> tuple[AudioFormat, ...]:
    """The formats an upload may be in."""
    return tuple(fmt for fmt in FORMATS if fmt.source)


def targets() -> tuple[AudioFormat, ...]:
    """The formats a file may be converted to."""
    return tuple(fmt for fmt in FORMATS if fmt.target)


def get(name: str) -> AudioFormat:
    """The format called ``name`` (case-insensitive, aliases accepted)."""
    fmt = _BY_NAME.get(name.strip().lower()) if isinstance(name, str) else None
    if fmt is None:
        raise UnknownFormat(str(name))
    return fmt


# Content sniffing ----------------------------------------------------------

_ASF_GUID = bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c")

# ISO base media brands used by audio-only MP4 files and by the generic MP4
# profiles that audio encoders write. Video-only brands (avc1, qt) are absent.
_MP4_AUDIO_BRANDS = frozenset(
    {
        b"M4A ",
        b"M4B ",
        b"M4P ",
        b"F4A ",
        b"F4B ",
        b"mp41",
        b"mp42",
        b"isom",
        b"iso2",
        b"iso4",
        b"iso5",
        b"iso6",
        b"dash",
    }
)

# MPEG audio layer III bit rates in kbit/s by [MPEG-1?][index].
_MP3_BITRATES = {
    True: (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    False: (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
# Sample rates in Hz by version bits (3: MPEG-1, 2: MPEG-2, 0: MPEG-2.5).
_MP3_RATES = {
    3: (44100, 48000, 32000),
    2: (22050, 24000, 16000),
    0: (11025, 12000, 8000),
}
_ADTS_RATES = (
    96000,
    88200,
    64000,
    48000,
    44100,
    32000,
    24000,
    22050,
    16000,
    12000,
    11025,
    8000,
    7350,
)


def sniff(head: bytes) -> AudioFormat | None:
    """The source format whose content ``head`` starts, or None.

    ``head`` is the start of a file, ideally ``SNIFF_BYTES`` long. The name of
    the file plays no part: a text file or an image called ``.mp3`` is None.
    """
    head = bytes(head[:SNIFF_BYTES])
    name = _sniff_name(head)
    return _BY_NAME[name] if name else None


def _sniff_name(head: bytes) -> str | None:
    if head.startswith(b"fLaC"):
        return "flac"
    if len(head) >= 12 and head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE":
        return "wav"
    if head.startswith(b"OggS"):
        return _sniff_ogg(head)
    if head.startswith(_ASF_GUID):
        return "wma"
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return _sniff_ftyp(head)
    if head.startswith(b"ID3"):
        return _sniff_after_id3(head)
    # Zero padding before the first frame (left by tag editors) is skipped,
    # as ffmpeg's MPEG and ADTS readers skip it.
    return _sniff_frames(head.lstrip(b"\x00"))


def _sniff_ogg(head: bytes) -> str | None:
    # The first page carries the codec's identification packet alone.
    if len(head) < 27:
        return None
    start = 27 + head[26]
    packet = head[start : start + 8]
    if packet.startswith(b"\x01vorbis"):
        return "ogg"
    if packet.startswith(b"OpusHead"):
        return "opus"
    return None


def _sniff_ftyp(head: bytes) -> str | None:
    size = int.from_bytes(head[:4], "big")
    end = min(max(size, 16), len(head))
    brands = {head[8:12]}
    brands.update(head[i : i + 4] for i in range(16, end - 3, 4))
    return "m4a" if brands & _MP4_AUDIO_BRANDS else None


def _sniff_after_id3(head: bytes) -> str | None:
    # ID3v2: "ID3", version (2 bytes), flags, then a 28-bit syncsafe size.
    if len(head) < 10 or head[3] == 0xFF or any(b & 0x80 for b in head[6:10]):
        return None
    size = 10 + ((head[6] << 21) | (head[7] << 14) | (head[8] << 7) | head[9])
    if head[5] & 0x10:
        size += 10  # footer present
    if size >= len(head):
        # The tag (often cover art) runs past what we can see; an ID3v2 tag
        # at the very start of a file is the MP3 convention.
        return "mp3"
    rest = head[size:].lstrip(b"\x00")
    if rest.startswith(b"fLaC"):
        return "flac"
    if not rest:
        return "mp3"
    return _sniff_frames(rest)


def _sniff_frames(data: bytes) -> str | None:
    """MPEG-1/2/2.5 layer III or ADTS AAC, by two consecutive frame headers."""
    if _frames_chain(data, _mp3_frame_length):
        return "mp3"
    if _frames_chain(data, _adts_frame_length):
        return "m4a"
    return None


def _frames_chain(
    data: bytes, frame_length: Callable[[bytes, int], int | None]
) -> bool:
    first = frame_length(data, 0)
    if first is None:
        return False
    if first + 4 > len(data):
        # The head ends inside the first frame (after a long tag, or a tiny
        # file): one valid header is all there is to check.
        return True
    return frame_length(data, first) is not None


def _mp3_frame_length(data: bytes, at: int) -> int | None:
    if at + 4 > len(data):
        return None
    b1, b2, b3 = data[at + 1], data[at + 2], data[at + 3]
    if data[at] != 0xFF or b1 & 0xE0 != 0xE0:
        return None
    version = (b1 >> 3) & 0b11
    layer = (b1 >> 1) & 0b11
    bitrate_index = b2 >> 4
    rate_index = (b2 >> 2) & 0b11
    emphasis = b3 & 0b11
    if version == 1 or layer != 0b01 or rate_index == 3 or emphasis == 2:
        return None
    if bitrate_index in (0, 15):
        return None  # free-format streams are not worth accepting
    mpeg1 = version == 3
    bitrate = _MP3_BITRATES[mpeg1][bitrate_index] * 1000
    rate = _MP3_RATES[version][rate_index]
    padding = (b2 >> 1) & 1
    return (144 if mpeg1 else 72) * bitrate // rate + padding


def _adts_frame_length(data: bytes, at: int) -> int | None:
    if at + 7 > len(data):
        return None
    if data[at] != 0xFF or data[at + 1] & 0xF6 != 0xF0:
        return None  # the 12-bit sync, then the layer bits, always 00
    if (data[at + 2] >> 2) & 0x0F >= len(_ADTS_RATES):
        return None
    length = ((data[at + 3] & 0x03) << 11) | (data[at + 4] << 3) | (data[at + 5] >> 5)
    header = 7 if data[at + 1] & 0x01 else 9
    return length if length > header else None
