"""Password hashing with argon2id."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError


@dataclass(frozen=True)
class HashCost:
    """argon2id cost parameters; the defaults are argon2-cffi's (RFC 9106's
    low-memory profile: 3 passes over 64 MiB with 4 lanes)."""

    time_cost: int = 3
    memory_cost_kib: int = 65536
    parallelism: int = 4


class Passwords:
    """Hashes and verifies passwords. A check for an account that does not
    exist runs against a dummy hash of the same cost, so it takes as long as
    a wrong password and the answer time does not tell the two apart.

    At most ``concurrency`` hashes run at once: each holds its memory cost,
    and a burst of log-ins must not exhaust a small instance."""

    def __init__(self, cost: HashCost | None = None, concurrency: int = 2) -> None:
        cost = cost or HashCost()
        self._slots = threading.BoundedSemaphore(concurrency)
        self._holder = threading.local()
        self._hasher = PasswordHasher(
            time_cost=cost.time_cost,
            memory_cost=cost.memory_cost_kib,
            parallelism=cost.parallelism,
            type=Type.ID,
        )
        self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(16))

    @contextmanager
    def turn(self) -> Iterator[None]:
        """Hold one of the hashing slots; hashes inside it take no other."""
        if getattr(self._holder, "active", False):
            yield
            return
        with self._slots:
            self._holder.active = True
            try:
                yield
            finally:
                self._holder.active = False

    def hash(self, password: str) -> str:
        with self.turn():
            return self._hasher.hash(password)

    def verify(self, password_hash: str, password: str) -> bool:
        try:
            with self.turn():
                return self._hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    def verify_dummy(self, password: str) -> bool:
        """Spend the time of one verification; always False."""
        self.verify(self._dummy_hash, password)
        return False

    def needs_rehash(self, password_hash: str) -> bool:
        return self._hasher.check_needs_rehash(password_hash)
