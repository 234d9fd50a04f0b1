"""Telling an owner how their conversion went, once per task version.

The rules live here; the outside systems (the mail provider, the log of sent
notifications, the clock) are the small interfaces below, wired in by the app
factory.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger(__name__)


class NotifierError(Exception):
    """Base of every error the notifier raises on purpose."""


class MailDeferred(NotifierError):
    """The provider could not take the mail now (rate limit, its own fault,
    unreachable): worth delivering the event again later."""


class MailRejected(NotifierError):
    """The provider refused the mail for good: sending it again cannot help."""


class NotificationInProgress(NotifierError):
    """Another delivery of the same event holds the claim and is sending."""


class DatabaseUnavailable(NotifierError):
    """The notifier's database does not answer: worth delivering again."""


class Undeliverable(NotifierError):
    """The event names no address a mail could go to."""


KIND_OF_EVENT = {"task.processed": "processed", "task.failed": "failed"}


@dataclass(frozen=True)
class NotificationKey:
    """What makes a notification unique: one per task version and kind."""

    task_id: int
    version: int
    kind: str

    @property
    def reference(self) -> str:
        return f"task-{self.task_id}-v{self.version}-{self.kind}"


@dataclass(frozen=True)
class OutgoingMail:
    """A rendered mail, independent of the provider that sends it."""

    key: NotificationKey
    sender: str
    recipient: str
    subject: str
    text: str
    html: str
    headers: dict[str, str] = field(default_factory=dict)


class Mailer(Protocol):
    def send(self, mail: OutgoingMail) -> None:
        """Hand the mail to the provider; raise MailDeferred or MailRejected."""


class Composer(Protocol):
    def compose(self, key: NotificationKey, event: dict[str, Any]) -> OutgoingMail:
        """Render the mail for an event; raise Undeliverable without an address."""


@dataclass(frozen=True)
class Claim:
    """The right to send one notification, held by one delivery."""

    key: NotificationKey
    token: str


class ClaimState(enum.Enum):
    CLAIMED = "claimed"
    DONE = "done"
    BUSY = "busy"


class NotificationLog(Protocol):
    def claim(
        self, key: NotificationKey, recipient: str, event_id: str
    ) -> tuple[ClaimState, Claim | None]:
        """Take the right to send ``key``, or say who already has it."""

    def mark_sent(self, claim: Claim) -> None: ...

    def mark_rejected(self, claim: Claim, reason: str) -> None: ...

    def release(self, claim: Claim) -> None: ...


class Outcome(enum.Enum):
    SENT = "sent"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"
    UNDELIVERABLE = "undeliverable"
    IGNORED = "ignored"


class Notifier:
    """Sends the mail for a task event unless it was sent (or refused) before."""

    def __init__(
        self, notifications: NotificationLog, mailer: Mailer, composer: Composer
    ) -> None:
        self._notifications = notifications
        self._mailer = mailer
        self._composer = composer

    def notify(self, event: dict[str, Any]) -> Outcome:
        kind = KIND_OF_EVENT.get(event["type"])
        if kind is None:
            return Outcome.IGNORED
        key = NotificationKey(event["task_id"], event["version"], kind)
        extra = {"task_id": key.task_id}

        # Render before claiming, so a mail that cannot be built holds no claim.
        try:
            mail = self._composer.compose(key, event)
        except Undeliverable as error:
            log.warning("not sending %s: %s", key.reference, error, extra=extra)
            return Outcome.UNDELIVERABLE

        state, claim = self._notifications.claim(key, mail.recipient, event["event_id"])
        if state is ClaimState.DONE:
            log.info("%s was already handled", key.reference, extra=extra)
            return Outcome.DUPLICATE
        if state is ClaimState.BUSY or claim is None:
            raise NotificationInProgress(f"{key.reference} is being sent")

        try:
            self._mailer.send(mail)
        except MailRejected as error:
            self._notifications.mark_rejected(claim, str(error))
            log.warning("provider refused %s: %s", key.reference, error, extra=extra)
            return Outcome.REJECTED
        except MailDeferred as error:
            self._notifications.release(claim)
            log.warning("could not send %s: %s", key.reference, error, extra=extra)
            # The provider's own words stay in the log, not in the answer.
            raise MailDeferred("the mail provider did not take the mail") from error
        except BaseException:
            self._notifications.release(claim)
            raise

        self._notifications.mark_sent(claim)
        log.info("sent %s to the owner", key.reference, extra=extra)
        return Outcome.SENT
