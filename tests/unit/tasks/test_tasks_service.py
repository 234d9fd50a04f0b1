"""The tasks service through its ASGI app, with responses validated against
``openapi/tasks.yaml`` and tokens signed by a key made in the test."""

from __future__ import annotations

import base64
import io
import shutil
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import httpx
import pytest
from sqlalchemy import delete, func, select
from starlette.testclient import TestClient

from services.shared import events
from services.shared.db import make_engine, make_session_factory
from services.shared.tokens import JwksVerifier, TokenSigner, generate_key_pem
from services.tasks.main import create_app
from services.tasks.models import OutboxEntry, PendingUpload, Task
from services.tasks.settings import TasksSettings
from tests.unit.tasks.conftest import LIMIT, PUSH_TOKEN
from tests.unit.tasks.tasks_fakes import (
    AUDIENCE,
    ISSUER,
    FakePublisher,
    FakeStorage,
    hs256_token,
    unsigned_token,
    wav_bytes,
)

PROBLEM = "application/problem+json"
WAV = wav_bytes()
PUSH = f"/_ah/push-handlers/conversion-results?token={PUSH_TOKEN}"


@pytest.fixture(scope="module")
def stack(tmp_path_factory, migrated_template, signer):
    """One app for the module (building one takes a while); each test starts
    from an empty database, empty storage and a silent publisher."""
    root = tmp_path_factory.mktemp("tasks-service")
    database = root / "tasks.db"
    shutil.copyfile(migrated_template, database)
    settings = TasksSettings.from_env(
        {
            "VAR_DIR": str(root),
            "DATABASE_URL": f"sqlite:///{database}",
            "PUSH_TOKEN": PUSH_TOKEN,
            "MAX_UPLOAD_BYTES": str(LIMIT),
            "OUTBOX_FLUSH_SECONDS": "3600",
            "VALIDATE_RESPONSES": "true",
        }
    )
    storage = FakeStorage(root / "storage")
    publisher = FakePublisher()
    engine = make_engine(settings.common.database_url)
    app = create_app(
        settings, storage=storage, publisher=publisher, verifier=signer.verifier()
    )
    with TestClient(app, raise_server_exceptions=False) as client:
        yield SimpleNamespace(
            settings=settings,
            storage=storage,
            publisher=publisher,
            sessions=make_session_factory(engine),
            client=client,
        )
    engine.dispose()


@pytest.fixture(autouse=True)
def clean(stack):
    with stack.sessions() as session, session.begin():
        session.execute(delete(OutboxEntry))
        session.execute(delete(Task))
        session.execute(delete(PendingUpload))
    shutil.rmtree(stack.storage.root, ignore_errors=True)
    stack.storage.failing.clear()
    stack.publisher.sent.clear()
    stack.publisher.failing = False


@pytest.fixture
def client(stack):
    return stack.client


@pytest.fixture
def settings(stack):
    return stack.settings


@pytest.fixture
def storage(stack):
    return stack.storage


@pytest.fixture
def publisher(stack):
    return stack.publisher


@pytest.fixture
def sessions(stack):
    return stack.sessions


def upload(client, headers, data=WAV, name="song.wav", new_format="ogg", **extra):
    return client.post(
        "/api/tasks",
        headers=headers,
        files={"file": (name, data, "application/octet-stream")},
        data={"newFormat": new_format, **extra},
    )


def created(client, auth, **kwargs) -> dict:
    response = upload(client, auth, **kwargs)
    assert response.status_code == 201, response.text
    return response.json()


def count(sessions, model) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(model))


