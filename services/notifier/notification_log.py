"""The log of sent notifications, in the notifier's database.

A delivery first inserts a claim row under the unique (task_id, version,
kind) key; only the delivery whose insert went in sends the mail. Success
sets ``sent_at``, a refusal by the provider records it, and a fault worth
retrying deletes the claim so the redelivered event can try again.

A claim older than the claim timeout is taken over: the delivery that held it
died before it could finish. Note: if that delivery died, or lost its
database, after the provider accepted the mail but before ``sent_at`` was
written, the mail goes out a second time; no provider offers a send-once
call to close that gap.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

from services.notifier.domain import (
    Claim,
    ClaimState,
    DatabaseUnavailable,
    NotificationKey,
)
from services.notifier.models import (
    STATUS_CLAIMED,
    STATUS_REJECTED,
    STATUS_SENT,
    SentNotification,
)

log = logging.getLogger(__name__)

_INSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


def utcnow() -> datetime:
    return datetime.now(UTC)


@contextlib.contextmanager
def database_faults() -> Iterator[None]:
    """Turn "the database does not answer" into DatabaseUnavailable, whose
    message says nothing of hosts or credentials; the log keeps the cause."""
    try:
        yield
    except PoolTimeout as error:
        log.error("no database connection free in time: %s", error)
        raise DatabaseUnavailable("the notification log is busy") from error
    except (OperationalError, InterfaceError) as error:
        # A missing table (migrations not run) is an OperationalError too.
        log.error("the notifier database is unavailable: %s", error.orig)
        raise DatabaseUnavailable("the notification log is unavailable") from error


class SqlNotificationLog:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        claim_timeout: timedelta,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._sessions = sessions
        self._claim_timeout = claim_timeout
        self._clock = clock

    def claim(
        self, key: NotificationKey, recipient: str, event_id: str
    ) -> tuple[ClaimState, Claim | None]:
        token = secrets.token_hex(16)
        now = self._clock()
        with database_faults(), self._sessions.begin() as session:
            insert = _INSERTS[session.get_bind().dialect.name]
            inserted = session.execute(
                insert(SentNotification)
                .values(
                    task_id=key.task_id,
                    version=key.version,
                    kind=key.kind,
                    status=STATUS_CLAIMED,
                    claim_token=token,
                    claimed_at=now,
                    recipient=recipient,
                    event_id=event_id,
                )
                .on_conflict_do_nothing()
            )
            if inserted.rowcount == 1:
                return ClaimState.CLAIMED, Claim(key, token)

            row = session.get(SentNotification, (key.task_id, key.version, key.kind))
            if row is None:
                # Released between our insert and our read: let the next try win.
                return ClaimState.BUSY, None
            if row.status != STATUS_CLAIMED:
                return ClaimState.DONE, None
            if row.claimed_at > now - self._claim_timeout:
                return ClaimState.BUSY, None

            taken = session.execute(
                update(SentNotification)
                .where(*_is_held(key, row.claim_token))
                .values(claim_token=token, claimed_at=now, event_id=event_id)
                .execution_options(synchronize_session=False)
            )
            if taken.rowcount == 1:
                return ClaimState.CLAIMED, Claim(key, token)
            return ClaimState.BUSY, None

    def mark_sent(self, claim: Claim) -> None:
        self._finish(claim, status=STATUS_SENT, sent_at=self._clock())

    def mark_rejected(self, claim: Claim, reason: str) -> None:
        self._finish(claim, status=STATUS_REJECTED, detail=reason[:500])

    def release(self, claim: Claim) -> None:
        with database_faults(), self._sessions.begin() as session:
            session.execute(
                delete(SentNotification)
                .where(*_is_held(claim.key, claim.token))
                .execution_options(synchronize_session=False)
            )

    def check(self) -> None:
        """Raise DatabaseUnavailable unless the database answers and holds
        the notifier's table (its migrations have run)."""
        with database_faults(), self._sessions() as session:
            session.execute(select(SentNotification.task_id).limit(1))

    def status_of(self, key: NotificationKey) -> str | None:
        """The recorded status of ``key``, or None when nothing is recorded."""
        with database_faults(), self._sessions() as session:
            return session.scalar(
                select(SentNotification.status).where(
                    SentNotification.task_id == key.task_id,
                    SentNotification.version == key.version,
                    SentNotification.kind == key.kind,
                )
            )

    def _finish(self, claim: Claim, **values: object) -> None:
        with database_faults(), self._sessions.begin() as session:
            result = session.execute(
                update(SentNotification)
                .where(*_is_held(claim.key, claim.token))
                .values(**values)
                .execution_options(synchronize_session=False)
            )
        if result.rowcount != 1:
            log.warning(
                "the claim on %s was taken over before it was recorded as %s",
                claim.key.reference,
                values["status"],
                extra={"task_id": claim.key.task_id},
            )


def _is_held(key: NotificationKey, token: str) -> tuple:
    return (
        SentNotification.task_id == key.task_id,
        SentNotification.version == key.version,
        SentNotification.kind == key.kind,
        SentNotification.status == STATUS_CLAIMED,
        SentNotification.claim_token == token,
    )
