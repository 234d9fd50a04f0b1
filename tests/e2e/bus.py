"""Reading what the stack published, and publishing it again, on either bus.

The relay shows its messages (``GET /v1/messages``); on Pub/Sub (or its
emulator) a tap is a pull subscription of our own on each topic, made before
the test publishes anything.
"""

from __future__ import annotations

import base64
import time
import uuid
from dataclasses import dataclass
from typing import Protocol

import httpx

from devstack.topology import Topology
from tests.e2e.stack import REPO_ROOT


@dataclass(frozen=True)
class Published:
    topic: str
    data: bytes
    attributes: dict[str, str]


class Tap(Protocol):
    def published(self, task_id: int) -> list[Published]: ...

    def publish(self, message: Published) -> None: ...

    def wait_delivered(self, task_id: int) -> None: ...

    def close(self) -> None: ...


def topics() -> list[str]:
    topology = Topology.load(REPO_ROOT / "pubsub.yaml")
    return [t for t in topology.topics if t not in topology.dead_letter_topics]


def _of_task(messages: list[Published], task_id: int) -> list[Published]:
    return [m for m in messages if m.attributes.get("task_id") == str(task_id)]


class RelayTap:
    def __init__(self, relay_url: str) -> None:
        self._http = httpx.Client(base_url=relay_url, timeout=10)

    def published(self, task_id: int) -> list[Published]:
        found = []
        for topic in topics():
            answer = self._http.get("/v1/messages", params={"topic": topic})
            answer.raise_for_status()
            found += [
                Published(topic, base64.b64decode(m["data"]), m["attributes"])
                for m in answer.json()["messages"]
            ]
        return _of_task(found, task_id)

    def publish(self, message: Published) -> None:
        body = {
            "messages": [
                {
                    "data": base64.b64encode(message.data).decode(),
                    "attributes": message.attributes,
                }
            ]
        }
        answer = self._http.post(
            f"/v1/projects/local/topics/{message.topic}:publish", json=body
        )
        answer.raise_for_status()

    def wait_delivered(self, task_id: int, timeout: float = 30) -> None:
        """Until every push of the task's messages has been answered with an ack."""
        deadline = time.monotonic() + timeout
        while True:
            rows = [
                d
                for d in self._http.get("/v1/deliveries").json()["deliveries"]
                if d["attributes"].get("task_id") == str(task_id)
            ]
            if rows and all(d["state"] == "acked" for d in rows):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"deliveries not all acked: {rows}")
            time.sleep(0.1)

    def close(self) -> None:
        self._http.close()


class PubSubTap:
    def __init__(self, project: str) -> None:
        from google.cloud import pubsub_v1

        self._publisher = pubsub_v1.PublisherClient()
        self._subscriber = pubsub_v1.SubscriberClient()
        self._project = project
        self._seen: list[Published] = []
        self._subscriptions: dict[str, str] = {}
        for topic in topics():
            name = self._subscriber.subscription_path(
                project, f"e2e-tap-{topic}-{uuid.uuid4().hex[:8]}"
            )
            self._subscriber.create_subscription(
                request={
                    "name": name,
                    "topic": self._publisher.topic_path(project, topic),
                }
            )
            self._subscriptions[topic] = name

    def published(self, task_id: int) -> list[Published]:
        for topic, name in self._subscriptions.items():
            while True:
                # Without return_immediately a pull on an empty subscription
                # waits for a message until its deadline.
                answer = self._subscriber.pull(
                    request={
                        "subscription": name,
                        "max_messages": 100,
                        "return_immediately": True,
                    },
                    timeout=10,
                )
                if not answer.received_messages:
                    break
                self._seen += [
                    Published(topic, r.message.data, dict(r.message.attributes))
                    for r in answer.received_messages
                ]
                self._subscriber.acknowledge(
                    request={
                        "subscription": name,
                        "ack_ids": [r.ack_id for r in answer.received_messages],
                    }
                )
        return _of_task(self._seen, task_id)

    def publish(self, message: Published) -> None:
        topic = self._publisher.topic_path(self._project, message.topic)
        self._publisher.publish(topic, message.data, **message.attributes).result(
            timeout=10
        )

    def wait_delivered(self, task_id: int, settle: float = 3.0) -> None:
        """A fixed wait.

        Note: the emulator shows no delivery state, so the wait is a time
        within which its pushes, each a few milliseconds, have long been made.
        """
        time.sleep(settle)

    def close(self) -> None:
        for name in self._subscriptions.values():
            self._subscriber.delete_subscription(request={"subscription": name})
        self._subscriber.close()