def assert_problem(response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status
    assert len(body["detail"]) > 10
    return body


def push_body(event: dict, message_id: str = "m-1") -> dict:
    data, attributes = events.encode(event)
    return {
        "message": {
            "data": base64.b64encode(data).decode(),
            "attributes": attributes,
            "messageId": message_id,
            "publishTime": "2026-12-03T10:00:00Z",
        },
        "subscription": "projects/local/subscriptions/tasks-conversion-results",
        "deliveryAttempt": 1,
    }


def success_event(task: dict, version: int | None = None) -> dict:
    version = version or task["version"]
    return events.new_event(
        "conversion.succeeded",
        task_id=task["id"],
        version=version,
        output_key=f"tasks/{task['id']}/v{version}/converted.ogg",
        size_bytes=15,
        duration_seconds=0.1,
    )


def deliver(client, storage, event, converted=b"OggS converted!"):
    if event["type"] == "conversion.succeeded":
        storage.save(event["output_key"], io.BytesIO(converted))
    return client.post(PUSH, json=push_body(event))


# The happy paths -----------------------------------------------------------


def test_upload_answers_the_task_with_its_links(client, auth, publisher):
    response = upload(client, auth)

    assert response.status_code == 201, response.text
    task = response.json()
    assert response.headers["location"] == f"/api/tasks/{task['id']}"
    assert task["filename"] == "song.wav"
    assert (task["original_format"], task["new_format"]) == ("wav", "ogg")
    assert (task["status"], task["version"]) == ("uploaded", 1)
    assert task["size_bytes"] == len(WAV)
    assert task["processed_at"] is None and task["error"] is None
    assert task["links"] == {
        "self": f"/api/tasks/{task['id']}",
        "original": f"/api/tasks/{task['id']}/original",
        "converted": None,
    }
    assert publisher.types() == ["conversion.requested"]


def test_the_first_versions_audio_and_filename_fields_are_accepted(client, auth):
    response = client.post(
        "/api/tasks",
        headers=auth,
        files={"audio": ("blob", WAV, "audio/wav")},
        data={"newFormat": "mp3", "filename": "old client.wav"},
    )
    assert response.status_code == 201, response.text
    assert response.json()["filename"] == "old client.wav"


def test_a_path_in_the_filename_is_refused_and_nothing_is_stored(
    client, auth, storage, sessions, publisher
):
    for name in ("../../../etc/cron.d/evil.wav", "music/song.wav"):
        response = client.post(
            "/api/tasks",
            headers=auth,
            files={"file": (name, WAV, "audio/wav")},
            data={"newFormat": "ogg"},
        )
        problem = assert_problem(response, 400)
        assert "has a folder in it" in problem["detail"]

    assert storage.stored_keys() == []
    assert count(sessions, Task) == count(sessions, OutboxEntry) == 0
    assert publisher.sent == []


def test_get_and_list_show_only_your_tasks(client, auth, other_auth):
    mine = [created(client, auth)["id"] for _ in range(3)]
    theirs = created(client, other_auth)["id"]

    listed = client.get("/api/tasks", headers=auth)
    assert [t["id"] for t in listed.json()] == mine
    newest = client.get("/api/tasks?order=1&max=2", headers=auth).json()
    assert [t["id"] for t in newest] == mine[::-1][:2]
    assert client.get("/api/tasks?status=processed", headers=auth).json() == []
    assert client.get(f"/api/tasks/{mine[0]}", headers=auth).json()["id"] == mine[0]

    for path in (
        f"/api/tasks/{theirs}",
        f"/api/tasks/{theirs}/original",
        f"/api/tasks/{theirs}/converted",
        f"/api/download/{theirs}",
    ):
        assert_problem(client.get(path, headers=auth), 404)
    assert_problem(client.delete(f"/api/tasks/{theirs}", headers=auth), 404)
    put = client.put(f"/api/tasks/{theirs}", headers=auth, json={"newFormat": "mp3"})
    assert_problem(put, 404)


def test_the_original_downloads_byte_for_byte_with_ranges(client, auth):
    task = created(client, auth)
    path = task["links"]["original"]

    whole = client.get(path, headers=auth)
    assert whole.status_code == 200
    assert whole.content == WAV
    assert whole.headers["content-type"] == "audio/wav"
    assert whole.headers["accept-ranges"] == "bytes"
    assert whole.headers["content-disposition"].startswith("attachment;")

    part = client.get(path, headers={**auth, "Range": "bytes=4-11"})
    assert part.status_code == 206
    assert part.content == WAV[4:12]
    assert part.headers["content-range"] == f"bytes 4-11/{len(WAV)}"

    tail = client.get(path, headers={**auth, "Range": "bytes=-10"})
    assert (tail.status_code, tail.content) == (206, WAV[-10:])
    rest = client.get(path, headers={**auth, "Range": "bytes=100-"})
    assert (rest.status_code, rest.content) == (206, WAV[100:])
    several = client.get(path, headers={**auth, "Range": "bytes=0-1,5-6"})
    assert (several.status_code, several.content) == (200, WAV)

    outside = client.get(path, headers={**auth, "Range": f"bytes={len(WAV)}-"})
    assert_problem(outside, 416)
    assert outside.headers["content-range"] == f"bytes */{len(WAV)}"

    legacy = client.get(f"/api/download/{task['id']}", headers=auth)
    assert (legacy.status_code, legacy.content) == (200, WAV)


def test_a_resumed_download_gets_a_range_only_of_the_same_file(client, auth, storage):
    task = created(client, auth)
    deliver(client, storage, success_event(task))
    path = f"/api/tasks/{task['id']}/converted"
    first = client.get(path, headers={**auth, "Range": "bytes=0-3"})
    etag = first.headers["etag"]
    assert first.status_code == 206

    same = client.get(path, headers={**auth, "Range": "bytes=4-", "If-Range": etag})
    assert (same.status_code, same.headers["etag"]) == (206, etag)
    assert first.content + same.content == b"OggS converted!"

    client.put(f"/api/tasks/{task['id']}", headers=auth, json={"newFormat": "mp3"})
    deliver(client, storage, success_event(task, 2), converted=b"ID3 another file")
    resumed = client.get(path, headers={**auth, "Range": "bytes=4-", "If-Range": etag})
    assert resumed.status_code == 200
    assert resumed.content == b"ID3 another file"
    assert resumed.headers["etag"] != etag


def test_the_converted_file_is_there_once_processed(client, auth, storage, publisher):
    task = created(client, auth)
    assert_problem(client.get(task["links"]["original"][:-8] + "converted"), 401)
    not_yet = client.get(f"/api/tasks/{task['id']}/converted", headers=auth)
    assert "uploaded" in assert_problem(not_yet, 404)["detail"]

    assert deliver(client, storage, success_event(task)).status_code == 204

    done = client.get(f"/api/tasks/{task['id']}", headers=auth).json()
    assert done["status"] == "processed"
    assert done["processed_at"] is not None
    assert (done["converted_size_bytes"], done["duration_seconds"]) == (15, 0.1)
    assert done["links"]["converted"] == f"/api/tasks/{task['id']}/converted"
    converted = client.get(done["links"]["converted"], headers=auth)
    assert converted.status_code == 200
    assert converted.content == b"OggS converted!"
    assert converted.headers["content-type"] == "audio/ogg"
    assert 'filename="song.ogg"' in converted.headers["content-disposition"]
    assert publisher.types() == ["conversion.requested", "task.processed"]


@pytest.mark.parametrize("encoding", ["json", "form"])
def test_put_reconverts_as_a_new_version(client, auth, storage, publisher, encoding):
    task = created(client, auth)
    first = success_event(task)
    deliver(client, storage, first)
    body = {"newFormat": "flac"}
    sent = {"json": body} if encoding == "json" else {"data": body}

    response = client.put(f"/api/tasks/{task['id']}", headers=auth, **sent)

    assert response.status_code == 200, response.text
    again = response.json()
    assert (again["version"], again["status"], again["new_format"]) == (
        2,
        "uploaded",
        "flac",
    )
    assert again["links"]["converted"] is None
    assert not storage.exists(first["output_key"])
    request = publisher.sent[-1][1]
    assert (request["type"], request["version"]) == ("conversion.requested", 2)


def test_delete_removes_the_task_and_its_files(client, auth, storage, sessions):
    task = created(client, auth)
    deliver(client, storage, success_event(task))

    response = client.delete(f"/api/tasks/{task['id']}", headers=auth)

    assert response.status_code == 204
    assert storage.stored_keys() == []
    assert count(sessions, Task) == 0
    assert_problem(client.get(f"/api/tasks/{task['id']}", headers=auth), 404)


def test_formats_is_the_catalog_without_a_token(client):
    response = client.get("/api/formats")
    assert response.status_code == 200
    catalog = {fmt["name"]: fmt for fmt in response.json()}
    assert list(catalog) == ["mp3", "wav", "ogg", "flac", "m4a", "opus", "wma"]
    assert catalog["m4a"]["aliases"] == ["aac"]
    assert catalog["ogg"]["media_type"] == "audio/ogg"
    assert all(fmt["source"] and fmt["target"] for fmt in catalog.values())


def test_health_and_the_spec_are_served(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    spec = client.get("/api/openapi.json").json()
    assert "/tasks" in spec["paths"]
    assert client.get("/api/ui/").status_code == 200


def test_an_unknown_route_or_method_is_a_problem(client, auth):
    assert "/api/ui/" in assert_problem(client.get("/api/nothing"), 404)["detail"]
    wrong = client.patch("/api/tasks/1", headers=auth, json={})
    assert "PATCH" in assert_problem(wrong, 405)["detail"]


# Bad input: the right 4xx, a problem, nothing stored ------------------------


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _token(kind, signer, signing_key_pem, public_key_pem) -> dict[str, str]:
    if kind == "none":
        return {}
    if kind == "alg-none":
        return _bearer(unsigned_token(signer.kid))
    if kind == "hs256-public-key":
        return _bearer(hs256_token(public_key_pem, signer.kid))
    if kind == "expired":
        stale = TokenSigner(signing_key_pem, ISSUER, AUDIENCE, -3600)
        return _bearer(stale.issue("1", "ada", "ada@example.com")[0])
    if kind == "other-issuer":
        foreign = TokenSigner(signing_key_pem, "someone-else", AUDIENCE, 3600)
        return _bearer(foreign.issue("1", "ada", "ada@example.com")[0])
    if kind == "other-audience":
        foreign = TokenSigner(signing_key_pem, ISSUER, "another-app", 3600)
        return _bearer(foreign.issue("1", "ada", "ada@example.com")[0])
    if kind == "unknown-key":
        stranger = TokenSigner(generate_key_pem(), ISSUER, AUDIENCE, 3600)
        return _bearer(stranger.issue("1", "ada", "ada@example.com")[0])
    if kind == "garbage":
        return _bearer("not.a.token")
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind",
    [
        "none",
        "alg-none",
        "hs256-public-key",
        "expired",
        "other-issuer",
        "other-audience",
        "unknown-key",
        "garbage",
    ],
)
def test_a_bad_token_is_refused_and_nothing_is_stored(
    client, signer, signing_key_pem, public_key_pem, storage, sessions, kind
):
    headers = _token(kind, signer, signing_key_pem, public_key_pem)
    response = upload(client, headers)
    assert_problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert_problem(client.get("/api/tasks", headers=headers), 401)
    assert storage.stored_keys() == []
    assert count(sessions, Task) == count(sessions, OutboxEntry) == 0


@pytest.mark.parametrize(
    ("case", "status"),
    [
        ("non-audio named .mp3", 415),
        ("image named .wav", 415),
        ("empty file", 400),
        ("one byte over the limit", 413),
        ("far over the limit", 413),
        ("same format", 400),
        ("unknown format", 400),
        ("a path as the format", 400),
        ("no newFormat", 400),
        ("no file", 400),
    ],
)
def test_a_bad_upload_is_refused_and_nothing_is_stored(
    client, auth, storage, sessions, publisher, case, status
):
    data, name, fields = WAV, "song.wav", {"newFormat": "ogg"}
    files = None
    if case == "non-audio named .mp3":
        data, name = b"<html><body>not audio at all</body></html>" * 20, "x.mp3"
    elif case == "image named .wav":
        data = b"\x89PNG\r\n\x1a\n" + bytes(500)
    elif case == "empty file":
        data = b""
    elif case == "one byte over the limit":
        data = (WAV * (LIMIT // len(WAV) + 2))[: LIMIT + 1]
    elif case == "far over the limit":
        data = WAV + bytes(4 * LIMIT)
    elif case == "same format":
        fields = {"newFormat": "WAV"}
    elif case == "unknown format":
        fields = {"newFormat": "mp5"}
    elif case == "a path as the format":
        fields = {"newFormat": "../ogg"}
    elif case == "no newFormat":
        fields = {}
    if case == "no file":
        files = {"other": ("x", b"y")}
    else:
        files = {"file": (name, data, "audio/mpeg")}

    response = client.post("/api/tasks", headers=auth, files=files, data=fields)

    assert_problem(response, status)
    assert storage.stored_keys() == []
    assert count(sessions, Task) == count(sessions, OutboxEntry) == 0
    assert count(sessions, PendingUpload) == 0
    assert publisher.sent == []


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/tasks?max=-1"),
        ("GET", "/api/tasks?max=0"),
        ("GET", "/api/tasks?max=many"),
        ("GET", "/api/tasks?order=7"),
        ("GET", "/api/tasks?status=done"),
        ("GET", "/api/tasks/abc"),
        ("GET", "/api/tasks/-1"),
        ("GET", "/api/tasks/0"),
        ("GET", "/api/tasks/99999999999999999999"),
        ("PUT", "/api/tasks/abc"),
        ("DELETE", "/api/tasks/abc"),
        ("GET", "/api/tasks/abc/original"),
        ("GET", "/api/tasks/1.5/converted"),
        ("GET", "/api/download/abc"),
    ],
)
def test_a_bad_parameter_is_a_bad_request(client, auth, method, path):
    response = client.request(method, path, headers=auth, json={"newFormat": "ogg"})
    detail = assert_problem(response, 400)["detail"]
    assert "Failed validating" not in detail


@pytest.mark.parametrize(
    "body", [{"newFormat": "mp5"}, {"newFormat": "wav"}, {}, {"format": "ogg"}]
)
def test_a_bad_reconvert_changes_nothing(client, auth, publisher, body):
    task = created(client, auth)
    response = client.put(f"/api/tasks/{task['id']}", headers=auth, json=body)
    assert_problem(response, 400)
    assert client.get(f"/api/tasks/{task['id']}", headers=auth).json()["version"] == 1
    assert publisher.types() == ["conversion.requested"]


def test_a_declared_length_over_the_limit_is_refused_before_reading(
    client, auth, storage
):
    response = client.post(
        "/api/tasks",
        headers={
            **auth,
            "Content-Type": "multipart/form-data; boundary=x",
            "Content-Length": str(10 * LIMIT),
        },
        content=b"--x--\r\n",
    )
    assert_problem(response, 413)
    assert storage.stored_keys() == []


# The results push endpoint ---------------------------------------------------


@pytest.mark.parametrize("query", ["", "?token=wrong"])
def test_a_push_without_the_token_is_refused(client, auth, query):
    task = created(client, auth)
    response = client.post(
        f"/_ah/push-handlers/conversion-results{query}",
        json=push_body(success_event(task)),
    )
    assert_problem(response, 401)
    assert "www-authenticate" in response.headers
    assert client.get(f"/api/tasks/{task['id']}", headers=auth).json()["status"] == (
        "uploaded"
    )


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"message": "nope"},
        {"message": {"data": "%%%not base64"}},
        {"message": {"data": base64.b64encode(b"[1, 2]").decode()}},
        {"message": {"data": base64.b64encode(b'{"type": "x"}').decode()}},
    ],
)
def test_an_unusable_message_is_acknowledged_and_changes_nothing(
    client, auth, publisher, body
):
    task = created(client, auth)
    response = client.post(PUSH, json=body)
    assert response.status_code == 204
    assert client.get(f"/api/tasks/{task['id']}", headers=auth).json()["status"] == (
        "uploaded"
    )
    assert publisher.types() == ["conversion.requested"]


