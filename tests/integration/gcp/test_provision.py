"""Provisioning pubsub.yaml on the Pub/Sub emulator: what it creates, and that a
second run changes nothing."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from deploy import names
from deploy.provision import (
    Provisioner,
    ProvisionError,
    cloud_targets,
    emulator_targets,
    listing,
)
from devstack.topology import Topology

pytestmark = pytest.mark.pubsub

TOPOLOGY = Topology.load(names.REPO_ROOT / "pubsub.yaml")


def provision(project: str, targets) -> list[str]:
    return Provisioner(project).run(TOPOLOGY, targets).changes


def test_the_emulator_gets_every_topic_and_subscription_and_a_rerun_changes_nothing(
    pubsub_emulator, project_id
):
    targets = emulator_targets("s3cret", 8080, {})
    before = listing(project_id)

    first = provision(project_id, targets)
    after_first = listing(project_id)
    second = provision(project_id, targets)
    after_second = listing(project_id)

    assert before == {"topics": [], "subscriptions": {}}
    assert len(first) == len(after_first["topics"]) + len(after_first["subscriptions"])
    assert second == []
    assert after_second == after_first

    document = yaml.safe_load((names.REPO_ROOT / "pubsub.yaml").read_text())
    for topic, spec in document["topics"].items():
        assert f"projects/{project_id}/topics/{topic}" in after_first["topics"]
        for name, sub in spec["subscriptions"].items():
            got = after_first["subscriptions"][
                f"projects/{project_id}/subscriptions/{name}"
            ]
            port = 8080 + names.LOCAL_PORT_OFFSETS[sub["service"]]
            assert got["push_config"] == (
                f"http://127.0.0.1:{port}{sub['path']}?token=s3cret",
                "",
                "",
            )
            assert got["ack_deadline_seconds"] == sub.get(
                "ack_deadline_seconds", document["defaults"]["ack_deadline_seconds"]
            )
            retry = document["defaults"]["retry"]
            assert got["retry_policy"] == (
                retry["minimum_backoff_seconds"],
                retry["maximum_backoff_seconds"],
            )
            dead = f"projects/{project_id}/topics/{name}-dead-letter"
            assert got["dead_letter_policy"] == (
                dead,
                document["defaults"]["dead_letter"]["max_delivery_attempts"],
            )
            assert got["expiration_policy"] == 0  # never expires
            # Each dead-letter topic has a subscription, so nothing is lost there.
            keep = after_first["subscriptions"][
                f"projects/{project_id}/subscriptions/{name}-dead-letter"
            ]
            assert keep["topic"] == dead
            assert keep["push_config"] == ("", "", "")


def test_a_drifted_subscription_is_put_back_and_only_it(pubsub_emulator, project_id):
    from google.cloud import pubsub_v1
    from google.protobuf import field_mask_pb2

    targets = emulator_targets("s3cret", 8080, {})
    provision(project_id, targets)
    subscriber = pubsub_v1.SubscriberClient()
    name = f"projects/{project_id}/subscriptions/notifier-task-events"
    subscriber.update_subscription(
        request={
            "subscription": {"name": name, "ack_deadline_seconds": 33},
            "update_mask": field_mask_pb2.FieldMask(paths=["ack_deadline_seconds"]),
        }
    )

    changes = provision(project_id, targets)

    assert changes == [f"update subscription {name}: ack_deadline_seconds"]
    assert listing(project_id)["subscriptions"][name]["ack_deadline_seconds"] == 60


def test_cloud_mode_sets_oidc_account_and_a_per_service_audience(
    pubsub_emulator, project_id
):
    targets = cloud_targets(project_id, None, names.APPSPOT_TEMPLATE)

    provision(project_id, targets)
    assert provision(project_id, targets) == []

    got = listing(project_id)["subscriptions"][
        f"projects/{project_id}/subscriptions/converter-conversion-requests"
    ]
    base = f"https://converter-dot-{project_id}.appspot.com"
    assert got["push_config"] == (
        f"{base}/_ah/push-handlers/conversion-requests",
        f"audiomill-push@{project_id}.iam.gserviceaccount.com",
        base,
    )


def test_dry_run_changes_nothing(pubsub_emulator, project_id):
    plan = Provisioner(project_id, dry_run=True).run(
        TOPOLOGY, emulator_targets("t", 8080, {})
    )

    assert plan.changes
    assert listing(project_id) == {"topics": [], "subscriptions": {}}


def test_a_subscription_on_the_wrong_topic_is_reported_not_replaced(
    pubsub_emulator, project_id
):
    from google.cloud import pubsub_v1

    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    other = publisher.create_topic(name=f"projects/{project_id}/topics/elsewhere")
    subscriber.create_subscription(
        name=f"projects/{project_id}/subscriptions/notifier-task-events",
        topic=other.name,
    )

    with pytest.raises(ProvisionError, match="cannot move a subscription"):
        provision(project_id, emulator_targets("t", 8080, {}))


def test_the_command_line_provisions_the_emulator(pubsub_emulator, project_id):
    command = [
        sys.executable,
        "-m",
        "deploy.provision",
        "--emulator",
        "--project",
        project_id,
        "--push-token",
        "s3cret",
    ]
    first = subprocess.run(command, capture_output=True, text=True, check=True)
    second = subprocess.run(command, capture_output=True, text=True, check=True)

    assert "changed 12, unchanged 0" in first.stderr
    assert "changed 0, unchanged 12" in second.stderr
    assert "s3cret" not in first.stderr + second.stderr
