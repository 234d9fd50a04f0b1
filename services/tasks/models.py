"""The tasks service's tables: tasks, the outbox of events to publish and the
uploads being stored."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Float,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.shared.db import UtcDateTime

STATUSES = ("uploaded", "processed", "failed")


class Base(DeclarativeBase):
    pass


class Task(Base):
    """One upload and the conversion asked of it.

    The owner's name and email are copied from the access token at creation,
    so that the events announcing the outcome can reach the owner without a
    call to auth. The upload lives under ``storage_prefix``, the converter's
    outputs under ``tasks/<id>/``; ``output_key`` is the converted file of
    the current ``version`` once it is processed.
    """

    __tablename__ = "tasks"
    # Ids are never reused (SQLite reuses the largest rowid without
    # AUTOINCREMENT), so a late result for a deleted task cannot land on a
    # new task that took its id.
    __table_args__ = (
        Index("ix_tasks_owner_id_id", "owner_id", "id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner_id: Mapped[str] = mapped_column(String(64))
    owner_username: Mapped[str] = mapped_column(String(200))
    owner_email: Mapped[str] = mapped_column(String(400))
    filename: Mapped[str] = mapped_column(String(255))
    original_format: Mapped[str] = mapped_column(String(16))
    new_format: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    version: Mapped[int] = mapped_column(Integer)
    storage_prefix: Mapped[str] = mapped_column(String(200))
    source_key: Mapped[str] = mapped_column(String(1024))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    output_key: Mapped[str | None] = mapped_column(String(1024))
    converted_size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    duration_seconds: Mapped[float | None] = mapped_column(Float)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    processed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class OutboxEntry(Base):
    """An event written in the same transaction as the change it announces,
    published after commit; ``published_at`` stays null until the bus has
    accepted it, and ``claimed_until`` marks an entry someone is sending."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_published_at_id", "published_at", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    topic: Mapped[str] = mapped_column(String(100))
    event_type: Mapped[str] = mapped_column(String(100))
    task_id: Mapped[int] = mapped_column(Integer)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    claimed_until: Mapped[datetime | None] = mapped_column(UtcDateTime())
    published_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class PendingUpload(Base):
    """An upload being stored: written before its file, removed in the
    transaction that records its task. One left behind marks the files of a
    request that died in between, which the sweep removes."""

    __tablename__ = "pending_uploads"

    prefix: Mapped[str] = mapped_column(String(200), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
