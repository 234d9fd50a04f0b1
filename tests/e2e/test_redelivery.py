"""Every message delivered twice: the end state and the mail are as if once.

Two ways to deliver twice: a stack of its own with
``RELAY_DUPLICATE_DELIVERY=1``, where the relay pushes each message again,
same id, right after its first ack; and, on any bus, publishing every message
of a finished task again, as a publisher retrying after a lost answer would.
"""

from __future__ import annotations

import os
import time

import httpx
import pytest

from tests.e2e.bus import Published, PubSubTap, RelayTap, Tap
from tests.e2e.client import User, eventually
from tests.e2e.conftest import outbox_of, require
from tests.e2e.test_pipeline import PIPELINE

ACKS = {"102", "200", "201", "202", "204"}
PUBLISHED_TOPICS = ("conversion-requests", "conversion-results", "task-events")
SUBSCRIPTIONS = {
    "converter-conversion-requests",
    "tasks-conversion-results",
    "notifier-task-events",
}


@pytest.fixture(scope="module")
def twice(stack_factory):
    # Same-id redelivery is the relay's to make: this stack runs on the relay
    # whatever bus the session uses; its storage and databases stay as set.
    stack = stack_factory("twice", {"RELAY_DUPLICATE_DELIVERY": "1", "BUS_URL": None})
    require(stack, *PIPELINE)
    return stack


@pytest.fixture
def twice_user(twice):
    signed_up = User.sign_up(twice.base_url)
    yield signed_up
    signed_up.http.close()


def _deliveries_of(stack, task_id: int) -> list[dict]:
    answer = httpx.get(f"{stack.relay_url}/v1/deliveries")
    return [
        d
        for d in answer.json()["deliveries"]
        if d["attributes"].get("task_id") == str(task_id)
    ]


def _settled(stack, task_id: int) -> list[dict]:
    """The task's deliveries once all of them, duplicates too, are answered."""
    deadline = time.monotonic() + 30
    while True:
        rows = _deliveries_of(stack, task_id)
        done = {d["subscription"] for d in rows if d["duplicateStatus"]}
        if done >= SUBSCRIPTIONS and all(
            d["state"] != "pending" and d["duplicateStatus"] for d in rows
        ):
            return rows
        if time.monotonic() > deadline:
            raise AssertionError(f"deliveries did not settle: {rows}")
        time.sleep(0.1)


@pytest.mark.parametrize(
    ("content", "expected"),
    [("wav", "processed"), ("corrupt", "failed")],
)
def test_duplicate_pushes_change_nothing_and_send_no_second_mail(
    twice, twice_user, sources, tmp_path, content, expected
):
    if content == "corrupt":
        upload = tmp_path / "broken.flac"
        upload.write_bytes(b"fLaC" + os.urandom(16 * 1024))
    else:
        upload = sources.wav
    task = twice_user.create(upload, "ogg")

    done = twice_user.wait_until_final(task["id"])
    rows = _settled(twice, task["id"])
    after = twice_user.task(task["id"])

    assert done["status"] == expected
    assert after == done
    assert {d["subscription"] for d in rows} == SUBSCRIPTIONS
    assert all(d["duplicateStatus"] in ACKS for d in rows), rows
    assert len(outbox_of(twice).wait_for(twice_user.email, 1, settle=1.0)) == 1


@pytest.fixture
def tap(stack, monkeypatch) -> Tap:
    require(stack, *PIPELINE)
    bus = stack.environ.get("BUS_URL", "")
    if stack.relay_url:
        found: Tap = RelayTap(stack.relay_url)
    elif bus.startswith("pubsub://"):
        if stack.environ.get("PUBSUB_EMULATOR_HOST"):
            monkeypatch.setenv(
                "PUBSUB_EMULATOR_HOST", stack.environ["PUBSUB_EMULATOR_HOST"]
            )
        found = PubSubTap(bus.removeprefix("pubsub://"))
    else:
        pytest.skip(f"no way to read the bus: BUS_URL is {bus}")
    yield found
    found.close()


def _upload_for(content: str, sources, tmp_path):
    if content == "wav":
        return sources.wav
    upload = tmp_path / "broken.flac"
    upload.write_bytes(b"fLaC" + os.urandom(16 * 1024))
    return upload


@pytest.mark.parametrize(
    ("content", "expected"),
    [("wav", "processed"), ("corrupt", "failed")],
)
def test_every_message_published_again_changes_nothing(
    stack, tap, user, outbox, sources, tmp_path, content, expected
):
    task = user.create(_upload_for(content, sources, tmp_path), "ogg")
    done = user.wait_until_final(task["id"])
    assert done["status"] == expected
    outbox.wait_for(user.email, 1, settle=0)

    def whole_flow() -> list[Published] | None:
        found = tap.published(task["id"])
        return found if {m.topic for m in found} >= set(PUBLISHED_TOPICS) else None

    messages = eventually(whole_flow, 15, "the task's three messages")
    tap.wait_delivered(task["id"])
    for message in messages:
        tap.publish(message)
    eventually(
        lambda: len(tap.published(task["id"])) >= 2 * len(messages),
        15,
        "the copies to be published",
    )
    tap.wait_delivered(task["id"])

    assert user.task(task["id"]) == done
    assert len(outbox.wait_for(user.email, 1, settle=0.5)) == 1
