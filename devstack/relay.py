"""The embedded message bus: Pub/Sub's publish call in, Pub/Sub's push out.

Published messages are stored (see ``devstack.store``) before the publisher
gets their ids. A delivery loop, woken on every publish, POSTs the push
envelope Pub/Sub sends to each subscriber endpoint named in ``pubsub.yaml``,
retries with exponential backoff and, past the attempt limit, moves the
message to the subscription's dead-letter topic.

Run it with ``uvicorn --factory devstack.relay:create_app``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from devstack import settings as env
from devstack.logs import configure_logging
from devstack.store import DueDelivery, RelayStore, make_engine
from devstack.topology import Subscription, Topology

logger = logging.getLogger(__name__)

# The statuses Pub/Sub takes as an ack from a push endpoint.
ACK_STATUSES = frozenset({102, 200, 201, 202, 204})
MAX_MESSAGES_PER_PUBLISH = 1000

T = TypeVar("T")


class UnknownTopic(LookupError):
    """Publishing to a topic ``pubsub.yaml`` does not name."""


@dataclass(frozen=True)
class RelaySettings:
    database_path: Path
    pubsub_config: Path
    endpoints: Mapping[str, str]
    push_token: str | None
    project: str = "local"
    max_in_flight: int = 4
    duplicate_delivery: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RelaySettings:
        environ = env.environ_or_default(environ)
        if environ.get("PUSH_AUTH", "token") not in ("", "token"):
            logger.warning(
                "the relay sends the shared push token only; PUSH_AUTH=%s "
                "endpoints will refuse its pushes",
                environ["PUSH_AUTH"],
            )
        return cls(
            database_path=env.var_dir(environ) / "relay.db",
            pubsub_config=env.read_path(
                environ, "PUBSUB_CONFIG", env.REPO_ROOT / "pubsub.yaml"
            ),
            endpoints=env.read_endpoints(environ),
            push_token=environ.get("PUSH_TOKEN") or None,
            project=environ.get("RELAY_PROJECT") or "local",
            max_in_flight=env.read_int(environ, "RELAY_MAX_IN_FLIGHT", 4),
            duplicate_delivery=env.read_bool(
                environ, "RELAY_DUPLICATE_DELIVERY", False
            ),
        )


class Relay:
    """Accepts publishes and runs the push delivery loop."""

    def __init__(
        self,
        topology: Topology,
        store: RelayStore,
        client: httpx.AsyncClient,
        *,
        endpoints: Mapping[str, str],
        push_token: str | None,
        project: str = "local",
        max_in_flight: int = 4,
        duplicate_delivery: bool = False,
    ) -> None:
        self.topology = topology
        self._store = store
        self._client = client
        self._endpoints = dict(endpoints)
        self._push_token = push_token
        self._project = project
        self._max_in_flight = max_in_flight
        self._duplicate_delivery = duplicate_delivery
        self._in_flight: dict[int, str] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._stopping = False
        # One thread owns the database: writes never wait on each other's locks.
        self._store_thread = ThreadPoolExecutor(1, thread_name_prefix="relay-store")

    def subscription_path(self, name: str) -> str:
        return f"projects/{self._project}/subscriptions/{name}"

    async def store(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._store_thread, partial(call, *args, **kwargs)
        )

    def in_flight(self, delivery_id: int) -> bool:
        return delivery_id in self._in_flight

    @property
    def reader(self) -> RelayStore:
        return self._store

    async def publish(
        self, topic: str, messages: list[tuple[str, dict[str, str]]]
    ) -> list[str]:
        if topic not in self.topology.topics:
            raise UnknownTopic(topic)
        names = [sub.name for sub in self.topology.topics[topic]]
        ids = await self.store(self._store.publish, topic, messages, names)
        self._wake.set()
        return ids

    def stop(self) -> None:
        """Make :meth:`run` return after cancelling the pushes in flight.

        A flag rather than cancelling ``run``: on Python 3.11,
        ``asyncio.wait_for`` drops a cancellation that arrives as the wake-up
        event fires, and the loop would then deliver forever.
        """
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        """Deliver until :meth:`stop` is called (or the task is cancelled)."""
        active = [
            sub.name
            for sub in self.topology.subscriptions
            if sub.service in self._endpoints
        ]
        for sub in self.topology.subscriptions:
            if sub.service not in self._endpoints:
                logger.warning(
                    "service %s is not running: deliveries to %s wait for it",
                    sub.service,
                    sub.name,
                )
        try:
            while not self._stopping:
                self._wake.clear()
                due, later = await self.store(
                    self._store.due, self._free_slots(active), set(self._in_flight)
                )
                for delivery in due:
                    self._start(delivery)
                timeout = 1.0
                if later is not None:
                    timeout = min(max(later - time.time(), 0.0), timeout)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._store_thread.shutdown(wait=True)

    def _free_slots(self, subscriptions: list[str]) -> dict[str, int]:
        busy = Counter(self._in_flight.values())
        return {name: self._max_in_flight - busy[name] for name in subscriptions}

    def _start(self, delivery: DueDelivery) -> None:
        self._in_flight[delivery.id] = delivery.subscription
        task = asyncio.create_task(self._deliver(delivery))
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._wake.set()

    async def _deliver(self, delivery: DueDelivery) -> None:
        sub = self.topology.subscription(delivery.subscription)
        attempt = delivery.attempts + 1
        try:
            acked, status = await self._push(sub, delivery, attempt)
            if acked:
                await self.store(self._store.ack, delivery.id, attempt, status)
                logger.debug("%s: message %s acked", sub.name, delivery.message_id)
                if self._duplicate_delivery:
                    _, again = await self._push(sub, delivery, attempt + 1)
                    await self.store(self._store.record_duplicate, delivery.id, again)
            elif sub.max_delivery_attempts and attempt >= sub.max_delivery_attempts:
                copy_id = await self.store(
                    self._store.dead_letter,
                    delivery.id,
                    attempt,
                    status,
                    topic=sub.dead_letter_topic,
                    subscription_path=self.subscription_path(sub.name),
                    project=self._project,
                    subscriptions=[
                        s.name for s in self.topology.topics[sub.dead_letter_topic]
                    ],
                )
                logger.error(
                    "%s: message %s failed %s times (last: %s); moved to %s as %s",
                    sub.name,
                    delivery.message_id,
                    attempt,
                    status,
                    sub.dead_letter_topic,
                    copy_id,
                )
            else:
                delay = sub.backoff_seconds(attempt)
                await self.store(self._store.retry, delivery.id, attempt, status, delay)
                logger.warning(
                    "%s: message %s attempt %s failed (%s); retry in %.1f s",
                    sub.name,
                    delivery.message_id,
                    attempt,
                    status,
                    delay,
                )
        except Exception:
            logger.exception("%s: delivery %s broke", sub.name, delivery.id)
            # The row is still pending; pause so a broken store cannot spin.
            await asyncio.sleep(1.0)
        finally:
            del self._in_flight[delivery.id]

    async def _push(
        self, sub: Subscription, delivery: DueDelivery, attempt: int
    ) -> tuple[bool, str]:
        envelope = {
            "message": {
                "data": delivery.data,
                "attributes": delivery.attributes,
                "messageId": delivery.message_id,
                "message_id": delivery.message_id,
                "publishTime": delivery.publish_time,
                "publish_time": delivery.publish_time,
            },
            "subscription": self.subscription_path(sub.name),
            "deliveryAttempt": attempt,
        }
        url = self._endpoints[sub.service] + sub.path
        if self._push_token:
            separator = "&" if "?" in url else "?"
            url = f"{url}{separator}token={quote(self._push_token, safe='')}"
        try:
            response = await self._client.post(
                url, json=envelope, timeout=sub.ack_deadline_seconds
            )
        except httpx.HTTPError as exc:
            return False, f"{type(exc).__name__}: {exc}"[:255]
        return response.status_code in ACK_STATUSES, str(response.status_code)


def _google_error(status: int, reason: str, message: str) -> JSONResponse:
    body = {"error": {"code": status, "message": message, "status": reason}}
    return JSONResponse(body, status_code=status)


def _parse_messages(body: Any) -> list[tuple[str, dict[str, str]]]:
    messages = body.get("messages") if isinstance(body, dict) else None
    if not isinstance(messages, list) or not messages:
        raise ValueError("'messages' must be a non-empty list")
    if len(messages) > MAX_MESSAGES_PER_PUBLISH:
        raise ValueError(f"at most {MAX_MESSAGES_PER_PUBLISH} messages per call")
    parsed = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise ValueError(f"messages[{index}] must be an object")
        data = message.get("data", "")
        attributes = message.get("attributes") or {}
        if not isinstance(data, str):
            raise ValueError(f"messages[{index}].data must be a base64 string")
        try:
            base64.b64decode(data, validate=True)
        except binascii.Error:
            raise ValueError(f"messages[{index}].data is not base64") from None
        if not isinstance(attributes, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in attributes.items()
        ):
            raise ValueError(f"messages[{index}].attributes must map strings")
        if not data and not attributes:
            raise ValueError(f"messages[{index}] has neither data nor attributes")
        parsed.append((data, attributes))
    return parsed


class RelayApi:
    """The HTTP face of a ``Relay``."""

    def __init__(self, relay: Relay) -> None:
        self._relay = relay

    async def publish(self, request: Request) -> JSONResponse:
        topic = request.path_params["topic"]
        try:
            messages = _parse_messages(await request.json())
        except ValueError as exc:
            return _google_error(400, "INVALID_ARGUMENT", str(exc))
        try:
            ids = await self._relay.publish(topic, messages)
        except UnknownTopic:
            return _google_error(
                404, "NOT_FOUND", f"Resource not found (resource={topic})."
            )
        return JSONResponse({"messageIds": ids})

    async def healthz(self, request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def deliveries(self, request: Request) -> JSONResponse:
        rows = await self._relay.store(
            self._relay.reader.deliveries,
            subscription=request.query_params.get("subscription"),
            state=request.query_params.get("state"),
        )
        for row in rows:
            row["inFlight"] = self._relay.in_flight(row["id"])
        return JSONResponse({"deliveries": rows})

    async def messages(self, request: Request) -> JSONResponse:
        topic = request.query_params.get("topic", "")
        if topic not in self._relay.topology.topics:
            return _google_error(404, "NOT_FOUND", f"no topic {topic!r}")
        rows = await self._relay.store(self._relay.reader.messages, [topic])
        return JSONResponse({"messages": rows})

    async def dead_letters(self, request: Request) -> JSONResponse:
        topics = self._relay.topology.dead_letter_topics
        rows = await self._relay.store(self._relay.reader.messages, topics)
        return JSONResponse({"messages": rows})


def create_app(
    settings: RelaySettings | None = None,
    client: httpx.AsyncClient | None = None,
) -> Starlette:
    if settings is None:
        configure_logging()
        settings = RelaySettings.from_env()
    topology = Topology.load(settings.pubsub_config)
    store = RelayStore(make_engine(settings.database_path))
    owns_client = client is None
    push_client = client or httpx.AsyncClient(
        limits=httpx.Limits(max_connections=64, max_keepalive_connections=16)
    )

    relay = Relay(
        topology,
        store,
        push_client,
        endpoints=settings.endpoints,
        push_token=settings.push_token,
        project=settings.project,
        max_in_flight=settings.max_in_flight,
        duplicate_delivery=settings.duplicate_delivery,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        loop = asyncio.create_task(relay.run(), name="relay-delivery")
        logger.info(
            "relay: %s topics, %s subscriptions, state in %s",
            len(topology.topics),
            len(topology.subscriptions),
            settings.database_path,
        )
        try:
            yield
        finally:
            relay.stop()
            with contextlib.suppress(asyncio.CancelledError):
                await loop
            if owns_client:
                await push_client.aclose()

    return Starlette(routes=_routes(RelayApi(relay)), lifespan=lifespan)


def _routes(api: RelayApi) -> list[Route]:
    return [
        Route(
            "/v1/projects/{project}/topics/{topic}:publish",
            api.publish,
            methods=["POST"],
        ),
        Route("/healthz", api.healthz, methods=["GET"]),
        Route("/v1/deliveries", api.deliveries, methods=["GET"]),
        Route("/v1/messages", api.messages, methods=["GET"]),
        Route("/v1/dead-letters", api.dead_letters, methods=["GET"]),
    ]
