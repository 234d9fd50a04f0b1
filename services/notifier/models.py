"""The notifier's own tables: the log of notifications sent or being sent."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.shared.db import UtcDateTime

STATUS_CLAIMED = "claimed"
STATUS_SENT = "sent"
STATUS_REJECTED = "rejected"


class Base(DeclarativeBase):
    pass


class SentNotification(Base):
    """One row per (task, version, kind): a claim while the mail is being
    sent, then the record that it was sent or refused by the provider."""

    __tablename__ = "sent_notifications"
    __table_args__ = (
        CheckConstraint(
            f"status IN ('{STATUS_CLAIMED}', '{STATUS_SENT}', '{STATUS_REJECTED}')",
            name="ck_sent_notifications_status",
        ),
    )

    task_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    claim_token: Mapped[str] = mapped_column(String(32))
    claimed_at: Mapped[datetime] = mapped_column(UtcDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    recipient: Mapped[str] = mapped_column(String(320))
    event_id: Mapped[str] = mapped_column(String(64))
    detail: Mapped[str | None] = mapped_column(String(500))
