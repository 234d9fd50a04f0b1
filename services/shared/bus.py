"""Publishing messages to topics.

``relay://HOST:PORT`` is the local relay, which speaks the Pub/Sub REST
publish call; ``pubsub://PROJECT`` is Google Cloud Pub/Sub (or its emulator),
in ``services.shared.gcp.pubsub``, imported only when asked for.
"""

from __future__ import annotations

import base64
from typing import Protocol
from urllib.parse import urlsplit

import httpx


class BusError(Exception):
    """The message was not accepted; the caller keeps it and tries again."""


class Publisher(Protocol):
    def publish(self, topic: str, data: bytes, attributes: dict[str, str]) -> str:
        """Publish one message and return its id once the bus has stored it."""

    def close(self) -> None: ...


class RelayPublisher:
    def __init__(
        self, base_url: str, project: str = "local", timeout: float = 10.0
    ) -> None:
        self.project = project
        self._client = httpx.Client(base_url=base_url, timeout=timeout)

    def publish(self, topic: str, data: bytes, attributes: dict[str, str]) -> str:
        body = {
            "messages": [
                {"data": base64.b64encode(data).decode(), "attributes": attributes}
            ]
        }
        path = f"/v1/projects/{self.project}/topics/{topic}:publish"
        try:
            response = self._client.post(path, json=body)
        except httpx.HTTPError as error:
            raise BusError(f"relay unreachable: {error}") from error
        if response.status_code != 200:
            raise BusError(f"relay refused {topic}: HTTP {response.status_code}")
        try:
            return str(response.json()["messageIds"][0])
        except (ValueError, KeyError, IndexError, TypeError) as error:
            raise BusError(f"relay answered {topic} without a message id") from error

    def close(self) -> None:
        self._client.close()


def open_publisher(url: str) -> Publisher:
    """The publisher a ``BUS_URL`` names."""
    parts = urlsplit(url)
    if parts.scheme == "relay":
        return RelayPublisher(f"http://{parts.netloc}")
    if parts.scheme == "pubsub":
        from services.shared.gcp.pubsub import PubSubPublisher

        return PubSubPublisher(project=parts.netloc)
    raise ValueError(f"unsupported bus URL {url!r}")
