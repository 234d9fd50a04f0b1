"""The relay through its HTTP API, pushing to a fake subscriber transport."""

from __future__ import annotations

import asyncio
import base64
import json
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs

import httpx
import pytest
from starlette.testclient import TestClient

from devstack.relay import RelaySettings, create_app
from devstack.store import RelayStore, make_engine

PUBLISH = "/v1/projects/local/topics/{}:publish"

TOPOLOGY = """
defaults:
  ack_deadline_seconds: 7
  retry:
    minimum_backoff_seconds: 0.05
    maximum_backoff_seconds: 0.2
  dead_letter:
    max_delivery_attempts: 3
topics:
  work:
    subscriptions:
      worker-work:
        service: worker
        path: /_ah/push-handlers/work
      audit-work:
        service: audit
        path: /_ah/push-handlers/work
        ack_deadline_seconds: 3
  events:
    subscriptions:
      notifier-events:
        service: notifier
        path: /push
"""

ENDPOINTS = {name: f"http://{name}.test" for name in ("worker", "audit", "notifier")}


@dataclass(frozen=True)
class Push:
    service: str
    path: str
    token: str | None
    body: dict
    at: float
    read_timeout: float | None


class FakeSubscriber(httpx.AsyncBaseTransport):
    """Every subscriber endpoint at once: records pushes, answers by script.

    ``script[service]`` lists the outcomes of its next pushes (a status, or
    ``"down"`` for a refused connection); after that it answers ``default``.
    """

    def __init__(
        self,
        script: dict[str, list[int | str]] | None = None,
        default: int = 204,
        delay: float = 0.0,
        delays: dict[str, float] | None = None,
    ) -> None:
        self.pushes: list[Push] = []
        self.script = {name: list(steps) for name, steps in (script or {}).items()}
        self.default = default
        self.delay = delay
        self.delays = delays or {}
        self.active = 0
        self.most_active = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        service = request.url.host.removesuffix(".test")
        token = parse_qs(request.url.query.decode()).get("token", [None])[0]
        self.pushes.append(
            Push(
                service=service,
                path=request.url.path,
                token=token,
                body=json.loads(await request.aread()),
                at=time.monotonic(),
                read_timeout=request.extensions.get("timeout", {}).get("read"),
            )
        )
        steps = self.script.get(service)
        outcome = steps.pop(0) if steps else self.default
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        try:
            delay = self.delays.get(service, self.delay)
            if delay:
                await asyncio.sleep(delay)
        finally:
            self.active -= 1
        if outcome == "down":
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(int(outcome))

    def to(self, service: str) -> list[Push]:
        return [push for push in self.pushes if push.service == service]


@pytest.fixture
def topology_file(tmp_path: Path) -> Path:
    path = tmp_path / "pubsub.yaml"
    path.write_text(TOPOLOGY)
    return path


@pytest.fixture
def start_relay(tmp_path: Path, topology_file: Path):
    @contextmanager
    def start(
        subscriber: FakeSubscriber,
        endpoints: dict[str, str] | None = None,
        **options,
    ) -> Iterator[TestClient]:
        settings = RelaySettings(
            database_path=tmp_path / "relay.db",
            pubsub_config=topology_file,
            endpoints=ENDPOINTS if endpoints is None else endpoints,
            push_token="s3cret/token",
            **options,
        )
        client = httpx.AsyncClient(transport=subscriber)
        with TestClient(create_app(settings, client=client)) as api:
            yield api

    return start


def publish(api: TestClient, topic: str, *payloads: dict, **attributes: str):
    messages = [
        {
            "data": base64.b64encode(json.dumps(p).encode()).decode(),
            "attributes": attributes,
        }
        for p in payloads
    ]
    return api.post(PUBLISH.format(topic), json={"messages": messages})


def wait_until(condition: Callable[[], object], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.005)


def test_publish_answers_ids_and_pushes_the_pubsub_envelope(start_relay):
    subscriber = FakeSubscriber()
    with start_relay(subscriber) as api:
        answer = publish(api, "events", {"n": 1}, type="task.processed")
        assert answer.status_code == 200
        [message_id] = answer.json()["messageIds"]

        wait_until(lambda: subscriber.pushes)
        [push] = subscriber.pushes

    assert (push.service, push.path, push.token) == (
        "notifier",
        "/push",
        "s3cret/token",
    )
    assert push.body["subscription"] == "projects/local/subscriptions/notifier-events"
    assert push.body["deliveryAttempt"] == 1
    message = push.body["message"]
    assert message["messageId"] == message_id
    assert message["attributes"] == {"type": "task.processed"}
    assert json.loads(base64.b64decode(message["data"])) == {"n": 1}
    assert message["publishTime"].endswith("Z")


def test_a_message_goes_to_every_subscription_of_its_topic(start_relay):
    subscriber = FakeSubscriber()
    with start_relay(subscriber) as api:
        ids = publish(api, "work", {"n": 1}, {"n": 2}).json()["messageIds"]
        wait_until(lambda: len(subscriber.pushes) == 4)

    for service in ("worker", "audit"):
        got = sorted(p.body["message"]["messageId"] for p in subscriber.to(service))
        assert got == sorted(ids)
    assert not subscriber.to("notifier")