def test_an_event_of_another_topic_is_acknowledged_and_ignored(client, auth):
    task = created(client, auth)
    wrong = events.new_event(
        "conversion.requested",
        task_id=task["id"],
        version=1,
        source_key="tasks/x/original.wav",
        source_format="wav",
        target_format="ogg",
        filename="song.wav",
    )
    assert client.post(PUSH, json=push_body(wrong)).status_code == 204
    assert client.get(f"/api/tasks/{task['id']}", headers=auth).json()["status"] == (
        "uploaded"
    )


def test_a_failure_result_shows_its_reason(client, auth, publisher):
    task = created(client, auth)
    event = events.new_event(
        "conversion.failed",
        task_id=task["id"],
        version=1,
        code="corrupt_input",
        message="The file is cut short; upload the whole file.",
    )
    assert client.post(PUSH, json=push_body(event)).status_code == 204
    failed = client.get(f"/api/tasks/{task['id']}", headers=auth).json()
    assert failed["status"] == "failed"
    assert failed["error"] == {
        "code": "corrupt_input",
        "message": "The file is cut short; upload the whole file.",
    }
    missing = client.get(f"/api/tasks/{task['id']}/converted", headers=auth)
    assert "cut short" in assert_problem(missing, 404)["detail"]
    assert publisher.sent[-1][1]["error"]["code"] == "corrupt_input"


