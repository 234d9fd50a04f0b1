"""Serving a stored file over HTTP: its content type, a download name and a
single byte range, streamed from storage in chunks."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from typing import BinaryIO

from starlette.responses import RedirectResponse, Response, StreamingResponse

from services.shared.storage import ObjectNotFound, Storage, content_disposition
from services.tasks.domain import StoredFile
from services.tasks.errors import FileNotReady, RangeNotSatisfiable

CHUNK = 64 * 1024
_RANGE = re.compile(r"^\s*(\d*)\s*-\s*(\d*)\s*$")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive ``(first, last)`` byte positions of a ``Range`` header,
    or None to send the whole file.

    A header that is not one syntactically valid ``bytes`` range (another
    unit, several ranges, garbage) is ignored, as RFC 9110 allows; a valid
    range that lies outside the file raises RangeNotSatisfiable.
    """
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    match = _RANGE.match(spec)
    if not match or match.group(1) == match.group(2) == "":
        return None
    first_text, last_text = match.groups()
    if first_text == "":
        suffix = int(last_text)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable(size)
        return max(size - suffix, 0), size - 1
    first = int(first_text)
    if last_text and int(last_text) < first:
        return None
    if first >= size:
        raise RangeNotSatisfiable(size)
    last = int(last_text) if last_text else size - 1
    return first, min(last, size - 1)


def entity_tag(stored: StoredFile) -> str:
    """A strong ETag for ``stored``: an object under a key never changes (an
    upload's key is random, an output's carries its version), so the key and
    size name its content."""
    digest = hashlib.sha256(f"{stored.key}\n{stored.size}".encode()).hexdigest()
    return f'"{digest[:32]}"'


def file_response(
    storage: Storage,
    stored: StoredFile,
    range_header: str | None,
    if_range: str | None,
    signed_url_seconds: int,
) -> Response:
    """A 200 or 206 streaming ``stored``, or a 302 to a signed URL where the
    storage can sign one (it then serves ranges itself). A range is served
    only if ``If-Range``, when sent, names this very file: a download resumed
    after a re-conversion gets the new file whole, not its tail."""
    url = storage.signed_url(
        stored.key,
        filename=stored.download_name,
        content_type=stored.media_type,
        expires_seconds=signed_url_seconds,
    )
    if url:
        return RedirectResponse(url, status_code=302)

    etag = entity_tag(stored)
    if if_range is not None and if_range.strip() != etag:
        range_header = None
    span = parse_range(range_header, stored.size)
    first, last = span if span else (0, stored.size - 1)
    headers = {
        "Accept-Ranges": "bytes",
        "Content-Disposition": content_disposition(stored.download_name),
        "Content-Length": str(last - first + 1),
        "ETag": etag,
    }
    if span:
        headers["Content-Range"] = f"bytes {first}-{last}/{stored.size}"
    try:
        source = storage.open(stored.key)
    except ObjectNotFound:
        raise FileNotReady(
            "The file was removed while you asked for it; read the task again."
        ) from None
    return StreamingResponse(
        _chunks(source, first, last - first + 1),
        status_code=206 if span else 200,
        media_type=stored.media_type,
        headers=headers,
    )


def _chunks(source: BinaryIO, start: int, length: int) -> Iterator[bytes]:
    with source:
        if start:
            source.seek(start)
        while length > 0:
            chunk = source.read(min(CHUNK, length))
            if not chunk:
                break
            length -= len(chunk)
            yield chunk
