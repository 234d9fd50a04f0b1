"""The account rules: who may sign up, who may log in, and when log-ins are
throttled."""

from __future__ import annotations

import hashlib
import logging
import math
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

from services.auth.errors import (
    AccountsUnavailable,
    AccountTaken,
    InvalidCredentials,
    InvalidLogin,
    InvalidSignup,
    TooManyAttempts,
)
from services.auth.models import LoginFailure, User
from services.auth.passwords import Passwords

log = logging.getLogger(__name__)

USERNAME_PATTERN = re.compile(r"[A-Za-z0-9_.-]{3,32}")
EMAIL_PATTERN = re.compile(r"[^@\s]+@[^@\s.]+(\.[^@\s.]+)+")
EMAIL_MAX_LENGTH = 254
PASSWORD_MIN_LENGTH = 8

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class ThrottlePolicy:
    """At most ``max_failures`` failed log-ins per account within
    ``window_seconds``; past that the account is refused until the oldest
    failure in the window has aged out of it."""

    max_failures: int = 5
    window_seconds: int = 900


@dataclass(frozen=True)
class SignupForm:
    """A sign-up that has passed every rule, with its names normalised."""

    username: str
    email: str
    password: str


def _text(value: object) -> str:
    return value.strip() if isinstance(value, str) else ""


def check_signup(fields: dict[str, object]) -> SignupForm:
    """Apply the sign-up rules to the submitted fields; raise InvalidSignup
    naming every rule broken."""
    problems: list[str] = []

    username = _text(fields.get("username"))
    legacy = _text(fields.get("user"))
    if username and legacy and username != legacy:
        problems.append("send the username once, as `username` or as `user`")
    username = username or legacy
    if not username:
        problems.append("`username` is required")
    elif not USERNAME_PATTERN.fullmatch(username):
        problems.append(
            "`username` must be 3 to 32 letters, digits, dots, dashes or underscores"
        )

    email = _text(fields.get("email"))
    if not email:
        problems.append("`email` is required")
    elif len(email) > EMAIL_MAX_LENGTH or not EMAIL_PATTERN.fullmatch(email):
        problems.append(
            "`email` must be an address like name@example.com "
            f"of at most {EMAIL_MAX_LENGTH} characters"
        )

    password1 = fields.get("password1")
    password2 = fields.get("password2")
    password1 = password1 if isinstance(password1, str) else ""
    password2 = password2 if isinstance(password2, str) else ""
    if len(password1) < PASSWORD_MIN_LENGTH:
        problems.append(
            f"the password must be at least {PASSWORD_MIN_LENGTH} characters long"
        )
    if password1 != password2:
        problems.append("`password1` and `password2` differ; type the same password")

    if problems:
        raise InvalidSignup("Fix the sign-up: " + "; ".join(problems) + ".")
    return SignupForm(username=username, email=email, password=password1)


def login_identifier(fields: dict[str, object]) -> str:
    """The account a log-in names: its username, or else its email."""
    identifier = _text(fields.get("username")) or _text(fields.get("email"))
    if not identifier:
        raise InvalidLogin("Send `username` or `email` with the `password`.")
    return identifier


def _unknown_key(name: str) -> str:
    """The throttle key of a name with no account: a digest, so that what
    people type (a password in the wrong field, now and then) is not kept."""
    return "name:" + hashlib.sha256(name.encode()).hexdigest()


@contextmanager
def _database() -> Iterator[None]:
    """Turn a database that does not answer, or a pool with no connection
    free, into AccountsUnavailable; the driver's message, which names hosts,
    stays in the log."""
    try:
        yield
    except (OperationalError, PoolTimeout) as error:
        log.error("the auth database does not answer: %s", error)
        raise AccountsUnavailable() from error


