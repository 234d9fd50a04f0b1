"""The dead-letter grants `make provision PROJECT_NUMBER=...` gives Pub/Sub's
service agent. The emulator has no IAM, so a fake IAM holder stands in, with
the real policy message."""

from __future__ import annotations

from google.iam.v1 import policy_pb2

from deploy import names
from deploy.provision import Provisioner
from devstack.topology import Topology

AGENT = names.pubsub_service_agent("123456789")


class FakeIamHolder:
    """get/set_iam_policy like the Pub/Sub clients, keyed by resource."""

    def __init__(self) -> None:
        self.policies: dict[str, policy_pb2.Policy] = {}
        self.sets = 0

    def get_iam_policy(self, request: dict) -> policy_pb2.Policy:
        policy = policy_pb2.Policy()
        policy.CopyFrom(self.policies.get(request["resource"], policy_pb2.Policy()))
        return policy

    def set_iam_policy(self, request: dict) -> policy_pb2.Policy:
        self.sets += 1
        self.policies[request["resource"]] = request["policy"]
        return request["policy"]


def test_the_agent_may_publish_dead_letters_and_read_subscriptions_once():
    topology = Topology.load(names.REPO_ROOT / "pubsub.yaml")
    topics, subscriptions = FakeIamHolder(), FakeIamHolder()
    topics.policies["projects/p1/topics/notifier-task-events-dead-letter"] = (
        policy_pb2.Policy(
            bindings=[policy_pb2.Binding(role="roles/pubsub.viewer", members=["x"])]
        )
    )
    provisioner = Provisioner("p1", publisher=topics, subscriber=subscriptions)

    for sub in topology.subscriptions:
        provisioner.grant_dead_letter_roles(sub, AGENT)
    first = topics.sets + subscriptions.sets
    for sub in topology.subscriptions:
        provisioner.grant_dead_letter_roles(sub, AGENT)

    member = f"serviceAccount:{AGENT}"
    for sub in topology.subscriptions:
        topic_policy = topics.policies[f"projects/p1/topics/{sub.name}-dead-letter"]
        sub_policy = subscriptions.policies[f"projects/p1/subscriptions/{sub.name}"]
        assert {(b.role, tuple(b.members)) for b in topic_policy.bindings} >= {
            ("roles/pubsub.publisher", (member,))
        }
        assert [(b.role, list(b.members)) for b in sub_policy.bindings] == [
            ("roles/pubsub.subscriber", [member])
        ]
    kept = topics.policies["projects/p1/topics/notifier-task-events-dead-letter"]
    assert ("roles/pubsub.viewer", ["x"]) in [
        (b.role, list(b.members)) for b in kept.bindings
    ]
    assert first == 2 * len(topology.subscriptions)
    assert topics.sets + subscriptions.sets == first  # the second pass set nothing
