import base64
import json

import pytest
import yaml

from services.shared import formats
from services.shared.events import (
    EVENTS_SPEC,
    TOPIC_OF,
    InvalidEvent,
    decode_push,
    encode,
    new_event,
)

OWNER = {"id": "7", "username": "ada", "email": "ada@example.com"}


def envelope(data: bytes, **extra):
    return {
        "message": {
            "data": base64.b64encode(data).decode(),
            "messageId": "m-1",
            "attributes": {"type": "x"},
        },
        "subscription": "projects/local/subscriptions/s",
        **extra,
    }


def requested(**overrides):
    fields = {
        "task_id": 1,
        "version": 1,
        "source_key": "tasks/1/original.mp3",
        "source_format": "mp3",
        "target_format": "ogg",
        "filename": "song.mp3",
    }
    return new_event("conversion.requested", **{**fields, **overrides})


def test_round_trip_through_a_push_envelope():
    event = requested()
    data, attributes = encode(event)

    message = decode_push(envelope(data, deliveryAttempt=3))

    assert message.event == event
    assert message.delivery_attempt == 3
    assert message.message_id == "m-1"
    assert attributes == {
        "type": "conversion.requested",
        "schema_version": "1",
        "task_id": "1",
        "version": "1",
    }


def test_every_event_type_has_a_topic_and_validates():
    events = [
        requested(),
        new_event(
            "conversion.succeeded",
            task_id=1,
            version=2,
            output_key="tasks/1/v2/converted.ogg",
            size_bytes=10,
            duration_seconds=1.5,
        ),
        new_event(
            "conversion.failed", task_id=1, version=2, code="corrupt_input", message="m"
        ),
        new_event(
            "task.processed",
            task_id=1,
            version=2,
            owner=OWNER,
            filename="a.mp3",
            original_format="mp3",
            new_format="ogg",
            size_bytes=10,
            duration_seconds=1.5,
            download_path="/api/tasks/1/converted",
        ),
        new_event(
            "task.failed",
            task_id=1,
            version=2,
            owner=OWNER,
            filename="a.mp3",
            original_format="mp3",
            new_format="ogg",
            error={"code": "timeout", "message": "took too long"},
        ),
    ]
    assert {e["type"] for e in events} == set(TOPIC_OF)


@pytest.mark.parametrize(
    "overrides",
    [
        {"task_id": 0},
        {"version": "1"},
        {"target_format": "exe"},
        {"source_key": "../../etc/passwd"},
        {"source_key": "tasks//original.mp3"},
        {"source_key": "tasks/1/"},
        {"filename": ""},
    ],
)
def test_schema_violations_are_refused_when_built(overrides):
    with pytest.raises(InvalidEvent):
        requested(**overrides)


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        {"message": "x"},
        envelope(b"not json"),
        {"message": {"data": "!!!"}},
        envelope(b"[1, 2]"),
        envelope(json.dumps({"type": "conversion.requested"}).encode()),
        envelope(json.dumps({"type": "no.such.event"}).encode()),
        envelope(json.dumps({"type": ["conversion.requested"]}).encode()),
        envelope(json.dumps({"type": {"a": 1}}).encode()),
    ],
)
def test_malformed_pushes_are_invalid(body):
    with pytest.raises(InvalidEvent):
        decode_push(body)


def test_attributes_that_are_not_an_object_are_ignored():
    body = envelope(json.dumps(requested()).encode())
    body["message"]["attributes"] = [1, 2, 3]

    assert decode_push(body).attributes == {}


def test_the_schemas_formats_are_the_catalogs():
    spec = yaml.safe_load(EVENTS_SPEC.read_text())
    enum = spec["components"]["schemas"]["Format"]["enum"]

    assert tuple(enum) == formats.names()