def test_a_stale_result_is_discarded_and_its_output_removed(
    client, auth, storage, publisher
):
    task = created(client, auth)
    client.put(f"/api/tasks/{task['id']}", headers=auth, json={"newFormat": "mp3"})
    old = success_event(task, version=1)

    assert deliver(client, storage, old).status_code == 204

    current = client.get(f"/api/tasks/{task['id']}", headers=auth).json()
    assert (current["status"], current["version"]) == ("uploaded", 2)
    assert not storage.exists(old["output_key"])
    assert "task.processed" not in publisher.types()


def test_a_result_for_a_deleted_task_is_discarded_and_its_output_removed(
    client, auth, storage, publisher
):
    task = created(client, auth)
    client.delete(f"/api/tasks/{task['id']}", headers=auth)
    event = success_event(task)

    assert deliver(client, storage, event).status_code == 204
    assert storage.stored_keys() == []
    assert "task.processed" not in publisher.types()


def test_a_redelivered_result_changes_nothing_and_announces_once(
    client, auth, storage, publisher
):
    task = created(client, auth)
    event = success_event(task)
    deliver(client, storage, event)
    before = client.get(f"/api/tasks/{task['id']}", headers=auth).json()

    again = client.post(PUSH, json=push_body(event, message_id="m-2"))

    assert again.status_code == 204
    assert client.get(f"/api/tasks/{task['id']}", headers=auth).json() == before
    assert publisher.types().count("task.processed") == 1
    assert storage.exists(event["output_key"])


