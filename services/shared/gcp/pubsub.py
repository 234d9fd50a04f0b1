"""Publishing to Google Cloud Pub/Sub (`BUS_URL=pubsub://PROJECT`).

The client honours `PUBSUB_EMULATOR_HOST` by itself. Ordering is off: every
consumer is idempotent and checks the task version, so order buys nothing and
would serialise publishes per key.
"""

from __future__ import annotations

import logging
import threading
from concurrent import futures
from typing import Any
from urllib.parse import urlsplit

from services.shared.bus import BusError

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_SECONDS = 10.0


class PubSubPublisher:
    """A `Publisher` that sends each message to a Pub/Sub topic and waits for its id.

    The client is made on first use, inside the process that publishes (gRPC
    channels do not survive a fork, and gunicorn forks its workers).
    """

    def __init__(
        self,
        project: str,
        *,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        client: Any = None,
    ) -> None:
        if not project:
            raise ValueError("a Pub/Sub project id is required")
        self.project = project
        self.timeout_seconds = timeout_seconds
        self._client = client
        self._lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> PubSubPublisher:
        """Build from `pubsub://PROJECT`."""
        parts = urlsplit(url)
        if parts.scheme != "pubsub" or not parts.netloc:
            raise ValueError(f"expected pubsub://PROJECT, got {url!r}")
        return cls(parts.netloc, **kwargs)

    def topic_path(self, topic: str) -> str:
        return f"projects/{self.project}/topics/{topic}"

    def publish(self, topic: str, data: bytes, attributes: dict[str, str]) -> str:
        from google.api_core import exceptions as api_exceptions
        from google.api_core import retry as api_retry
        from google.auth.exceptions import GoogleAuthError

        try:
            client = self._get_client()
        except GoogleAuthError as exc:
            raise BusError(f"no credentials for Pub/Sub: {exc}") from exc
        deadline = self.timeout_seconds
        retry = api_retry.Retry(
            initial=0.1, maximum=2.0, multiplier=2.0, timeout=deadline
        )
        try:
            publish_future = client.publish(
                self.topic_path(topic),
                data,
                retry=retry,
                timeout=deadline,
                **attributes,
            )
            message_id = publish_future.result(timeout=deadline)
        except futures.TimeoutError as exc:
            raise BusError(
                f"publishing to {topic} took longer than {deadline:g} s"
            ) from exc
        except api_exceptions.NotFound as exc:
            raise BusError(f"topic {topic} does not exist in {self.project}") from exc
        except (
            api_exceptions.GoogleAPIError,
            GoogleAuthError,
            ValueError,
            TypeError,
        ) as exc:
            raise BusError(f"publishing to {topic} failed: {exc}") from exc
        logger.debug("published %s to %s", message_id, topic)
        return str(message_id)

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.stop()

    def _get_client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = _make_client()
            return self._client


def _make_client() -> Any:
    from google.cloud import pubsub_v1

    batch = pubsub_v1.types.BatchSettings(max_messages=100, max_latency=0.01)
    options = pubsub_v1.types.PublisherOptions(enable_message_ordering=False)
    return pubsub_v1.PublisherClient(batch_settings=batch, publisher_options=options)