def test_the_push_times_out_at_the_ack_deadline(start_relay):
    subscriber = FakeSubscriber()
    with start_relay(subscriber) as api:
        publish(api, "work", {"n": 1})
        wait_until(lambda: len(subscriber.pushes) == 2)

    assert subscriber.to("worker")[0].read_timeout == 7
    assert subscriber.to("audit")[0].read_timeout == 3


def test_an_unknown_topic_is_404_and_nothing_is_pushed(start_relay):
    subscriber = FakeSubscriber()
    with start_relay(subscriber) as api:
        answer = publish(api, "no-such-topic", {"n": 1})
        time.sleep(0.1)

    assert answer.status_code == 404
    assert answer.json()["error"]["status"] == "NOT_FOUND"
    assert subscriber.pushes == []


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"messages": []},
        {"messages": [{"data": "not base64!"}]},
        {"messages": [{"data": "", "attributes": {}}]},
        {"messages": [{"data": "e30=", "attributes": {"n": 1}}]},
        {"messages": ["e30="]},
    ],
)
def test_a_malformed_publish_is_400(start_relay, body):
    with start_relay(FakeSubscriber()) as api:
        answer = api.post(PUBLISH.format("events"), json=body)

    assert answer.status_code == 400
    assert answer.json()["error"]["status"] == "INVALID_ARGUMENT"


@pytest.mark.parametrize("status", [102, 200, 201, 202, 204])
def test_these_statuses_ack(start_relay, status):
    subscriber = FakeSubscriber(default=status)
    with start_relay(subscriber) as api:
        publish(api, "events", {"n": 1})
        wait_until(lambda: subscriber.pushes)
        time.sleep(0.15)
        deliveries = api.get("/v1/deliveries").json()["deliveries"]

    assert len(subscriber.pushes) == 1
    assert [d["state"] for d in deliveries] == ["acked"]


def test_failures_back_off_exponentially_until_an_ack(start_relay):
    subscriber = FakeSubscriber(script={"notifier": [503, "down"]})
    with start_relay(subscriber) as api:
        publish(api, "events", {"n": 1})
        wait_until(lambda: len(subscriber.pushes) == 3)
        time.sleep(0.1)
        [delivery] = api.get("/v1/deliveries").json()["deliveries"]

    first, second, third = subscriber.pushes
    assert [p.body["deliveryAttempt"] for p in subscriber.pushes] == [1, 2, 3]
    assert second.at - first.at >= 0.05
    assert third.at - second.at >= 0.1
    assert len({p.body["message"]["messageId"] for p in subscriber.pushes}) == 1
    assert (delivery["state"], delivery["attempts"]) == ("acked", 3)
    assert delivery["lastStatus"] == "204"


@pytest.mark.parametrize("status", [400, 404, 302, 500])
def test_any_other_status_is_retried(start_relay, status):
    subscriber = FakeSubscriber(script={"notifier": [status]})
    with start_relay(subscriber) as api:
        publish(api, "events", {"n": 1})
        wait_until(lambda: len(subscriber.pushes) == 2)


def test_past_the_attempt_limit_the_message_is_dead_lettered(start_relay):
    subscriber = FakeSubscriber(script={"audit": [503]}, default=503)
    subscriber.script["worker"] = [204]
    with start_relay(subscriber) as api:
        [message_id] = publish(api, "work", {"n": 1}, type="x").json()["messageIds"]
        wait_until(lambda: len(subscriber.to("audit")) == 3)
        time.sleep(0.5)
        dead = api.get("/v1/dead-letters").json()["messages"]
        by_topic = api.get("/v1/messages", params={"topic": "audit-work-dead-letter"})
        states = {
            d["subscription"]: d["state"]
            for d in api.get("/v1/deliveries").json()["deliveries"]
        }

    assert len(subscriber.to("audit")) == 3
    assert states == {"worker-work": "acked", "audit-work": "dead"}
    [letter] = dead
    first_push = subscriber.to("audit")[0].body["message"]
    assert by_topic.json()["messages"] == dead
    assert letter["topic"] == "audit-work-dead-letter"
    assert letter["messageId"] != message_id
    assert letter["data"] == first_push["data"]
    assert letter["attributes"] == {
        "type": "x",
        "CloudPubSubDeadLetterSourceDeliveryCount": "3",
        "CloudPubSubDeadLetterSourceSubscription": (
            "projects/local/subscriptions/audit-work"
        ),
        "CloudPubSubDeadLetterSourceSubscriptionProject": "local",
        "CloudPubSubDeadLetterSourceTopicPublishTime": first_push["publishTime"],
    }


def test_a_pending_delivery_resumes_after_a_restart(start_relay):
    failing = FakeSubscriber(script={"notifier": [503]}, default=503)
    with start_relay(failing) as api:
        [message_id] = publish(api, "events", {"n": 1}).json()["messageIds"]
        wait_until(
            lambda: api.get("/v1/deliveries").json()["deliveries"][0]["attempts"]
        )
        attempts = api.get("/v1/deliveries").json()["deliveries"][0]["attempts"]

    healthy = FakeSubscriber()
    with start_relay(healthy):
        wait_until(lambda: healthy.pushes)
        time.sleep(0.1)

    [push] = healthy.pushes
    assert push.body["message"]["messageId"] == message_id
    # Attempts made before the restart count: the next one carries on from them.
    assert push.body["deliveryAttempt"] >= attempts + 1