def test_a_storage_fault_while_applying_a_result_asks_for_a_retry(
    client, auth, storage
):
    task = created(client, auth)
    client.delete(f"/api/tasks/{task['id']}", headers=auth)
    storage.failing.add("delete")
    response = client.post(PUSH, json=push_body(success_event(task)))
    problem = assert_problem(response, 503)
    assert "storage unreachable" not in problem["detail"]
    assert response.headers["retry-after"]


def test_a_database_fault_asks_for_a_retry(tmp_path, settings, storage, signer):
    import dataclasses

    broken = dataclasses.replace(
        settings,
        common=dataclasses.replace(
            settings.common, database_url=f"sqlite:///{tmp_path / 'empty.db'}"
        ),
    )
    app = create_app(broken, storage=storage, verifier=signer.verifier())
    token, _ = signer.issue("1", "ada", "ada@example.com")
    event = events.new_event(
        "conversion.failed", task_id=1, version=1, code="timeout", message="Too slow."
    )
    with TestClient(app, raise_server_exceptions=False) as client:
        pushed = client.post(PUSH, json=push_body(event))
        listed = client.get("/api/tasks", headers=_bearer(token))
        uploaded = upload(client, _bearer(token))
    for response in (pushed, listed, uploaded):
        problem = assert_problem(response, 503)
        assert "no such table" not in problem["detail"]
    assert storage.stored_keys() == []


