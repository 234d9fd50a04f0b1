"""PubSubPublisher's contract with a fake client (the emulator tests are in
tests/integration/gcp)."""

from __future__ import annotations

from concurrent import futures

import pytest
from google.api_core import exceptions

from services.shared.bus import BusError
from services.shared.gcp.pubsub import PubSubPublisher


class FakePublisherClient:
    def __init__(self, outcome) -> None:
        self.outcome = outcome
        self.calls: list[tuple] = []
        self.stopped = False

    def publish(self, topic, data, retry=None, timeout=None, **attributes):
        self.calls.append((topic, data, timeout, attributes))
        result: futures.Future = futures.Future()
        if isinstance(self.outcome, BaseException):
            result.set_exception(self.outcome)
        elif self.outcome is not None:
            result.set_result(self.outcome)
        return result

    def stop(self) -> None:
        self.stopped = True


def test_publish_sends_to_the_project_topic_with_attributes_and_a_bounded_timeout():
    client = FakePublisherClient("123")
    publisher = PubSubPublisher("audiomill-prod", timeout_seconds=3, client=client)

    assert publisher.publish("task-events", b"{}", {"type": "task.processed"}) == "123"

    [(topic, data, timeout, attributes)] = client.calls
    assert topic == "projects/audiomill-prod/topics/task-events"
    assert (data, timeout, attributes) == (b"{}", 3, {"type": "task.processed"})
    publisher.close()
    assert client.stopped


@pytest.mark.parametrize(
    "failure, reason",
    [
        (exceptions.NotFound("topic"), "does not exist"),
        (exceptions.ServiceUnavailable("down"), "failed"),
        (exceptions.PermissionDenied("no"), "failed"),
    ],
)
def test_client_failures_are_bus_errors(failure, reason):
    publisher = PubSubPublisher("p1", client=FakePublisherClient(failure))

    with pytest.raises(BusError, match=reason):
        publisher.publish("task-events", b"{}", {})


def test_a_publish_that_never_completes_is_a_bus_error_after_the_timeout():
    publisher = PubSubPublisher(
        "p1", timeout_seconds=0.2, client=FakePublisherClient(None)
    )

    with pytest.raises(BusError, match="longer than 0.2 s"):
        publisher.publish("task-events", b"{}", {})


@pytest.mark.parametrize("url", ["pubsub://", "relay://x", "pubsub:///p"])
def test_from_url_needs_a_project(url):
    with pytest.raises(ValueError):
        PubSubPublisher.from_url(url)


def test_from_url():
    assert PubSubPublisher.from_url("pubsub://audiomill-prod").project == (
        "audiomill-prod"
    )
