"""The auth service's tables: accounts and the failed log-ins that throttle them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, String, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.shared.db import UtcDateTime


class Base(DeclarativeBase):
    pass


class User(Base):
    """An account. ``username_key`` and ``email_key`` hold the lowercased
    values so that uniqueness ignores case on every database."""

    __tablename__ = "users"
    __table_args__ = (
        UniqueConstraint("username_key", name="uq_users_username_key"),
        UniqueConstraint("email_key", name="uq_users_email_key"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(32))
    username_key: Mapped[str] = mapped_column(String(32))
    email: Mapped[str] = mapped_column(String(254))
    email_key: Mapped[str] = mapped_column(String(254))
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class LoginFailure(Base):
    """One failed log-in. ``account_key`` names the account tried: the user id
    for a known account, a digest of the lowercased name given for an unknown
    one, so that both are throttled alike."""

    __tablename__ = "login_failures"
    __table_args__ = (
        Index("ix_login_failures_account_key_failed_at", "account_key", "failed_at"),
        Index("ix_login_failures_failed_at", "failed_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_key: Mapped[str] = mapped_column(String(300))
    failed_at: Mapped[datetime] = mapped_column(UtcDateTime())