# The outbox flush -------------------------------------------------------------


def test_cron_flush_publishes_what_a_bus_outage_left(client, auth, publisher):
    publisher.failing = True
    task = created(client, auth)
    assert publisher.sent == []
    publisher.failing = False

    assert_problem(client.post("/_ah/cron/flush-outbox"), 403)
    cron = {"X-Appengine-Cron": "true"}
    response = client.get("/_ah/cron/flush-outbox", headers=cron)

    assert response.json() == {"published": 1, "pending": 0}
    assert publisher.sent[0][1]["task_id"] == task["id"]
    again = client.post("/_ah/cron/flush-outbox", headers=cron).json()
    assert again == {"published": 0, "pending": 0}


def test_the_running_app_flushes_the_outbox_by_itself(
    settings, storage, publisher, signer, sessions
):
    import dataclasses
    import time

    quick = dataclasses.replace(settings, outbox_flush_seconds=0.05)
    app = create_app(
        quick, storage=storage, publisher=publisher, verifier=signer.verifier()
    )
    token, _ = signer.issue("1", "ada", "ada@example.com")
    with TestClient(app) as client:
        publisher.failing = True
        created(client, _bearer(token))
        publisher.failing = False
        deadline = time.monotonic() + 5
        while not publisher.sent and time.monotonic() < deadline:
            time.sleep(0.02)
    assert publisher.types() == ["conversion.requested"]


