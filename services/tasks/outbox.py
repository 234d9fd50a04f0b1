"""The transactional outbox: events are written in the transaction of the
change they announce and published after it commits, so a broker outage
delays an event but never loses it."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from services.shared import events
from services.shared.bus import BusError, Publisher
from services.tasks.models import OutboxEntry

log = logging.getLogger(__name__)

BATCH = 100
KEEP_PUBLISHED = timedelta(days=7)


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
        """Publish the given entries now if they are still pending; called
        right after the commit that wrote them. A failure leaves them for the
        next flush and is not the caller's problem: its change is committed."""
        ids = list(entry_ids)
        if not ids:
            return 0
        try:
            with self._sessions() as session:
                query = select(OutboxEntry).where(
                    OutboxEntry.id.in_(ids), OutboxEntry.published_at.is_(None)
                )
                published, _ = self._publish_locked(session, query)
                return published
        except Exception:
            log.exception("publishing outbox entries %s failed; the flush retries", ids)
            return 0

    def flush(self) -> FlushResult:
        """Publish what is pending, oldest first, in batches, until the bus
        refuses one or nothing is left; forget entries published long ago."""
        published = 0
        with self._sessions() as session:
            while True:
                query = (
                    select(OutboxEntry)
                    .where(OutboxEntry.published_at.is_(None))
                    .order_by(OutboxEntry.id)
                    .limit(BATCH)
                )
                done, refused = self._publish_locked(session, query)
                published += done
                if refused or done < BATCH:
                    break
            session.execute(
                delete(OutboxEntry).where(
                    OutboxEntry.published_at < self._clock() - KEEP_PUBLISHED
                )
            )
            session.commit()
            pending = session.scalar(
                select(func.count())
                .select_from(OutboxEntry)
                .where(OutboxEntry.published_at.is_(None))
            )
        return FlushResult(published=published, pending=pending or 0)

    def _publish_locked(self, session: Session, query) -> tuple[int, bool]:
        """Publish the entries ``query`` selects, holding their rows so that
        instances flushing at once (on PostgreSQL) do not send one twice.
        Returns how many were published and whether the bus refused one."""
        entries = session.scalars(query.with_for_update(skip_locked=True)).all()
        published = 0
        refused = False
        try:
            for entry in entries:
                data, attributes = events.encode(entry.payload)
                try:
                    message_id = self._publisher.publish(entry.topic, data, attributes)
                except BusError as error:
                    entry.attempts += 1
                    entry.last_error = str(error)[:1000]
                    log.warning(
                        "bus refused %s for %s: %s",
                        entry.event_type,
                        entry.topic,
                        error,
                        extra={"task_id": entry.task_id},
                    )
                    refused = True
                    break
                entry.published_at = self._clock()
                published += 1
                log.info(
                    "published %s to %s as %s",
                    entry.event_type,
                    entry.topic,
                    message_id,
                    extra={"task_id": entry.task_id},
                )
        finally:
            session.commit()
        return published, refused
