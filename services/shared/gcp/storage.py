"""Google Cloud Storage behind the `Storage` protocol (`STORAGE_URL=gs://BUCKET[/p]`).

Objects stream in and out in chunks of `chunk_size`: an upload is a resumable
upload fed chunk by chunk, a read is a seekable reader that fetches ranges, so
no whole file is held in memory. An object appears only when its upload is
finalised, so a reader never sees a partial one. The client honours
`STORAGE_EMULATOR_HOST` by itself (and then uses anonymous credentials).
"""

from __future__ import annotations

import contextlib
import datetime
import io
import logging
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from services.shared.storage import (
    ObjectNotFound,
    StorageError,
    check_key,
    content_disposition,
)

logger = logging.getLogger(__name__)

# A multiple of 256 KiB, as resumable uploads require.
DEFAULT_CHUNK_SIZE = 8 * 1024 * 1024
DEFAULT_TIMEOUT_SECONDS = 60.0
DEFAULT_RETRY_SECONDS = 30.0
MAX_SIGNED_URL_SECONDS = 7 * 24 * 3600


class GcsStorage:
    """Objects under `gs://bucket/prefix/`, keyed as the other backends key them."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        client: Any = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        signing_credentials: Any = None,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        retry_seconds: float = DEFAULT_RETRY_SECONDS,
    ) -> None:
        if not bucket:
            raise ValueError("a bucket name is required")
        if chunk_size <= 0 or chunk_size % (256 * 1024):
            raise ValueError("chunk_size must be a positive multiple of 256 KiB")
        self.bucket_name = bucket
        self.prefix = prefix.strip("/")
        self.chunk_size = chunk_size
        self._client = client
        self._signing_credentials = signing_credentials
        self.timeout_seconds = timeout_seconds
        self.retry_seconds = retry_seconds
        self._lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> GcsStorage:
        """Build from `gs://BUCKET[/prefix]`."""
        parts = urlsplit(url)
        if parts.scheme != "gs" or not parts.netloc:
            raise ValueError(f"expected gs://BUCKET[/prefix], got {url!r}")
        return cls(parts.netloc, parts.path, **kwargs)

    def __repr__(self) -> str:
        where = f"{self.bucket_name}/{self.prefix}" if self.prefix else self.bucket_name
        return f"GcsStorage(gs://{where})"

    # The Storage protocol.

    def save(self, key: str, fileobj: BinaryIO, content_type: str | None = None) -> int:
        counted = _CountingReader(fileobj)
        blob = self._blob(key)
        with _mapped(key):
            # No retry: a stream read once cannot be replayed; the caller retries.
            blob.upload_from_file(
                counted,
                content_type=content_type,
                timeout=self.timeout_seconds,
                retry=None,
            )
        logger.debug("stored %s (%s bytes)", key, counted.count)
        return counted.count

    def upload_from(
        self, key: str, path: str | os.PathLike[str], content_type=None
    ) -> int:
        with open(path, "rb") as fileobj:
            return self.save(key, fileobj, content_type)

    def open(self, key: str) -> BinaryIO:
        blob = self._blob(key)
        with _mapped(key):
            blob.reload(**self._call())
            reader = blob.open("rb", chunk_size=self.chunk_size, **self._call())
        return _MappedReader(reader, key)  # type: ignore[return-value]

    def size(self, key: str) -> int:
        with _mapped(key):
            blob = self._bucket().get_blob(self._name(key), **self._call())
        if blob is None:
            raise ObjectNotFound(key)
        return int(blob.size)

    def exists(self, key: str) -> bool:
        with _mapped(key):
            return bool(self._blob(key).exists(**self._call()))

    def delete(self, key: str) -> None:
        try:
            with _mapped(key):
                self._blob(key).delete(**self._call())
        except ObjectNotFound:
            pass

    def delete_prefix(self, prefix: str) -> int:
        """Delete the object `prefix` and every object under `prefix/`."""
        base = self._name(prefix.rstrip("/"))
        deleted = 0
        with _mapped(prefix):
            client = self._client_()
            listed = client.list_blobs(
                self.bucket_name, prefix=base + "/", **self._call()
            )
            blobs = list(listed)
            exact = self._bucket().get_blob(base, **self._call())
        if exact is not None:
            blobs.append(exact)
        for blob in blobs:
            try:
                with _mapped(blob.name):
                    blob.delete(**self._call())
                deleted += 1
            except ObjectNotFound:
                pass
        return deleted

    def download_to(self, key: str, path: str | os.PathLike[str]) -> None:
        target = Path(path)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as out, _mapped(key):
                self._blob(key).download_to_file(out, **self._call())
            os.replace(tmp_name, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)
            raise

    def signed_url(
        self,
        key: str,
        *,
        filename: str,
        content_type: str,
        expires_seconds: int,
    ) -> str | None:
        signing = self._signing_arguments()
        if signing is None:
            return None
        seconds = max(1, min(int(expires_seconds), MAX_SIGNED_URL_SECONDS))
        blob = self._blob(key)
        try:
            return blob.generate_signed_url(
                version="v4",
                expiration=datetime.timedelta(seconds=seconds),
                method="GET",
                response_disposition=content_disposition(filename),
                response_type=content_type,
                **signing,
            )
        except Exception as exc:  # any signing fault means: stream it
            logger.warning("cannot sign a URL for %s, streaming instead: %s", key, exc)
            return None

    # Internals.

    def _name(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self) -> dict[str, Any]:
        """Per-request timeout and an overall retry deadline, both bounded."""
        from google.cloud.storage.retry import DEFAULT_RETRY

        return {
            "timeout": self.timeout_seconds,
            "retry": DEFAULT_RETRY.with_timeout(self.retry_seconds),
        }

    def _client_(self) -> Any:
        with self._lock:
            if self._client is None:
                from google.cloud import storage

                self._client = storage.Client()
            return self._client

    def _bucket(self) -> Any:
        return self._client_().bucket(self.bucket_name)

    def _blob(self, key: str) -> Any:
        blob = self._bucket().blob(self._name(key))
        blob.chunk_size = self.chunk_size
        return blob

    def _signing_arguments(self) -> dict[str, Any] | None:
        """How this process can sign: a private key, IAM signBlob, or not at all."""
        import google.auth.credentials

        credentials = self._signing_credentials
        if credentials is None:
            credentials = getattr(self._client_(), "_credentials", None)
        if credentials is None or isinstance(
            credentials, google.auth.credentials.AnonymousCredentials
        ):
            return None
        if isinstance(credentials, google.auth.credentials.Signing):
            return {"credentials": credentials}
        if not hasattr(credentials, "service_account_email"):
            return None

        # App Engine's default service account has no key here: refresh it so
        # that its real email and a token are known, then let IAM sign.
        try:
            if not credentials.valid or credentials.service_account_email == "default":
                from google.auth.transport.requests import Request

                credentials.refresh(Request())
        except Exception as exc:  # no token means no signing
            logger.warning("cannot refresh credentials for URL signing: %s", exc)
            return None
        return {
            "service_account_email": credentials.service_account_email,
            "access_token": credentials.token,
        }


@contextlib.contextmanager
def _mapped(key: str) -> Iterator[None]:
    """Turn the client's errors into the Storage protocol's."""
    from google.api_core import exceptions as api_exceptions
    from google.auth.exceptions import GoogleAuthError
    from google.cloud.storage import exceptions as storage_exceptions
    from requests import RequestException

    try:
        yield
    except api_exceptions.NotFound as exc:
        raise ObjectNotFound(key) from exc
    except storage_exceptions.InvalidResponse as exc:
        if getattr(exc.response, "status_code", None) == 404:
            raise ObjectNotFound(key) from exc
        raise StorageError(f"{key}: {exc}") from exc
    except (
        api_exceptions.GoogleAPIError,
        GoogleAuthError,
        storage_exceptions.DataCorruption,
        RequestException,
        ConnectionError,
        TimeoutError,
    ) as exc:
        raise StorageError(f"{key}: {exc}") from exc


class _CountingReader(io.RawIOBase):
    """Counts the bytes the upload reads, so `save` can return the size."""

    def __init__(self, inner: BinaryIO) -> None:
        self._inner = inner
        self.count = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        # The upload takes a short read for the end of the stream, so fill
        # each read: an upload stream may hand out a sniffed head first.
        if size is None or size < 0:
            data = self._inner.read()
        else:
            parts: list[bytes] = []
            wanted = size
            while wanted > 0:
                part = self._inner.read(wanted)
                if not part:
                    break
                parts.append(part)
                wanted -= len(part)
            data = b"".join(parts)
        self.count += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def tell(self) -> int:
        return self.count


class _MappedReader(io.BufferedIOBase):
    """A seekable reader whose faults are StorageError like everything else here."""

    def __init__(self, inner: Any, key: str) -> None:
        self._inner = inner
        self._key = key

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        with _mapped(self._key):
            return self._inner.read(-1 if size is None else size)

    def read1(self, size: int = -1) -> bytes:
        return self.read(size)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        with _mapped(self._key):
            return self._inner.seek(offset, whence)

    def tell(self) -> int:
        return self._inner.tell()

    def close(self) -> None:
        if not self.closed:
            self._inner.close()
        super().close()