def test_the_running_app_sweeps_abandoned_uploads(
    settings, storage, publisher, signer, sessions
):
    import dataclasses
    import time

    orphan = "tasks/0123456789abcdef0123456789abcdef/"
    storage.save(f"{orphan}original.wav", io.BytesIO(WAV))
    with sessions() as session, session.begin():
        then = datetime.now(UTC) - timedelta(hours=2)
        session.add(PendingUpload(prefix=orphan, created_at=then))
    quick = dataclasses.replace(settings, outbox_flush_seconds=0.05)
    app = create_app(
        quick, storage=storage, publisher=publisher, verifier=signer.verifier()
    )
    with TestClient(app):
        # The row goes last, once the files are gone.
        deadline = time.monotonic() + 5
        while count(sessions, PendingUpload) and time.monotonic() < deadline:
            time.sleep(0.02)
    assert count(sessions, PendingUpload) == 0
    assert storage.stored_keys() == []


# Keys from the JWKS URL ------------------------------------------------------


def test_keys_are_fetched_from_the_jwks_url_once_and_refetched_for_a_new_kid(
    settings, storage, publisher, signer, signing_key_pem
):
    rotated = TokenSigner(generate_key_pem(), ISSUER, AUDIENCE, 3600)
    published = {"keys": signer.jwks()["keys"]}
    fetches = []

    def jwks(request: httpx.Request) -> httpx.Response:
        fetches.append(str(request.url))
        return httpx.Response(200, json=published)

    verifier = JwksVerifier(
        settings.jwks_url,
        ISSUER,
        AUDIENCE,
        http=httpx.Client(transport=httpx.MockTransport(jwks)),
        refetch_interval=0,
    )
    app = create_app(settings, storage=storage, publisher=publisher, verifier=verifier)
    with TestClient(app) as client:
        for _ in range(3):
            token, _ = signer.issue("1", "ada", "ada@example.com")
            assert client.get("/api/tasks", headers=_bearer(token)).status_code == 200
        assert fetches == [settings.jwks_url]

        published["keys"] = published["keys"] + rotated.jwks()["keys"]
        token, _ = rotated.issue("1", "ada", "ada@example.com")
        assert client.get("/api/tasks", headers=_bearer(token)).status_code == 200
        assert len(fetches) == 2
    assert settings.jwks_url.endswith("/api/auth/jwks.json")


def test_an_unreachable_key_set_is_a_503_to_retry_not_a_401(
    settings, storage, publisher, signer
):
    def auth_down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    verifier = JwksVerifier(
        settings.jwks_url,
        ISSUER,
        AUDIENCE,
        http=httpx.Client(transport=httpx.MockTransport(auth_down)),
        refetch_interval=0,
    )
    app = create_app(settings, storage=storage, publisher=publisher, verifier=verifier)
    with TestClient(app) as client:
        token, _ = signer.issue("1", "ada", "ada@example.com")
        response = client.get("/api/tasks", headers=_bearer(token))

    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"]
    assert "try again" in response.json()["detail"]
