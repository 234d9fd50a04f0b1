import io

import pytest

from services.shared.storage import (
    FileStorage,
    InvalidKey,
    ObjectNotFound,
    StorageError,
    open_storage,
)


class FailingReader(io.RawIOBase):
    """A client connection that drops after the first chunk."""

    def __init__(self):
        self.calls = 0

    def readable(self):
        return True

    def read(self, size=-1):
        self.calls += 1
        if self.calls > 1:
            raise OSError("connection reset")
        return b"x" * 1024


def test_save_open_size_delete(tmp_path):
    storage = open_storage(f"file://{tmp_path}")

    written = storage.save("tasks/1/original.mp3", io.BytesIO(b"abc" * 1000))

    assert written == 3000
    assert storage.size("tasks/1/original.mp3") == 3000
    with storage.open("tasks/1/original.mp3") as stream:
        assert stream.read() == b"abc" * 1000
    storage.delete("tasks/1/original.mp3")
    storage.delete("tasks/1/original.mp3")
    assert not storage.exists("tasks/1/original.mp3")


def test_a_failed_write_leaves_no_object_and_no_partial_file(tmp_path):
    storage = FileStorage(tmp_path)

    with pytest.raises(StorageError):
        storage.save("tasks/2/original.mp3", FailingReader())

    assert not storage.exists("tasks/2/original.mp3")
    assert [p.name for p in (tmp_path / "tasks" / "2").iterdir()] == []


def test_delete_prefix_removes_every_file_of_a_task(tmp_path):
    storage = FileStorage(tmp_path)
    for key in ("tasks/3/original.wav", "tasks/3/v1/converted.mp3", "tasks/30/a"):
        storage.save(key, io.BytesIO(b"1"))

    assert storage.delete_prefix("tasks/3/") == 2

    assert not storage.exists("tasks/3/v1/converted.mp3")
    assert storage.exists("tasks/30/a")


@pytest.mark.parametrize("key", ["../etc/passwd", "/abs", "a/../../b", "a//b", ""])
def test_keys_cannot_leave_the_root(tmp_path, key):
    with pytest.raises(InvalidKey):
        FileStorage(tmp_path).save(key, io.BytesIO(b"1"))


def test_missing_objects(tmp_path):
    storage = FileStorage(tmp_path)
    with pytest.raises(ObjectNotFound):
        storage.open("nope")
    with pytest.raises(ObjectNotFound):
        storage.size("nope")
    assert (
        storage.signed_url(
            "nope", filename="a", content_type="audio/mpeg", expires_seconds=60
        )
        is None
    )


def test_download_and_upload_round_trip(tmp_path):
    storage = FileStorage(tmp_path / "root")
    source = tmp_path / "in.bin"
    source.write_bytes(b"\x00\x01" * 5000)

    assert storage.upload_from("k/obj", source) == 10000
    storage.download_to("k/obj", tmp_path / "out.bin")

    assert (tmp_path / "out.bin").read_bytes() == source.read_bytes()
