"""The relay's durable state: published messages and one delivery per subscriber.

A message is stored with a delivery row for every subscription of its topic in
one transaction, before the publisher hears its id. A delivery is ``pending``
until its subscriber acks it (``acked``) or the attempt limit moves it to the
dead-letter topic (``dead``). Nothing in memory is needed to resume.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Engine,
    ForeignKey,
    String,
    Text,
    create_engine,
    event,
    func,
    select,
)
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    mapped_column,
    relationship,
    sessionmaker,
)

PENDING = "pending"
ACKED = "acked"
DEAD = "dead"


class Base(DeclarativeBase):
    pass


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(primary_key=True)
    topic: Mapped[str] = mapped_column(String(255), index=True)
    data: Mapped[str] = mapped_column(Text)
    attributes: Mapped[dict[str, str]] = mapped_column(JSON)
    publish_time: Mapped[str] = mapped_column(String(40))


class Delivery(Base):
    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id"), index=True)
    subscription: Mapped[str] = mapped_column(String(255), index=True)
    state: Mapped[str] = mapped_column(String(16), default=PENDING, index=True)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[float] = mapped_column(index=True)
    last_status: Mapped[str | None] = mapped_column(String(255))
    duplicate_status: Mapped[str | None] = mapped_column(String(255))
    updated_at: Mapped[float]

    message: Mapped[Message] = relationship(lazy="joined")


@dataclass(frozen=True)
class DueDelivery:
    """A delivery ready to be pushed, with what its envelope needs."""

    id: int
    subscription: str
    attempts: int
    message_id: str
    data: str
    attributes: dict[str, str]
    publish_time: str


def rfc3339(epoch: float) -> str:
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def make_engine(path: Path) -> Engine:
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        f"sqlite:///{path}", connect_args={"check_same_thread": False}
    )

    @event.listens_for(engine, "connect")
    def _pragmas(connection: Any, _record: Any) -> None:
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # FULL: a publish acknowledged to the caller survives a power cut too.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=5000")
        cursor.close()

    Base.metadata.create_all(engine)
    return engine


class RelayStore:
    """Every read and write of the relay's database. Calls are synchronous."""

    def __init__(self, engine: Engine, clock: Any = time.time) -> None:
        self._sessions: sessionmaker[Session] = sessionmaker(
            engine, expire_on_commit=False
        )
        self._clock = clock

    def publish(
        self,
        topic: str,
        messages: Iterable[tuple[str, Mapping[str, str]]],
        subscriptions: Collection[str],
    ) -> list[str]:
        now = self._clock()
        with self._sessions.begin() as session:
            rows = [
                self._add_message(session, topic, data, attributes, subscriptions, now)
                for data, attributes in messages
            ]
        return [str(row.id) for row in rows]

    def due(
        self, free_slots: Mapping[str, int], exclude: Collection[int]
    ) -> tuple[list[DueDelivery], float | None]:
        """Deliveries due now, at most ``free_slots[name]`` per subscription,
        and when the next one not yet due falls."""
        now = self._clock()
        pending = [Delivery.state == PENDING]
        if exclude:
            pending.append(Delivery.id.not_in(exclude))
        rows: list[Delivery] = []
        with self._sessions() as session:
            for name, slots in free_slots.items():
                if slots <= 0:
                    continue
                rows += session.scalars(
                    select(Delivery)
                    .where(
                        *pending,
                        Delivery.subscription == name,
                        Delivery.next_attempt_at <= now,
                    )
                    .order_by(Delivery.next_attempt_at, Delivery.id)
                    .limit(slots)
                ).all()
            later = session.scalar(
                select(func.min(Delivery.next_attempt_at)).where(
                    *pending,
                    Delivery.subscription.in_(free_slots),
                    Delivery.next_attempt_at > now,
                )
            )
            due = [
                DueDelivery(
                    id=row.id,
                    subscription=row.subscription,
                    attempts=row.attempts,
                    message_id=str(row.message_id),
                    data=row.message.data,
                    attributes=dict(row.message.attributes),
                    publish_time=row.message.publish_time,
                )
                for row in rows
            ]
        return due, later

    def ack(self, delivery_id: int, attempts: int, status: str) -> None:
        with self._sessions.begin() as session:
            row = session.get_one(Delivery, delivery_id)
            row.state, row.attempts, row.last_status = ACKED, attempts, status
            row.updated_at = self._clock()

    def record_duplicate(self, delivery_id: int, status: str) -> None:
        with self._sessions.begin() as session:
            session.get_one(Delivery, delivery_id).duplicate_status = status

    def retry(self, delivery_id: int, attempts: int, status: str, delay: float) -> None:
        with self._sessions.begin() as session:
            row = session.get_one(Delivery, delivery_id)
            row.attempts, row.last_status = attempts, status
            row.updated_at = self._clock()
            row.next_attempt_at = row.updated_at + delay

    def dead_letter(
        self,
        delivery_id: int,
        attempts: int,
        status: str,
        *,
        topic: str,
        subscription_path: str,
        project: str,
        subscriptions: Collection[str],
    ) -> str:
        """Mark a delivery dead and republish its message to ``topic``."""
        now = self._clock()
        with self._sessions.begin() as session:
            row = session.get_one(Delivery, delivery_id)
            row.state, row.attempts, row.last_status = DEAD, attempts, status
            row.updated_at = now
            attributes = {
                **row.message.attributes,
                "CloudPubSubDeadLetterSourceDeliveryCount": str(attempts),
                "CloudPubSubDeadLetterSourceSubscription": subscription_path,
                "CloudPubSubDeadLetterSourceSubscriptionProject": project,
                "CloudPubSubDeadLetterSourceTopicPublishTime": (
                    row.message.publish_time
                ),
            }
            copy = self._add_message(
                session, topic, row.message.data, attributes, subscriptions, now
            )
        return str(copy.id)

    def messages(self, topics: Collection[str]) -> list[dict[str, Any]]:
        with self._sessions() as session:
            rows = session.scalars(
                select(Message).where(Message.topic.in_(topics)).order_by(Message.id)
            ).all()
            return [
                {
                    "topic": row.topic,
                    "messageId": str(row.id),
                    "data": row.data,
                    "attributes": dict(row.attributes),
                    "publishTime": row.publish_time,
                }
                for row in rows
            ]

    def deliveries(
        self, subscription: str | None = None, state: str | None = None
    ) -> list[dict[str, Any]]:
        query = select(Delivery).order_by(Delivery.id)
        if subscription:
            query = query.where(Delivery.subscription == subscription)
        if state:
            query = query.where(Delivery.state == state)
        with self._sessions() as session:
            return [
                {
                    "id": row.id,
                    "messageId": str(row.message_id),
                    "topic": row.message.topic,
                    "subscription": row.subscription,
                    "state": row.state,
                    "attempts": row.attempts,
                    "lastStatus": row.last_status,
                    "duplicateStatus": row.duplicate_status,
                    "nextAttemptAt": rfc3339(row.next_attempt_at),
                    "attributes": dict(row.message.attributes),
                }
                for row in session.scalars(query).all()
            ]

    @staticmethod
    def _add_message(
        session: Session,
        topic: str,
        data: str,
        attributes: Mapping[str, str],
        subscriptions: Collection[str],
        now: float,
    ) -> Message:
        message = Message(
            topic=topic,
            data=data,
            attributes=dict(attributes),
            publish_time=rfc3339(now),
        )
        session.add(message)
        session.flush()
        session.add_all(
            Delivery(
                message_id=message.id,
                subscription=name,
                next_attempt_at=now,
                updated_at=now,
            )
            for name in subscriptions
        )
        return message
