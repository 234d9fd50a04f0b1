"""The transactional outbox: events are written in the transaction of the
change they announce and published after it commits, so a broker outage
delays an event but never loses it.

Each entry is claimed with a conditional update before it is sent, so the
request that wrote it, the periodic flush and other instances do not send
one entry twice at once, on SQLite as on PostgreSQL. Delivery stays at least
once (a crash between publishing and marking sends it again later), which
every consumer handles.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from services.shared import events
from services.shared.bus import BusError, Publisher
from services.tasks.models import OutboxEntry

log = logging.getLogger(__name__)

BATCH = 100
KEEP_PUBLISHED = timedelta(days=7)
# How long a claim on an entry lasts; an instance that dies while publishing
# leaves the entry to others once it runs out.
LEASE = timedelta(seconds=60)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class FlushResult:
    published: int
    pending: int


class Outbox:
    def __init__(
        self,
        session_factory: sessionmaker[Session],
        publisher: Publisher,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._sessions = session_factory
        self._publisher = publisher
        self._clock = clock

    def add(self, session: Session, event: dict[str, Any]) -> OutboxEntry:
        """Queue ``event`` in ``session``'s transaction."""
        entry = OutboxEntry(
            topic=events.TOPIC_OF[event["type"]],
            event_type=event["type"],
            task_id=event["task_id"],
            payload=event,
            created_at=self._clock(),
            attempts=0,
        )
        session.add(entry)
        return entry

    def publish(self, entry_ids: Iterable[int]) -> int:
        """Publish the given entries now, if no one else has; called right
        after the commit that wrote them. A failure leaves them for the next
        flush and is not the caller's problem: its change is committed."""
        published = 0
        try:
            for entry_id in entry_ids:
                outcome = self._publish_one(entry_id)
                if outcome is False:
                    break
                published += bool(outcome)
        except Exception:
            log.exception("publishing outbox entries failed; the flush retries")
        return published

    def flush(self) -> FlushResult:
        """Publish what is pending, oldest first, until nothing is left; a
        topic the bus refuses is left alone for the rest of the flush, so
        that one topic's fault holds back no other's. Forget entries
        published long ago."""
        published = 0
        refused: set[str] = set()
        while True:
            due = self._due(BATCH, refused)
            for entry_id, topic in due:
                if topic in refused:
                    continue
                outcome = self._publish_one(entry_id)
                if outcome is False:
                    refused.add(topic)
                published += bool(outcome)
            if len(due) < BATCH:
                break
        with self._sessions() as session, session.begin():
            session.execute(
                delete(OutboxEntry).where(
                    OutboxEntry.published_at < self._clock() - KEEP_PUBLISHED
                )
            )
            pending = session.scalar(
                select(func.count())
                .select_from(OutboxEntry)
                .where(OutboxEntry.published_at.is_(None))
            )
        return FlushResult(published=published, pending=pending or 0)

    def _due(self, limit: int, skipped: set[str]) -> list[tuple[int, str]]:
        with self._sessions() as session:
            query = (
                select(OutboxEntry.id, OutboxEntry.topic)
                .where(self._claimable(self._clock()))
                .where(OutboxEntry.topic.not_in(skipped))
                .order_by(OutboxEntry.id)
                .limit(limit)
            )
            return [(entry_id, topic) for entry_id, topic in session.execute(query)]

    @staticmethod
    def _claimable(now: datetime):
        return and_(
            OutboxEntry.published_at.is_(None),
            or_(OutboxEntry.claimed_until.is_(None), OutboxEntry.claimed_until < now),
        )

    def _publish_one(self, entry_id: int) -> bool | None:
        """Claim, publish and mark one entry: True once published, False if
        the bus refused it, None if it is not ours to send (published, or
        claimed by another instance or thread within its lease)."""
        now = self._clock()
        with self._sessions() as session, session.begin():
            claimed = session.execute(
                update(OutboxEntry)
                .where(OutboxEntry.id == entry_id, self._claimable(now))
                .values(claimed_until=now + LEASE)
            ).rowcount
            if not claimed:
                return None
            entry = session.get_one(OutboxEntry, entry_id)
            topic, event_type, task_id = entry.topic, entry.event_type, entry.task_id
            data, attributes = events.encode(entry.payload)

        try:
            message_id = self._publisher.publish(topic, data, attributes)
        except BusError as error:
            log.warning(
                "bus refused %s for %s: %s",
                event_type,
                topic,
                error,
                extra={"task_id": task_id},
            )
            self._mark(
                entry_id,
                attempts=OutboxEntry.attempts + 1,
                last_error=str(error)[:1000],
                claimed_until=None,
            )
            return False

        self._mark(entry_id, published_at=self._clock())
        log.info(
            "published %s to %s as %s",
            event_type,
            topic,
            message_id,
            extra={"task_id": task_id},
        )
        return True

    def _mark(self, entry_id: int, **values: Any) -> None:
        with self._sessions() as session, session.begin():
            session.execute(
                update(OutboxEntry).where(OutboxEntry.id == entry_id).values(**values)
            )
