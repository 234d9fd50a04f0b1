"""Moving files between storage and the converter's work directory.

A remote backend downloads the original and uploads the output. The
``file://`` backend keeps objects as plain files, so there the converter
reads the original where it lies and renames the finished output into place
(atomic, as the storage contract asks) when the work directory is on the
same filesystem, instead of copying both: for a 60-minute WAV the two copies
cost more than the 5 % of ffmpeg's own time a conversion may add.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from services.shared.storage import (
    FileStorage,
    ObjectNotFound,
    Storage,
    StorageError,
    check_key,
)


def fetch(storage: Storage, key: str, work: Path, name: str = "source") -> Path:
    """A local path holding object ``key``, to be read only: where it lies on
    ``file://`` storage, else downloaded to ``work/name``.

    Raises ObjectNotFound when there is no such object, StorageError when
    storage fails.
    """
    if isinstance(storage, FileStorage):
        path = storage.root / check_key(key)
        if not path.is_file():
            raise ObjectNotFound(key)
        return path
    path = work / name
    storage.download_to(key, path)
    return path


def store(storage: Storage, key: str, path: Path, content_type: str) -> int:
    """Put the file at ``path`` under ``key``; the file is used up.

    Returns the stored size; raises StorageError when storage fails.
    """
    if isinstance(storage, FileStorage):
        target = storage.root / check_key(key)
        size = path.stat().st_size
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
            return size
        except OSError as error:
            if error.errno != errno.EXDEV:
                raise StorageError(f"cannot write {key}: {error.strerror}") from error
    return storage.upload_from(key, path, content_type=content_type)
