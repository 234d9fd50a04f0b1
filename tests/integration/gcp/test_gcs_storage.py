"""GcsStorage against the Cloud Storage emulator (gcp-storage-emulator)."""

from __future__ import annotations

import hashlib
import io
import os
import time
import tracemalloc
from urllib.parse import parse_qsl, quote, urlsplit

import httpx
import pytest

from services.shared.gcp.storage import GcsStorage
from services.shared.storage import ObjectNotFound, StorageError, open_storage

pytestmark = pytest.mark.gcs

MiB = 1024 * 1024


class StreamOfBytes(io.RawIOBase):
    """A non-seekable stream of `total` pseudo-random bytes, made as it is read."""

    def __init__(self, total: int, fail_after: int | None = None) -> None:
        self.total = total
        self.sent = 0
        self.fail_after = fail_after
        self.digest = hashlib.sha256()
        self._block = os.urandom(64 * 1024)

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self.fail_after is not None and self.sent >= self.fail_after:
            raise OSError("the client went away")
        left = self.total - self.sent
        size = left if size is None or size < 0 else min(size, left)
        out = bytearray()
        while len(out) < size:
            # Vary each block so the object is not one repeated pattern.
            out += hashlib.sha256(self.sent.to_bytes(8) + bytes(out[-8:])).digest()
            out += self._block[: size - len(out)]
        data = bytes(out[:size])
        self.sent += len(data)
        self.digest.update(data)
        return data


@pytest.fixture
def storage(bucket) -> GcsStorage:
    return GcsStorage(bucket, "app", chunk_size=MiB)


def test_open_storage_picks_gcs_with_bucket_and_prefix(storage_emulator, bucket):
    opened = open_storage(f"gs://{bucket}/some/prefix/")
    assert isinstance(opened, GcsStorage)
    assert (opened.bucket_name, opened.prefix) == (bucket, "some/prefix")

    opened.save("a/b.txt", io.BytesIO(b"hello"))

    from google.cloud import storage as gcs

    names = [b.name for b in gcs.Client().list_blobs(bucket)]
    assert names == ["some/prefix/a/b.txt"]


def test_round_trip_with_content_type_size_and_seekable_reads(storage, bucket):
    data = os.urandom(3 * MiB + 123)
    assert storage.save("tasks/1/original.mp3", io.BytesIO(data), "audio/mpeg") == len(
        data
    )

    assert storage.exists("tasks/1/original.mp3")
    assert storage.size("tasks/1/original.mp3") == len(data)
    from google.cloud import storage as gcs

    blob = gcs.Client().bucket(bucket).get_blob("app/tasks/1/original.mp3")
    assert blob.content_type == "audio/mpeg"

    with storage.open("tasks/1/original.mp3") as reader:
        assert reader.seekable()
        reader.seek(2 * MiB + 5)
        assert reader.read(100) == data[2 * MiB + 5 : 2 * MiB + 105]
        assert reader.seek(0, io.SEEK_END) == len(data)
        reader.seek(0)
        assert reader.read() == data


def test_missing_objects(storage):
    assert not storage.exists("tasks/9/none")
    with pytest.raises(ObjectNotFound):
        storage.open("tasks/9/none")
    with pytest.raises(ObjectNotFound):
        storage.size("tasks/9/none")
    with pytest.raises(ObjectNotFound):
        storage.download_to("tasks/9/none", "/dev/null")
    storage.delete("tasks/9/none")


def test_delete_and_delete_prefix_stay_inside_the_prefix(storage):
    for key in ("tasks/7/original.wav", "tasks/7/v2/out.mp3", "tasks/70/original"):
        storage.save(key, io.BytesIO(b"x"))

    assert storage.delete_prefix("tasks/7") == 2
    assert not storage.exists("tasks/7/original.wav")
    assert not storage.exists("tasks/7/v2/out.mp3")
    assert storage.exists("tasks/70/original")

    storage.delete("tasks/70/original")
    assert not storage.exists("tasks/70/original")
    assert storage.delete_prefix("tasks/7") == 0


def test_a_large_object_streams_in_and_out_in_bounded_memory(storage, tmp_path):
    total = 48 * MiB
    source = StreamOfBytes(total)
    storage.exists("warm-up")  # the client and its imports are not the object

    tracemalloc.start()
    started = time.monotonic()
    assert storage.save("big/one.wav", source, "audio/wav") == total
    upload_seconds = time.monotonic() - started
    _, upload_peak = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()

    digest = hashlib.sha256()
    with storage.open("big/one.wav") as reader:
        while chunk := reader.read(256 * 1024):
            digest.update(chunk)
    _, read_peak = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()

    target = tmp_path / "one.wav"
    storage.download_to("big/one.wav", target)
    _, download_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    assert digest.hexdigest() == source.digest.hexdigest()
    assert hashlib.sha256(target.read_bytes()).hexdigest() == source.digest.hexdigest()
    # Chunks are 1 MiB: each direction holds a few of them, never the object.
    for name, peak in (
        ("upload", upload_peak),
        ("read", read_peak),
        ("download", download_peak),
    ):
        assert peak < 8 * MiB, f"{name} peaked at {peak / MiB:.1f} MiB for 48 MiB"
    assert upload_seconds < 60


