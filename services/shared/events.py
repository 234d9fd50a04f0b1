"""Events: built, validated and decoded against ``openapi/events.yaml``.

Publishers validate what they send and consumers what they receive, so a
malformed message is caught at both ends of a topic.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from referencing import Registry, Resource

EVENTS_SPEC = Path(__file__).resolve().parents[2] / "openapi" / "events.yaml"
SCHEMA_VERSION = 1

TOPIC_OF = {
    "conversion.requested": "conversion-requests",
    "conversion.succeeded": "conversion-results",
    "conversion.failed": "conversion-results",
    "task.processed": "task-events",
    "task.failed": "task-events",
}


class InvalidEvent(Exception):
    """A message that can never be handled: bad envelope or schema."""


@dataclass(frozen=True)
class PushMessage:
    event: dict[str, Any]
    message_id: str
    attributes: dict[str, str]
    delivery_attempt: int
    subscription: str


@cache
def _validators() -> dict[str, jsonschema.protocols.Validator]:
    spec = yaml.safe_load(EVENTS_SPEC.read_text())
    registry = Registry().with_resource("urn:events", Resource.opaque(spec))
    validators = {}
    for name, message in spec["components"]["messages"].items():
        schema = {"$ref": "urn:events" + message["payload"]["$ref"]}
        validators[name] = jsonschema.Draft202012Validator(
            schema,
            registry=registry,
            format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
        )
    return validators


def validate(event: dict[str, Any]) -> None:
    type_ = event.get("type")
    validator = _validators().get(type_) if isinstance(type_, str) else None
    if validator is None:
        raise InvalidEvent(f"unknown event type {type_!r}")
    error = jsonschema.exceptions.best_match(validator.iter_errors(event))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "event"
        raise InvalidEvent(f"{event['type']}: {where}: {error.message}")


def new_event(type: str, **fields: Any) -> dict[str, Any]:
    """A complete, validated event of ``type``."""
    event = {
        "schema_version": SCHEMA_VERSION,
        "event_id": str(uuid.uuid4()),
        "occurred_at": datetime.now(UTC).isoformat(),
        "type": type,
        **fields,
    }
    validate(event)
    return event


def encode(event: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    """Message data and attributes for a validated event."""
    attributes = {
        "type": event["type"],
        "schema_version": str(event["schema_version"]),
        "task_id": str(event["task_id"]),
        "version": str(event["version"]),
    }
    return json.dumps(event, separators=(",", ":")).encode(), attributes


def decode_push(body: Any) -> PushMessage:
    """The event inside a Pub/Sub push envelope."""
    if not isinstance(body, dict) or not isinstance(body.get("message"), dict):
        raise InvalidEvent("push body has no message object")
    message = body["message"]
    try:
        data = base64.b64decode(message.get("data", ""), validate=True)
        event = json.loads(data)
    except (binascii.Error, ValueError, TypeError) as error:
        raise InvalidEvent(f"message data is not base64 JSON: {error}") from None
    if not isinstance(event, dict):
        raise InvalidEvent("message data is not a JSON object")
    validate(event)
    attempt = body.get("deliveryAttempt")
    attributes = message.get("attributes")
    return PushMessage(
        event=event,
        message_id=str(message.get("messageId") or message.get("message_id") or ""),
        attributes=dict(attributes) if isinstance(attributes, dict) else {},
        delivery_attempt=attempt if isinstance(attempt, int) else 1,
        subscription=str(body.get("subscription", "")),
    )
