"""A user of the public API through the gateway, and the stack's mail outbox."""

from __future__ import annotations

import email
import email.policy
import re
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypeVar

import httpx

T = TypeVar("T")
PASSWORD = "correct horse battery staple"
FINAL = frozenset({"processed", "failed"})


def eventually(
    probe: Callable[[], T | None], timeout: float, what: str, interval: float = 0.05
) -> T:
    """The first truthy answer of ``probe``, polled until ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        answer = probe()
        if answer:
            return answer
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        time.sleep(interval)


@dataclass
class User:
    """A signed-up, logged-in user with their own HTTP client."""

    username: str
    email: str
    http: httpx.Client

    @classmethod
    def sign_up(cls, base_url: str) -> User:
        name = f"e2e_{uuid.uuid4().hex[:12]}"
        address = f"{name}@example.test"
        http = httpx.Client(base_url=base_url, timeout=60, follow_redirects=True)
        created = http.post(
            "/api/auth/signup",
            json={
                "username": name,
                "email": address,
                "password1": PASSWORD,
                "password2": PASSWORD,
            },
        )
        assert created.status_code == 201, created.text
        logged_in = http.post(
            "/api/auth/login", json={"username": name, "password": PASSWORD}
        )
        assert logged_in.status_code == 200, logged_in.text
        http.headers["Authorization"] = f"Bearer {logged_in.json()['token']}"
        return cls(name, address, http)

    def upload(
        self, path: Path, new_format: str, name: str | None = None
    ) -> httpx.Response:
        with path.open("rb") as content:
            return self.http.post(
                "/api/tasks",
                files={
                    "file": (name or path.name, content, "application/octet-stream")
                },
                data={"newFormat": new_format},
            )

    def create(self, path: Path, new_format: str, name: str | None = None) -> dict:
        created = self.upload(path, new_format, name)
        assert created.status_code == 201, created.text
        return created.json()

    def task(self, task_id: int) -> dict[str, Any]:
        answer = self.http.get(f"/api/tasks/{task_id}")
        assert answer.status_code == 200, answer.text
        return answer.json()

    def wait_until_final(
        self, task_id: int, version: int | None = None, timeout: float = 60
    ) -> dict[str, Any]:
        """The task once its (current, or given) version is processed or failed."""

        def final() -> dict[str, Any] | None:
            task = self.task(task_id)
            if task["status"] in FINAL and version in (None, task["version"]):
                return task
            return None

        return eventually(final, timeout, f"task {task_id} to finish")

    def download(self, path: str) -> httpx.Response:
        return self.http.get(path)


class Outbox:
    """The ``.eml`` files the notifier writes with ``MAIL_URL=file://DIR``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def messages(self) -> list[EmailMessage]:
        if not self.directory.is_dir():
            return []
        return [
            email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            for path in sorted(self.directory.glob("*.eml"))
        ]

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages() if address in str(m.get("To", ""))]

    def wait_for(
        self, address: str, count: int, timeout: float = 30, settle: float = 0.5
    ) -> list[EmailMessage]:
        """At least ``count`` mails to ``address``, then whatever else arrives
        within ``settle`` seconds (so a second mail cannot hide)."""
        eventually(
            lambda: len(self.to(address)) >= count,
            timeout,
            f"{count} mail(s) to {address}",
        )
        time.sleep(settle)
        return self.to(address)


def text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None, "the mail has no text part"
    return part.get_content()


def links_in(message: EmailMessage) -> list[str]:
    return re.findall(r"https?://[^\s<>\"']+", text_of(message))


def mails_about(messages: Iterable[EmailMessage], needle: str) -> list[EmailMessage]:
    return [m for m in messages if needle in text_of(m) or needle in m["Subject"]]
