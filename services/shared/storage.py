"""Object storage behind one small interface.

Keys are slash-separated (``tasks/7/original.mp3``). ``file://DIR`` keeps
objects as files under DIR; ``gs://BUCKET[/prefix]`` lives in
``services.shared.gcp.storage`` and is imported only when asked for.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import quote, unquote, urlsplit

CHUNK_SIZE = 1024 * 1024


class StorageError(Exception):
    """Storage could not be reached or failed: a fault worth retrying."""


class ObjectNotFound(StorageError):
    """No object under that key."""


class InvalidKey(ValueError):
    """A key that could escape the storage root."""


class Storage(Protocol):
    def save(self, key: str, fileobj: BinaryIO, content_type: str | None = None) -> int:
        """Stream ``fileobj`` to ``key``; readers never see a partial object."""

    def open(self, key: str) -> BinaryIO: ...

    def size(self, key: str) -> int: ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None:
        """Remove ``key``; a missing object is not an error."""

    def delete_prefix(self, prefix: str) -> int: ...

    def download_to(self, key: str, path: Path) -> None: ...

    def upload_from(
        self, key: str, path: Path, content_type: str | None = None
    ) -> int: ...

    def signed_url(
        self, key: str, *, filename: str, content_type: str, expires_seconds: int
    ) -> str | None:
        """A short-lived URL a client can download from, or None where this
        backend cannot sign and the service streams the object itself."""


def task_outputs_prefix(task_id: int) -> str:
    """Where the converter writes a task's outputs, and what deleting the
    task removes: ``tasks/<id>/``. Uploads live under a random
    ``tasks/<32 hex digits>/`` prefix instead, as the file is stored before
    the task row and its id exist; the two never overlap, since no id is 32
    digits long."""
    return f"tasks/{task_id}/"


def output_key(task_id: int, version: int, extension: str) -> str:
    """The key of one task version's converted file."""
    return f"{task_outputs_prefix(task_id)}v{version}/converted.{extension}"


def content_disposition(filename: str) -> str:
    """An ``attachment`` header naming ``filename`` (RFC 6266): a printable
    ASCII fallback and the exact UTF-8 name."""
    fallback = "".join(
        ch if 32 <= ord(ch) < 127 and ch not in '"\\' else "_" for ch in filename
    )
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename)}"


def check_key(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise InvalidKey(f"invalid storage key {key!r}")
    return key


class FileStorage:
    """Objects as files under a root directory, written through a temporary
    file and renamed into place."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def save(self, key: str, fileobj: BinaryIO, content_type: str | None = None) -> int:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".partial-")
            try:
                written = 0
                with os.fdopen(fd, "wb") as out:
                    while chunk := fileobj.read(CHUNK_SIZE):
                        out.write(chunk)
                        written += len(chunk)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as error:
            raise StorageError(f"cannot write {key}: {error.strerror}") from error
        return written

    def open(self, key: str) -> BinaryIO:
        try:
            return self._path(key).open("rb")
        except FileNotFoundError:
            raise ObjectNotFound(key) from None
        except OSError as error:
            raise StorageError(f"cannot read {key}: {error.strerror}") from error

    def size(self, key: str) -> int:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            raise ObjectNotFound(key) from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink(missing_ok=True)
        except OSError as error:
            raise StorageError(f"cannot delete {key}: {error.strerror}") from error

    def delete_prefix(self, prefix: str) -> int:
        base = self._path(prefix.rstrip("/"))
        if base.is_file():
            base.unlink()
            return 1
        if not base.is_dir():
            return 0
        count = sum(1 for p in base.rglob("*") if p.is_file())
        try:
            shutil.rmtree(base)
        except OSError as error:
            raise StorageError(f"cannot delete {prefix}: {error.strerror}") from error
        return count

    def download_to(self, key: str, path: Path) -> None:
        with self.open(key) as source, open(path, "wb") as target:
            shutil.copyfileobj(source, target, CHUNK_SIZE)

    def upload_from(self, key: str, path: Path, content_type: str | None = None) -> int:
        with open(path, "rb") as source:
            return self.save(key, source, content_type)

    def signed_url(
        self, key: str, *, filename: str, content_type: str, expires_seconds: int
    ) -> str | None:
        return None


def open_storage(url: str) -> Storage:
    """The storage backend a ``STORAGE_URL`` names."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        return FileStorage(Path(unquote(parts.netloc + parts.path)))
    if parts.scheme == "gs":
        from services.shared.gcp.storage import GcsStorage

        return GcsStorage.from_url(url)
    raise ValueError(f"unsupported storage URL {url!r}")
