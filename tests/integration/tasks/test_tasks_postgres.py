"""The tasks service on a real PostgreSQL server: its migrations, the
create, list, re-convert, result and delete flow through the app, and the
outbox sending each entry once while several instances flush at once."""

from __future__ import annotations

import base64
import io
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, inspect, select, text
from starlette.testclient import TestClient

from services.shared import events
from services.shared.db import make_engine, make_session_factory, upgrade
from services.shared.tokens import TokenSigner, generate_key_pem
from services.tasks.domain import Owner, TaskService
from services.tasks.main import create_app
from services.tasks.models import Base, OutboxEntry, Task
from services.tasks.outbox import Outbox
from services.tasks.settings import TasksSettings
from tests.unit.tasks.tasks_fakes import (
    AUDIENCE,
    ISSUER,
    FakePublisher,
    FakeStorage,
    wav_bytes,
)

pytestmark = pytest.mark.postgres
ROOT = Path(__file__).resolve().parents[3]
MIGRATIONS = ROOT / "services/tasks/migrations"
PUSH_TOKEN = "push-secret"


@pytest.fixture(scope="module")
def database_url(postgres_database) -> str:
    url = postgres_database("tasks")
    upgrade(url, MIGRATIONS)
    return url


@pytest.fixture(scope="module")
def engine(database_url):
    engine = make_engine(database_url, pool_size=8)
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine):
    with engine.begin() as connection:
        connection.execute(
            text("TRUNCATE tasks, outbox, pending_uploads RESTART IDENTITY")
        )
    return make_session_factory(engine)


@pytest.fixture(scope="module")
def signer() -> TokenSigner:
    return TokenSigner(generate_key_pem(), ISSUER, AUDIENCE, 3600)


def test_migrations_build_the_models_tables(engine):
    with engine.connect() as connection:
        assert {"tasks", "outbox", "alembic_version"} <= set(
            inspect(connection).get_table_names()
        )
        differences = compare_metadata(
            MigrationContext.configure(connection), Base.metadata
        )
    assert differences == []


def test_the_migrate_command_applies_to_database_url(postgres_database):
    url = postgres_database("tasks_cli")
    result = subprocess.run(
        [sys.executable, "-m", "services.shared.migrate", "tasks"],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": url, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    probe = make_engine(url)
    try:
        with probe.connect() as connection:
            assert "tasks" in inspect(connection).get_table_names()
    finally:
        probe.dispose()


def test_create_list_result_reconvert_and_delete_through_the_app(
    sessions, database_url, signer, tmp_path
):
    storage = FakeStorage(tmp_path / "storage")
    publisher = FakePublisher()
    settings = TasksSettings.from_env(
        {
            "VAR_DIR": str(tmp_path),
            "DATABASE_URL": database_url,
            "PUSH_TOKEN": PUSH_TOKEN,
            "OUTBOX_FLUSH_SECONDS": "3600",
            "VALIDATE_RESPONSES": "true",
        }
    )
    app = create_app(
        settings, storage=storage, publisher=publisher, verifier=signer.verifier()
    )
    token, _ = signer.issue("1", "ada", "ada@example.com")
    auth = {"Authorization": f"Bearer {token}"}
    audio = wav_bytes()

    with TestClient(app, raise_server_exceptions=False) as client:
        ids = []
        for name in ("one.wav", "two.wav"):
            response = client.post(
                "/api/tasks",
                headers=auth,
                files={"file": (name, audio, "audio/wav")},
                data={"newFormat": "ogg"},
            )
            assert response.status_code == 201, response.text
            ids.append(response.json()["id"])
        listed = client.get("/api/tasks?order=1", headers=auth).json()
        assert [task["id"] for task in listed] == ids[::-1]

        request = publisher.sent[0][1]
        output_key = f"tasks/{ids[0]}/v1/converted.ogg"
        storage.save(output_key, io.BytesIO(b"OggS result"))
        result = events.new_event(
            "conversion.succeeded",
            task_id=request["task_id"],
            version=request["version"],
            output_key=output_key,
            size_bytes=11,
            duration_seconds=0.1,
        )
        data, attributes = events.encode(result)
        envelope = {
            "message": {
                "data": base64.b64encode(data).decode(),
                "attributes": attributes,
                "messageId": "1",
            },
            "subscription": "projects/local/subscriptions/tasks-conversion-results",
        }
        push = f"/_ah/push-handlers/conversion-results?token={PUSH_TOKEN}"
        assert client.post(push, json=envelope).status_code == 204
        assert client.post(push, json=envelope).status_code == 204

        done = client.get(f"/api/tasks/{ids[0]}", headers=auth).json()
        assert done["status"] == "processed"
        converted = client.get(done["links"]["converted"], headers=auth)
        assert converted.content == b"OggS result"
        assert publisher.types().count("task.processed") == 1

        again = client.put(
            f"/api/tasks/{ids[0]}", headers=auth, json={"newFormat": "mp3"}
        )
        assert again.json()["version"] == 2
        assert not storage.exists(output_key)
        # The first version's result arriving late changes nothing now.
        assert client.post(push, json=envelope).status_code == 204
        assert client.get(f"/api/tasks/{ids[0]}", headers=auth).json()["status"] == (
            "uploaded"
        )

        assert client.delete(f"/api/tasks/{ids[0]}", headers=auth).status_code == 204
        assert client.get(f"/api/tasks/{ids[0]}", headers=auth).status_code == 404

    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Task)) == 1
        unpublished = select(func.count()).where(OutboxEntry.published_at.is_(None))
        assert session.scalar(unpublished) == 0


def test_concurrent_flushes_send_each_entry_once(sessions, tmp_path):
    publisher = FakePublisher()
    publisher.failing = True
    outbox = Outbox(sessions, publisher)
    service = TaskService(
        sessions, FakeStorage(tmp_path / "storage"), outbox, max_upload_bytes=1 << 20
    )
    owner = Owner("1", "ada", "ada@example.com")
    for _ in range(30):
        service.create(owner, io.BytesIO(wav_bytes()), "a.wav", "ogg")
    assert publisher.sent == []
    publisher.failing = False

    instances = [Outbox(sessions, publisher) for _ in range(4)]
    start = threading.Barrier(len(instances))

    def flush(instance: Outbox) -> None:
        start.wait()
        instance.flush()

    threads = [threading.Thread(target=flush, args=(i,)) for i in instances]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    sent = [event["task_id"] for _topic, event, _attributes in publisher.sent]
    assert sorted(sent) == list(range(1, 31))
    assert outbox.flush().pending == 0
