"""PubSubPublisher against the Pub/Sub emulator."""

from __future__ import annotations

import time

import pytest

from services.shared.bus import BusError, open_publisher
from services.shared.gcp.pubsub import PubSubPublisher

pytestmark = pytest.mark.pubsub


def make_topic_with_subscription(project: str, topic: str) -> tuple[object, str]:
    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    topic_path = publisher.topic_path(project, topic)
    subscription = subscriber.subscription_path(project, f"{topic}-probe")
    publisher.create_topic(name=topic_path)
    subscriber.create_subscription(name=subscription, topic=topic_path)
    return subscriber, subscription


def pull_all(subscriber, subscription: str, expected: int) -> list:
    received = []
    deadline = time.monotonic() + 20
    while len(received) < expected and time.monotonic() < deadline:
        response = subscriber.pull(
            subscription=subscription, max_messages=100, timeout=5
        )
        received.extend(m.message for m in response.received_messages)
        if response.received_messages:
            subscriber.acknowledge(
                subscription=subscription,
                ack_ids=[m.ack_id for m in response.received_messages],
            )
    return received


def test_a_published_message_arrives_with_its_data_attributes_and_id(
    pubsub_emulator, project_id
):
    subscriber, subscription = make_topic_with_subscription(
        project_id, "conversion-requests"
    )
    publisher = open_publisher(f"pubsub://{project_id}")
    assert isinstance(publisher, PubSubPublisher)

    attributes = {"type": "conversion.requested", "task_id": "7", "version": "2"}
    message_id = publisher.publish("conversion-requests", b'{"a": 1}', attributes)
    publisher.close()

    [message] = pull_all(subscriber, subscription, 1)
    assert message.data == b'{"a": 1}'
    assert dict(message.attributes) == attributes
    assert message.message_id == message_id
    assert not message.ordering_key


def test_many_publishes_from_one_publisher_all_arrive(pubsub_emulator, project_id):
    subscriber, subscription = make_topic_with_subscription(project_id, "task-events")
    publisher = PubSubPublisher(project_id)

    ids = {
        publisher.publish("task-events", f"{n}".encode(), {"n": str(n)})
        for n in range(40)
    }
    publisher.close()

    received = pull_all(subscriber, subscription, 40)
    assert len(ids) == 40
    assert {m.message_id for m in received} == ids
    assert sorted(int(m.data) for m in received) == list(range(40))


def test_a_missing_topic_is_a_bus_error(pubsub_emulator, project_id):
    publisher = PubSubPublisher(project_id, timeout_seconds=5)

    with pytest.raises(BusError, match="no-such-topic"):
        publisher.publish("no-such-topic", b"x", {})
    publisher.close()


def test_an_unreachable_server_is_a_bus_error_within_the_timeout(monkeypatch):
    from deploy.emulators import free_port

    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", f"127.0.0.1:{free_port()}")
    publisher = PubSubPublisher("test-unreachable", timeout_seconds=1.5)

    started = time.monotonic()
    with pytest.raises(BusError):
        publisher.publish("conversion-requests", b"x", {"type": "t"})
    elapsed = time.monotonic() - started
    publisher.close()

    assert elapsed < 6, f"publish took {elapsed:.1f} s against a 1.5 s bound"
