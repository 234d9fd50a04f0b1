"""The real local stack, started once per session, reached through its gateway.

Other backends come from ``E2E_*`` settings (see ``tests/e2e/stack.py``);
``E2E_POSTGRES=1`` gives auth, tasks and notifier a fresh PostgreSQL database
each on the server ``TEST_POSTGRES_URL`` names.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.e2e import audio
from tests.e2e.client import Outbox, User
from tests.e2e.stack import REPO_ROOT, RunningStack, missing_services, start_stack

HERE = Path(__file__).resolve().parent
DATABASE_SERVICES = ("auth", "tasks", "notifier")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.e2e)


def require(stack: RunningStack, *services: str) -> None:
    """Skip, saying why, unless every named service runs in ``stack``."""
    missing = missing_services(*services)
    if missing:
        pytest.skip(
            f"{', '.join(missing)} service not available: "
            f"services/<name>/main.py does not exist yet ({REPO_ROOT})"
        )
    not_running = sorted(set(services) - stack.services)
    if not_running:
        pytest.skip(f"{', '.join(not_running)} not running in the stack")


@pytest.fixture(scope="session")
def stack_factory(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Callable[..., RunningStack]]:
    """Starts stacks (each with its own VAR_DIR and ports); stops them all."""
    started: list[RunningStack] = []

    def start(
        name: str, overrides: dict[str, str | None] | None = None
    ) -> RunningStack:
        if missing_services("auth", "tasks"):
            pytest.skip(
                "auth/tasks service not available: services/<name>/main.py "
                "does not exist yet"
            )
        settings = dict(overrides or {})
        if os.environ.get("E2E_POSTGRES", "").lower() in {"1", "true", "yes"}:
            database = request.getfixturevalue("postgres_database")
            for service in DATABASE_SERVICES:
                settings.setdefault(
                    f"{service.upper()}_DATABASE_URL", database(f"e2e_{service}")
                )
        stack = start_stack(tmp_path_factory.mktemp(name), settings)
        started.append(stack)
        return stack

    yield start
    for stack in started:
        stack.stop()


@pytest.fixture(scope="session")
def stack(stack_factory: Callable[..., RunningStack]) -> RunningStack:
    return stack_factory("stack")


def outbox_of(stack: RunningStack) -> Outbox:
    mail_url = stack.setting("notifier", "MAIL_URL")
    if not mail_url:
        return Outbox(stack.var_dir / "outbox")
    parts = urlsplit(mail_url)
    if parts.scheme != "file":
        pytest.skip(f"mail outbox not available: MAIL_URL is {parts.scheme}://")
    return Outbox(Path(parts.netloc + parts.path))


@pytest.fixture
def outbox(stack: RunningStack) -> Outbox:
    return outbox_of(stack)


@pytest.fixture
def user(stack: RunningStack) -> Iterator[User]:
    require(stack, "auth", "tasks")
    signed_up = User.sign_up(stack.base_url)
    yield signed_up
    signed_up.http.close()


@dataclass(frozen=True)
class Sources:
    """Audio the tests upload, made once per session."""

    wav: Path
    mp3: Path
    long_wav: Path
    seconds: float
    long_seconds: float


@pytest.fixture(scope="session")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Sources:
    directory = tmp_path_factory.mktemp("audio")
    return Sources(
        wav=audio.tone(directory / "tone.wav", 3),
        mp3=audio.tone(directory / "tone.mp3", 3),
        long_wav=audio.tone(directory / "long.wav", 60),
        seconds=3.0,
        long_seconds=60.0,
    )