def test_a_subscriber_not_running_gets_its_messages_when_it_is(start_relay):
    subscriber = FakeSubscriber()
    without_notifier = {k: v for k, v in ENDPOINTS.items() if k != "notifier"}
    with start_relay(subscriber, endpoints=without_notifier) as api:
        [message_id] = publish(api, "events", {"n": 1}).json()["messageIds"]
        time.sleep(0.2)
        assert subscriber.pushes == []

    with start_relay(subscriber):
        wait_until(lambda: subscriber.pushes)

    assert subscriber.pushes[0].body["message"]["messageId"] == message_id
    assert subscriber.pushes[0].body["deliveryAttempt"] == 1


def test_an_acked_message_is_not_pushed_again_after_a_restart(start_relay):
    subscriber = FakeSubscriber()
    with start_relay(subscriber) as api:
        publish(api, "events", {"n": 1})
        wait_until(lambda: subscriber.pushes)
        time.sleep(0.1)
    with start_relay(subscriber):
        time.sleep(0.3)

    assert len(subscriber.pushes) == 1


def test_a_published_message_is_on_disk_when_its_id_is_answered(start_relay, tmp_path):
    without_notifier = {k: v for k, v in ENDPOINTS.items() if k != "notifier"}
    with start_relay(FakeSubscriber(), endpoints=without_notifier) as api:
        [message_id] = publish(api, "events", {"n": 1}).json()["messageIds"]
        # A second, independent connection sees it: it is committed.
        rows = RelayStore(make_engine(tmp_path / "relay.db")).deliveries()

    assert [(r["messageId"], r["state"]) for r in rows] == [(message_id, "pending")]


def test_duplicate_delivery_pushes_every_message_twice(start_relay):
    subscriber = FakeSubscriber()
    with start_relay(subscriber, duplicate_delivery=True) as api:
        publish(api, "events", {"n": 1})
        wait_until(lambda: len(subscriber.pushes) == 2)
        time.sleep(0.1)
        [delivery] = api.get("/v1/deliveries").json()["deliveries"]

    first, second = subscriber.pushes
    assert first.body["message"] == second.body["message"]
    assert [first.body["deliveryAttempt"], second.body["deliveryAttempt"]] == [1, 2]
    assert (delivery["lastStatus"], delivery["duplicateStatus"]) == ("204", "204")


def test_concurrent_pushes_per_subscription_are_bounded(start_relay):
    subscriber = FakeSubscriber(delay=0.05)
    with start_relay(subscriber, max_in_flight=2) as api:
        publish(api, "events", *({"n": n} for n in range(8)))
        wait_until(lambda: len(subscriber.pushes) == 8)

    assert subscriber.most_active == 2


def test_a_backlog_on_one_subscription_does_not_hold_up_another(start_relay):
    subscriber = FakeSubscriber(delays={"notifier": 0.5})
    with start_relay(subscriber, max_in_flight=1) as api:
        publish(api, "events", *({"n": n} for n in range(150)))
        published = time.monotonic()
        publish(api, "work", {"n": "urgent"})
        wait_until(lambda: subscriber.to("worker"))
        waited = subscriber.to("worker")[0].at - published

    assert waited < 0.4
    assert len(subscriber.to("notifier")) <= 2


def test_the_deliveries_route_shows_what_is_being_pushed(start_relay):
    subscriber = FakeSubscriber(delay=0.3)
    with start_relay(subscriber) as api:
        publish(api, "events", {"n": 1})
        wait_until(lambda: subscriber.active)
        [busy] = api.get("/v1/deliveries").json()["deliveries"]
        wait_until(lambda: not subscriber.active)
        time.sleep(0.05)
        [done] = api.get("/v1/deliveries", params={"state": "acked"}).json()[
            "deliveries"
        ]

    assert (busy["state"], busy["inFlight"]) == ("pending", True)
    assert (done["state"], done["inFlight"]) == ("acked", False)


def test_an_idle_relay_is_woken_by_a_publish_not_by_its_poll(start_relay):
    # The delivery loop polls once a second when idle; a push that waited for
    # the poll would arrive close to a second late. How fast a woken push is
    # goes in the figures printed here, not in an assertion.
    subscriber = FakeSubscriber()
    latencies = []
    with start_relay(subscriber) as api:
        for n in range(20):
            before = time.monotonic()
            publish(api, "events", {"n": n})
            wait_until(lambda n=n: len(subscriber.pushes) > n)
            latencies.append(subscriber.pushes[n].at - before)

    sys.stderr.write(
        f"publish to push: median {statistics.median(latencies) * 1000:.1f} ms, "
        f"max {max(latencies) * 1000:.1f} ms over {len(latencies)}\n"
    )
    assert statistics.median(latencies) < 0.5
    assert max(latencies) < 0.9
