import pytest
import yaml

from devstack.settings import REPO_ROOT
from devstack.topology import Topology, TopologyError


def test_the_repository_pubsub_yaml_names_every_push_endpoint():
    topology = Topology.load(REPO_ROOT / "pubsub.yaml")

    subs = {sub.name: sub for sub in topology.subscriptions}
    assert {(s.topic, s.service, s.path) for s in subs.values()} == {
        (
            "conversion-requests",
            "converter",
            "/_ah/push-handlers/conversion-requests",
        ),
        ("conversion-results", "default", "/_ah/push-handlers/conversion-results"),
        ("task-events", "notifier", "/_ah/push-handlers/task-events"),
    }
    assert subs["converter-conversion-requests"].ack_deadline_seconds == 600
    assert subs["notifier-task-events"].ack_deadline_seconds == 60
    assert all(s.max_delivery_attempts == 12 for s in subs.values())
    assert topology.dead_letter_topics == {f"{name}-dead-letter" for name in subs}
    assert topology.dead_letter_topics <= topology.topics.keys()


def test_backoff_doubles_from_the_minimum_and_stops_at_the_maximum():
    sub = Topology.load(REPO_ROOT / "pubsub.yaml").subscription("notifier-task-events")

    delays = [sub.backoff_seconds(attempt) for attempt in range(1, 13)]

    assert delays == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 600, 600]


def test_a_subscription_overrides_the_defaults():
    topology = Topology.parse(
        yaml.safe_load(
            """
            defaults:
              retry: {minimum_backoff_seconds: 2, maximum_backoff_seconds: 9}
              dead_letter: {max_delivery_attempts: 5}
            topics:
              t:
                subscriptions:
                  s:
                    service: x
                    path: /p
                    retry: {minimum_backoff_seconds: 3}
                    dead_letter: null
            """
        )
    )
    sub = topology.subscription("s")

    assert (sub.minimum_backoff_seconds, sub.maximum_backoff_seconds) == (3, 9)
    assert sub.max_delivery_attempts is None


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({}, "expected a mapping with 'topics'"),
        ({"topics": {"t": {"subscriptions": {"s": {"path": "/p"}}}}}, "'service'"),
        (
            {"topics": {"t": {"subscriptions": {"s": {"service": "x", "path": "p"}}}}},
            "must start with '/'",
        ),
        (
            {
                "defaults": {"ack_deadline_seconds": 0},
                "topics": {
                    "t": {"subscriptions": {"s": {"service": "x", "path": "/"}}}
                },
            },
            "positive number",
        ),
        (
            {
                "topics": {
                    "t": {"subscriptions": {"s": {"service": "x", "path": "/"}}},
                    "u": {"subscriptions": {"s": {"service": "y", "path": "/"}}},
                }
            },
            "subscription names repeat",
        ),
    ],
)
def test_a_broken_topology_is_refused_with_a_reason(document, message):
    with pytest.raises(TopologyError, match=message):
        Topology.parse(document)
