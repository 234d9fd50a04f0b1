"""What Pub/Sub would refuse in pubsub.yaml is refused before any call, with
the subscription and the limit named (the relay itself accepts any value)."""

from __future__ import annotations

import pytest

from deploy import names
from deploy.provision import ProvisionError, PushTarget, desired_subscription
from devstack.topology import Topology

TARGET = PushTarget(base_url="https://converter-dot-p1.appspot.com")


def _subscription(**policy):
    document = {
        "defaults": policy,
        "topics": {
            "work": {"subscriptions": {"w": {"service": "converter", "path": "/p"}}}
        },
    }
    [sub] = Topology.parse(document).subscriptions
    return sub


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ({"dead_letter": {"max_delivery_attempts": 4}}, "5 to 100 delivery attempts"),
        ({"dead_letter": {"max_delivery_attempts": 101}}, "5 to 100 delivery attempts"),
        ({"retry": {"maximum_backoff_seconds": 601}}, "at most 600 s"),
        ({"ack_deadline_seconds": 5}, "10 to 600 s"),
    ],
)
def test_a_policy_pubsub_refuses_is_a_provision_error(policy, message):
    with pytest.raises(ProvisionError, match=message):
        desired_subscription("p1", _subscription(**policy), TARGET)


def test_the_repository_pubsub_yaml_fits_every_limit():
    topology = Topology.load(names.REPO_ROOT / "pubsub.yaml")

    for sub in topology.subscriptions:
        wanted = desired_subscription("p1", sub, TARGET)
        attempts = wanted.dead_letter_policy.max_delivery_attempts
        assert attempts == sub.max_delivery_attempts
        assert 5 <= attempts <= 100
