"""The message topology of ``pubsub.yaml``: topics and their push subscriptions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DEAD_LETTER_SUFFIX = "-dead-letter"


class TopologyError(ValueError):
    """``pubsub.yaml`` is missing, malformed or contradicts itself."""


@dataclass(frozen=True)
class Subscription:
    """One push subscription and the delivery policy Pub/Sub would apply to it."""

    name: str
    topic: str
    service: str
    path: str
    ack_deadline_seconds: float
    minimum_backoff_seconds: float
    maximum_backoff_seconds: float
    max_delivery_attempts: int | None

    @property
    def dead_letter_topic(self) -> str:
        return f"{self.name}{DEAD_LETTER_SUFFIX}"

    def backoff_seconds(self, attempts: int) -> float:
        """The wait after ``attempts`` failed deliveries: doubling, clamped."""
        delay = self.minimum_backoff_seconds * 2 ** max(attempts - 1, 0)
        return min(
            max(delay, self.minimum_backoff_seconds), self.maximum_backoff_seconds
        )


@dataclass(frozen=True)
class Topology:
    """Every topic the bus accepts, each with its subscriptions."""

    topics: Mapping[str, tuple[Subscription, ...]]

    @property
    def subscriptions(self) -> tuple[Subscription, ...]:
        return tuple(sub for subs in self.topics.values() for sub in subs)

    @property
    def dead_letter_topics(self) -> frozenset[str]:
        return frozenset(sub.dead_letter_topic for sub in self.subscriptions)

    def subscription(self, name: str) -> Subscription:
        for sub in self.subscriptions:
            if sub.name == name:
                return sub
        raise KeyError(name)

    @classmethod
    def load(cls, path: Path) -> Topology:
        try:
            document = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise TopologyError(f"cannot read {path}: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise TopologyError(f"{path} is not valid YAML: {exc}") from exc
        return cls.parse(document, source=str(path))

    @classmethod
    def parse(cls, document: Any, source: str = "pubsub.yaml") -> Topology:
        if not isinstance(document, dict) or not isinstance(
            document.get("topics"), dict
        ):
            raise TopologyError(f"{source}: expected a mapping with 'topics'")
        defaults = _mapping(document.get("defaults") or {}, f"{source}: defaults")

        topics: dict[str, tuple[Subscription, ...]] = {}
        for topic, spec in document["topics"].items():
            spec = _mapping(spec or {}, f"{source}: topic {topic}")
            subs = _mapping(
                spec.get("subscriptions") or {}, f"{source}: {topic}.subscriptions"
            )
            topics[str(topic)] = tuple(
                _subscription(str(topic), str(name), sub_spec, defaults, source)
                for name, sub_spec in subs.items()
            )

        names = [sub.name for subs in topics.values() for sub in subs]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise TopologyError(f"{source}: subscription names repeat: {duplicates}")

        # Dead-letter topics exist on Pub/Sub even when nothing subscribes to them.
        for name in names:
            topics.setdefault(f"{name}{DEAD_LETTER_SUFFIX}", ())
        return cls(topics=topics)


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TopologyError(f"{where}: expected a mapping")
    return value


def _subscription(
    topic: str, name: str, spec: Any, defaults: dict[str, Any], source: str
) -> Subscription:
    where = f"{source}: subscription {name}"
    spec = _mapping(spec or {}, where)
    for key in ("service", "path"):
        if not isinstance(spec.get(key), str) or not spec[key]:
            raise TopologyError(f"{where}: '{key}' is required")
    if not spec["path"].startswith("/"):
        raise TopologyError(f"{where}: 'path' must start with '/'")

    retry = {**(defaults.get("retry") or {}), **(spec.get("retry") or {})}
    if "dead_letter" in spec:
        dead_letter = spec["dead_letter"]
    else:
        dead_letter = defaults.get("dead_letter")
    max_attempts = None
    if dead_letter:
        max_attempts = _number(
            dead_letter.get("max_delivery_attempts", 5), where, integer=True
        )

    minimum = _number(retry.get("minimum_backoff_seconds", 10), where)
    maximum = _number(retry.get("maximum_backoff_seconds", 600), where)
    if minimum <= 0 or maximum < minimum:
        raise TopologyError(f"{where}: need 0 < minimum_backoff <= maximum_backoff")
    ack_deadline = spec.get(
        "ack_deadline_seconds", defaults.get("ack_deadline_seconds", 10)
    )
    return Subscription(
        name=name,
        topic=topic,
        service=spec["service"],
        path=spec["path"],
        ack_deadline_seconds=_number(ack_deadline, where),
        minimum_backoff_seconds=minimum,
        maximum_backoff_seconds=maximum,
        max_delivery_attempts=max_attempts,
    )


def _number(value: Any, where: str, integer: bool = False) -> Any:
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or value <= 0:
        kind = "a positive integer" if integer else "a positive number"
        raise TopologyError(f"{where}: expected {kind}, got {value!r}")
    return value