class ShortReads(io.RawIOBase):
    """Hands out at most `step` bytes a read, as a request body stream does."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data = io.BytesIO(data)
        self._step = step

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        size = self._step if size is None or size < 0 else min(size, self._step)
        return self._data.read(size)


def test_a_stream_with_short_reads_is_stored_whole(storage):
    data = os.urandom(3 * MiB + 7)

    assert storage.save("tasks/2/original.wav", ShortReads(data, 4096)) == len(data)

    assert storage.size("tasks/2/original.wav") == len(data)
    with storage.open("tasks/2/original.wav") as reader:
        assert reader.read() == data


def test_a_failed_upload_leaves_no_object(storage):
    source = StreamOfBytes(8 * MiB, fail_after=3 * MiB)

    with pytest.raises(OSError, match="went away"):
        storage.save("tasks/3/original.flac", source)

    assert not storage.exists("tasks/3/original.flac")


def test_download_failure_leaves_no_partial_file(storage, tmp_path):
    with pytest.raises(ObjectNotFound):
        storage.download_to("tasks/4/none", tmp_path / "out.mp3")
    assert list(tmp_path.iterdir()) == []


def test_an_unreachable_server_is_a_storage_error(monkeypatch):
    from deploy.emulators import free_port

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{free_port()}")
    storage = GcsStorage("nowhere", timeout_seconds=2, retry_seconds=2)

    started = time.monotonic()
    with pytest.raises(StorageError):
        storage.exists("a/b")
    with pytest.raises(StorageError):
        storage.save("a/b", io.BytesIO(b"x"))
    assert time.monotonic() - started < 20


def test_anonymous_credentials_cannot_sign_so_the_service_streams(storage):
    storage.save("tasks/5/out.ogg", io.BytesIO(b"ogg"))

    url = storage.signed_url(
        "tasks/5/out.ogg",
        filename="song.ogg",
        content_type="audio/ogg",
        expires_seconds=300,
    )

    assert url is None


def test_a_key_file_signs_a_v4_url_that_verifies_and_downloads(storage, tmp_path):
    credentials, public_key = make_service_account(tmp_path)
    signer = GcsStorage(
        storage.bucket_name,
        storage.prefix,
        chunk_size=MiB,
        signing_credentials=credentials,
    )
    data = os.urandom(100_000)
    signer.save("tasks/6/out.mp3", io.BytesIO(data), "audio/mpeg")

    url = signer.signed_url(
        "tasks/6/out.mp3",
        filename="Ünïcode song.mp3",
        content_type="audio/mpeg",
        expires_seconds=600,
    )

    assert url is not None
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    assert parts.path == f"/{storage.bucket_name}/app/tasks/6/out.mp3"
    assert query["X-Goog-Algorithm"] == "GOOG4-RSA-SHA256"
    assert query["X-Goog-Expires"] == "600"
    assert query["X-Goog-Credential"].startswith(
        f"{credentials.service_account_email}/"
    )
    assert query["response-content-type"] == "audio/mpeg"
    assert query["response-content-disposition"] == (
        'attachment; filename="_n_code song.mp3"; '
        "filename*=UTF-8''%C3%9Cn%C3%AFcode%20song.mp3"
    )
    verify_v4_signature(url, public_key)

    # The emulator serves the object at that URL (it does not check signatures).
    response = httpx.get(url)
    assert response.status_code == 200
    assert response.content == data


def test_a_tampered_signed_url_fails_verification(storage, tmp_path):
    credentials, public_key = make_service_account(tmp_path)
    signer = GcsStorage(storage.bucket_name, signing_credentials=credentials)
    url = signer.signed_url(
        "tasks/8/out.mp3",
        filename="a.mp3",
        content_type="audio/mpeg",
        expires_seconds=60,
    )

    from cryptography.exceptions import InvalidSignature

    with pytest.raises(InvalidSignature):
        verify_v4_signature(url.replace("tasks/8", "tasks/9"), public_key)


def make_service_account(tmp_path):
    """Service-account credentials from a key made here (no Google call)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from google.oauth2 import service_account

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    info = {
        "type": "service_account",
        "project_id": "audiomill-test",
        "private_key_id": "test-key",
        "private_key": pem,
        "client_email": "audiomill-app@audiomill-test.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    credentials = service_account.Credentials.from_service_account_info(info)
    return credentials, key.public_key()


def verify_v4_signature(url: str, public_key) -> None:
    """Rebuild the V4 string-to-sign from the URL, as Cloud Storage does, and
    check the signature with the service account's public key."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    parts = urlsplit(url)
    params = parse_qsl(parts.query, keep_blank_values=True)
    signature = bytes.fromhex(dict(params)["X-Goog-Signature"])
    signed = sorted((k, v) for k, v in params if k != "X-Goog-Signature")
    canonical_query = "&".join(
        f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in signed
    )
    query = dict(signed)
    assert query["X-Goog-SignedHeaders"] == "host"
    canonical_request = "\n".join(
        [
            "GET",
            quote(parts.path, safe="/~"),
            canonical_query,
            f"host:{parts.netloc}\n",
            "host",
            "UNSIGNED-PAYLOAD",
        ]
    )
    scope = query["X-Goog-Credential"].split("/", 1)[1]
    string_to_sign = "\n".join(
        [
            "GOOG4-RSA-SHA256",
            query["X-Goog-Date"],
            scope,
            hashlib.sha256(canonical_request.encode()).hexdigest(),
        ]
    )
    public_key.verify(
        signature, string_to_sign.encode(), padding.PKCS1v15(), hashes.SHA256()
    )