class Accounts:
    """Sign-up and log-in against the auth database."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        passwords: Passwords,
        throttle: ThrottlePolicy | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self._sessions = sessions
        self._passwords = passwords
        self._throttle = throttle or ThrottlePolicy()
        self._clock = clock

    def signup(self, form: SignupForm) -> User:
        """Create the account, or raise AccountTaken naming what is taken."""
        user = User(
            username=form.username,
            username_key=form.username.lower(),
            email=form.email,
            email_key=form.email.lower(),
            password_hash=self._passwords.hash(form.password),
            created_at=self._clock(),
        )
        with _database(), self._sessions() as session:
            taken = self._taken(session, user)
            if taken:
                raise AccountTaken(taken)
            session.add(user)
            try:
                session.commit()
            except IntegrityError:
                # Another sign-up for the same name committed in between.
                session.rollback()
                raise AccountTaken(
                    self._taken(session, user)
                    or "That username or email is already taken; choose another."
                ) from None
        log.info("signed up user %s", user.id)
        return user

    @staticmethod
    def _taken(session: Session, user: User) -> str | None:
        existing = session.scalars(
            select(User).where(
                (User.username_key == user.username_key)
                | (User.email_key == user.email_key)
            )
        ).all()
        if any(other.username_key == user.username_key for other in existing):
            return f"The username {user.username!r} is taken; choose another."
        if existing:
            return (
                "An account with this email exists; log in, or sign up with "
                "another email."
            )
        return None

    def login(self, identifier: str, password: str) -> User:
        """The account named by ``identifier`` (a username, or an email when
        it holds an ``@``) if ``password`` is its password.

        Raises InvalidCredentials for an unknown account and a wrong password
        alike, and TooManyAttempts once the account has used up its failures
        in the throttle window.

        The attempt waits for a hashing turn before it opens its transaction,
        so a connection and the account's row lock are held only while a hash
        actually runs; the row lock makes concurrent attempts on one account
        take turns, so a burst cannot slip past the failure count."""
        name = identifier.strip().lower()
        column = User.email_key if "@" in name else User.username_key
        window = timedelta(seconds=self._throttle.window_seconds)
        refusal: InvalidCredentials | TooManyAttempts | None = None

        with (
            self._passwords.turn(),
            _database(),
            self._sessions() as session,
            session.begin(),
        ):
            now = self._clock()
            user = session.scalars(
                select(User).where(column == name).with_for_update()
            ).first()
            account_key = f"user:{user.id}" if user else _unknown_key(name)
            failures = self._recent_failures(session, account_key, now - window)

            if len(failures) >= self._throttle.max_failures:
                oldest = failures[len(failures) - self._throttle.max_failures]
                wait = (oldest + window - now).total_seconds()
                refusal = TooManyAttempts(retry_after=max(1, math.ceil(wait)))
            elif user is None:
                self._passwords.verify_dummy(password)
                refusal = InvalidCredentials()
            elif not self._passwords.verify(user.password_hash, password):
                refusal = InvalidCredentials()
            else:
                session.execute(
                    delete(LoginFailure).where(LoginFailure.account_key == account_key)
                )
                if self._passwords.needs_rehash(user.password_hash):
                    user.password_hash = self._passwords.hash(password)

            if isinstance(refusal, InvalidCredentials):
                session.add(LoginFailure(account_key=account_key, failed_at=now))

        if isinstance(refusal, InvalidCredentials):
            # Housekeeping only: the answer stays 401, and the next failure
            # deletes what this one could not.
            with suppress(AccountsUnavailable):
                self._forget_failures_before(now - window)
        if refusal is not None:
            log.info(
                "log-in refused (%s) for %s",
                type(refusal).__name__,
                f"user {user.id}" if user else "an unknown account",
            )
            raise refusal
        return user

    @staticmethod
    def _recent_failures(
        session: Session, account_key: str, since: datetime
    ) -> list[datetime]:
        """The failure times inside the window, oldest first; older ones go.
        The delete also takes SQLite's write lock before the count, which is
        how attempts take turns there."""
        session.execute(
            delete(LoginFailure).where(
                LoginFailure.account_key == account_key,
                LoginFailure.failed_at <= since,
            )
        )
        return list(
            session.scalars(
                select(LoginFailure.failed_at)
                .where(
                    LoginFailure.account_key == account_key,
                    LoginFailure.failed_at > since,
                )
                .order_by(LoginFailure.failed_at)
            )
        )

    def _forget_failures_before(self, since: datetime) -> None:
        """Delete the failures that have left the window, of every account:
        names tried once and never again would otherwise stay for good. Its
        own short transaction, skipping rows an attempt holds (they go with
        that attempt), so it never waits on a hash nor deadlocks with one."""
        expired = (
            select(LoginFailure.id)
            .where(LoginFailure.failed_at <= since)
            .with_for_update(skip_locked=True)
        )
        with _database(), self._sessions.begin() as session:
            session.execute(delete(LoginFailure).where(LoginFailure.id.in_(expired)))

    def get(self, user_id: int) -> User | None:
        with _database(), self._sessions() as session:
            return session.get(User, user_id)
