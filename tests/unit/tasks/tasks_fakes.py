"""Test doubles and helpers shared by the tasks tests."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import math
import struct
import time
from pathlib import Path
from typing import Any, BinaryIO

from services.shared.bus import BusError
from services.shared.storage import FileStorage, StorageError

ISSUER = "audiomill-auth"
AUDIENCE = "audiomill"


class FakePublisher:
    """Records what is published; refuses while ``failing`` is set, and
    always for a topic in ``refused_topics``."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any], dict[str, str]]] = []
        self.failing = False
        self.refused_topics: set[str] = set()

    def publish(self, topic: str, data: bytes, attributes: dict[str, str]) -> str:
        if self.failing:
            raise BusError("relay unreachable: connection refused")
        if topic in self.refused_topics:
            raise BusError(f"topic {topic} does not exist")
        self.sent.append((topic, json.loads(data), attributes))
        return str(len(self.sent))

    def close(self) -> None:
        pass

    def types(self) -> list[str]:
        return [event["type"] for _topic, event, _attributes in self.sent]


class FakeStorage(FileStorage):
    """Files under a directory, with faults switched on by operation name."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.failing: set[str] = set()

    def _check(self, operation: str) -> None:
        if operation in self.failing:
            raise StorageError(f"storage unreachable during {operation}")

    def save(self, key: str, fileobj: BinaryIO, content_type: str | None = None) -> int:
        self._check("save")
        return super().save(key, fileobj, content_type)

    def delete(self, key: str) -> None:
        self._check("delete")
        super().delete(key)

    def delete_prefix(self, prefix: str) -> int:
        self._check("delete")
        return super().delete_prefix(prefix)

    def stored_keys(self) -> list[str]:
        if not self.root.exists():
            return []
        return sorted(
            str(path.relative_to(self.root))
            for path in self.root.rglob("*")
            if path.is_file()
        )


class CountingReader:
    """A file object that counts how much of it was read."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self.read_bytes = 0

    def read(self, size: int = -1) -> bytes:
        start = self.read_bytes
        end = len(self._data) if size < 0 else min(len(self._data), start + size)
        self.read_bytes = end
        return self._data[start:end]


@functools.cache
def wav_bytes(seconds: float = 0.1, rate: int = 8000) -> bytes:
    """A real, tiny PCM WAV file: a 440 Hz tone."""
    frames = int(seconds * rate)
    samples = b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / rate)))
        for i in range(frames)
    )
    header = b"RIFF" + struct.pack("<I", 36 + len(samples)) + b"WAVE"
    fmt = b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
    return header + fmt + b"data" + struct.pack("<I", len(samples)) + samples


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_token(kid: str, **claims: Any) -> str:
    """A token with ``alg: none`` and no signature."""
    header = _b64(json.dumps({"alg": "none", "typ": "JWT", "kid": kid}).encode())
    return f"{header}.{_b64(json.dumps(standard_claims(**claims)).encode())}."


def hs256_token(secret: bytes, kid: str, **claims: Any) -> str:
    """A token signed HS256 with ``secret`` (the public key, in the attack)."""
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    payload = _b64(json.dumps(standard_claims(**claims)).encode())
    signature = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256)
    return f"{header}.{payload}.{_b64(signature.digest())}"


def standard_claims(**claims: Any) -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "1",
        "username": "ada",
        "email": "ada@example.com",
        "iat": now,
        "exp": now + 3600,
        **claims,
    }
