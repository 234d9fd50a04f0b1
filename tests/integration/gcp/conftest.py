"""The Google Cloud emulators, one of each per test session.

A host already in `PUBSUB_EMULATOR_HOST` / `STORAGE_EMULATOR_HOST` is reused
(`python -m deploy.emulators -- pytest ...` sets both); otherwise the fixture
starts the emulator on a free port and stops it by its process id at the end.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from deploy import emulators


@pytest.fixture(scope="session")
def pubsub_emulator() -> Iterator[str]:
    host = os.environ.get("PUBSUB_EMULATOR_HOST")
    if host:
        yield host
        return
    try:
        emulator = emulators.start_pubsub()
    except emulators.EmulatorUnavailable as exc:
        pytest.skip(f"Pub/Sub emulator not available: {exc}")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PUBSUB_EMULATOR_HOST", emulator.host)
        try:
            yield emulator.host
        finally:
            emulator.stop()


@pytest.fixture(scope="session")
def storage_emulator() -> Iterator[str]:
    host = os.environ.get("STORAGE_EMULATOR_HOST")
    if host:
        yield host
        return
    try:
        emulator = emulators.start_storage()
    except emulators.EmulatorUnavailable as exc:
        pytest.skip(f"storage emulator not available: {exc}")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STORAGE_EMULATOR_HOST", emulator.host)
        try:
            yield emulator.host
        finally:
            emulator.stop()


@pytest.fixture
def project_id() -> str:
    """A project of its own for each test, so topics never collide."""
    return f"test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def bucket(storage_emulator: str) -> str:
    name = f"bucket-{uuid.uuid4().hex[:10]}"
    emulators.create_bucket(storage_emulator, name)
    return name
