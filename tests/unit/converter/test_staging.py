"""Staging files between storage and the work directory."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from services.converter import staging
from services.shared.storage import FileStorage, ObjectNotFound, StorageError

from .conftest import FakeStorage


@pytest.fixture
def files(tmp_path: Path) -> FileStorage:
    return FileStorage(tmp_path / "storage")


@pytest.fixture
def work(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


def test_a_stored_file_is_read_where_it_lies(files: FileStorage, work: Path) -> None:
    original = work / "upload"
    original.write_bytes(b"audio")
    files.upload_from("tasks/1/original.mp3", original)

    path = staging.fetch(files, "tasks/1/original.mp3", work)

    assert path == files.root / "tasks/1/original.mp3"
    assert path.read_bytes() == b"audio"


def test_a_missing_file_is_not_found(files: FileStorage, work: Path) -> None:
    with pytest.raises(ObjectNotFound):
        staging.fetch(files, "tasks/1/original.mp3", work)


def test_other_backends_download(work: Path) -> None:
    remote = FakeStorage()
    remote.objects["tasks/1/original.mp3"] = b"audio"

    path = staging.fetch(remote, "tasks/1/original.mp3", work)

    assert path.parent == work and path.read_bytes() == b"audio"


def test_an_output_is_renamed_into_place(files: FileStorage, work: Path) -> None:
    output = work / "converted.ogg"
    output.write_bytes(b"ogg data")
    inode = output.stat().st_ino

    size = staging.store(files, "tasks/1/v1/converted.ogg", output, "audio/ogg")

    stored = files.root / "tasks/1/v1/converted.ogg"
    assert size == 8
    assert stored.read_bytes() == b"ogg data"
    assert stored.stat().st_ino == inode, "moved, not copied"
    assert not output.exists()


def test_across_filesystems_the_output_is_copied(
    files: FileStorage, work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_replace = os.replace

    def replace(src: str | Path, dst: str | Path) -> None:
        if Path(src).parent == work:
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    output = work / "converted.ogg"
    output.write_bytes(b"ogg data")

    size = staging.store(files, "tasks/1/v1/converted.ogg", output, "audio/ogg")

    assert size == 8
    assert files.open("tasks/1/v1/converted.ogg").read() == b"ogg data"


def test_a_failed_rename_is_a_storage_error(
    files: FileStorage, work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def replace(src: str | Path, dst: str | Path) -> None:
        raise OSError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(os, "replace", replace)
    output = work / "converted.ogg"
    output.write_bytes(b"ogg data")

    with pytest.raises(StorageError):
        staging.store(files, "tasks/1/v1/converted.ogg", output, "audio/ogg")


def test_other_backends_upload(work: Path) -> None:
    remote = FakeStorage()
    output = work / "converted.flac"
    output.write_bytes(b"flac data")

    assert staging.store(remote, "k/converted.flac", output, "audio/flac") == 9
    assert remote.objects["k/converted.flac"] == b"flac data"
    assert remote.content_types["k/converted.flac"] == "audio/flac"
