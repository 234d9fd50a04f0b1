"""The rules an upload meets before it becomes a task: the format asked for,
the content's own format, the size limit and the name it is stored under."""

from __future__ import annotations

import re
import unicodedata
from typing import BinaryIO

from services.shared import formats
from services.shared.formats import AudioFormat
from services.tasks.errors import InvalidRequest, UploadTooLarge

MAX_FILENAME = 255
_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")


def clean_filename(name: str | None, fmt: AudioFormat) -> str:
    """``name`` without control characters, at most 255 characters long; a
    name with nothing left becomes ``audio.EXT``.

    A name with a folder in it is refused rather than cut down: no client of
    ours sends one, and one that does is a bug or a probe for path traversal.
    """
    name = unicodedata.normalize("NFC", name or "")
    if re.search(r"[/\\]", name):
        raise InvalidRequest(
            f"The file name {name[:80]!r} has a folder in it; send the file's "
            "own name only, such as song.mp3."
        )
    name = _UNSAFE.sub("", name).strip()
    if name in ("", ".", ".."):
        return f"audio.{fmt.extension}"
    if len(name) > MAX_FILENAME:
        stem, dot, extension = name.rpartition(".")
        if dot and 0 < len(extension) <= 16:
            name = stem[: MAX_FILENAME - len(extension) - 1] + "." + extension
        else:
            name = name[:MAX_FILENAME]
    return name


def converted_name(filename: str, fmt: AudioFormat) -> str:
    stem, dot, _ = filename.rpartition(".")
    return f"{stem if dot and stem else filename}.{fmt.extension}"


def target_format(name: str | None) -> AudioFormat:
    """The format ``name`` asks for, checked to be one we write."""
    if not name:
        raise InvalidRequest(
            "newFormat is missing; name one of: " + ", ".join(_target_names())
        )
    try:
        fmt = formats.get(name)
    except formats.UnknownFormat:
        raise InvalidRequest(
            f"newFormat {name!r} is not a format we convert to; use one of: "
            + ", ".join(_target_names())
        ) from None
    if not fmt.target:
        raise InvalidRequest(
            f"{fmt.name} cannot be converted to; use one of: "
            + ", ".join(_target_names())
        )
    return fmt


def _target_names() -> list[str]:
    return [fmt.name for fmt in formats.targets()]


def read_head(upload: BinaryIO) -> bytes:
    """The first ``SNIFF_BYTES`` of ``upload`` (fewer only at its end)."""
    head = b""
    while len(head) < formats.SNIFF_BYTES:
        chunk = upload.read(formats.SNIFF_BYTES - len(head))
        if not chunk:
            break
        head += chunk
    return head


class LimitedReader:
    """``head`` then the rest of ``upload``, raising UploadTooLarge as soon as
    more than ``limit`` bytes have been read, so reading stops there."""

    def __init__(self, head: bytes, upload: BinaryIO, limit: int) -> None:
        self._head = head
        self._upload = upload
        self._limit = limit
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        if self._head:
            chunk, self._head = self._head, b""
        else:
            # Read one byte past the limit at most, enough to know it is over.
            room = self._limit - self.count + 1
            chunk = self._upload.read(room if size < 0 else min(size, room))
        self.count += len(chunk)
        if self.count > self._limit:
            raise UploadTooLarge(self._limit)
        return chunk
