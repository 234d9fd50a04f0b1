"""The domain rules of tasks, without HTTP: uploads, re-conversion, deletion,
results and the outbox."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError, OperationalError

from services.shared import events, formats
from services.shared.storage import StorageError
from services.tasks.domain import Owner, TaskService
from services.tasks.errors import (
    FileNotReady,
    InvalidRequest,
    TaskNotFound,
    UnsupportedMedia,
    UploadTooLarge,
)
from services.tasks.models import OutboxEntry, PendingUpload, Task
from services.tasks.uploads import LimitedReader, clean_filename, converted_name
from tests.unit.tasks.conftest import LIMIT
from tests.unit.tasks.tasks_fakes import CountingReader, wav_bytes

WAV = formats.get("wav")


def count(sessions, model) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(model))


def pending(sessions) -> list[OutboxEntry]:
    with sessions() as session:
        query = select(OutboxEntry).where(OutboxEntry.published_at.is_(None))
        return list(session.scalars(query))


def create(service, owner, data=None, name="song.wav", target="ogg") -> Task:
    data = wav_bytes() if data is None else data
    return service.create(owner, io.BytesIO(data), name, target)


def succeeded(task: Task, version: int | None = None, key: str | None = None):
    version = version or task.version
    return events.new_event(
        "conversion.succeeded",
        task_id=task.id,
        version=version,
        output_key=key or f"tasks/{task.id}/v{version}/converted.ogg",
        size_bytes=1234,
        duration_seconds=2.5,
    )


def failed(task: Task):
    return events.new_event(
        "conversion.failed",
        task_id=task.id,
        version=task.version,
        code="corrupt_input",
        message="The file ends in the middle of a frame.",
    )


def put_output(storage, event) -> None:
    storage.save(event["output_key"], io.BytesIO(b"OggS converted"))


# Names ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("song.wav", "song.wav"),
        ("..", "audio.wav"),
        ("", "audio.wav"),
        (None, "audio.wav"),
        ("tab\tand\nnewline.wav", "tabandnewline.wav"),
        ("  Überlied.wav ", "Überlied.wav"),
    ],
)
def test_a_stored_name_is_cleaned(given, kept):
    assert clean_filename(given, WAV) == kept


@pytest.mark.parametrize(
    "given",
    ["../../etc/passwd.wav", "C:\\Users\\ada\\song.wav", "/abs/song.wav", "dir/.."],
)
def test_a_name_with_a_folder_is_refused(given):
    with pytest.raises(InvalidRequest, match="has a folder in it"):
        clean_filename(given, WAV)


def test_a_long_name_is_cut_to_255_and_keeps_its_extension():
    name = clean_filename("x" * 400 + ".wav", WAV)
    assert len(name) == 255
    assert name.endswith(".wav")


def test_the_converted_download_name_takes_the_target_extension():
    assert converted_name("song.final.wav", formats.get("ogg")) == "song.final.ogg"
    assert converted_name("noext", formats.get("mp3")) == "noext.mp3"


def test_an_owner_needs_sub_username_and_email():
    assert Owner.from_claims({"sub": "1", "username": "a", "email": "a@b.c"}).id == "1"
    with pytest.raises(Exception, match="lacks"):
        Owner.from_claims({"sub": "1", "username": "a"})


# Creating ------------------------------------------------------------------


def test_create_stores_the_file_then_the_task_and_its_request(
    service, owner, storage, sessions, publisher
):
    data = wav_bytes()
    task = create(service, owner, data, name="song.wav")

    assert task.id >= 1
    assert (task.status, task.version) == ("uploaded", 1)
    assert (task.original_format, task.new_format) == ("wav", "ogg")
    assert task.filename == "song.wav"
    assert task.size_bytes == len(data)
    assert storage.stored_keys() == [task.source_key]
    assert storage.open(task.source_key).read() == data
    assert task.source_key.startswith(task.storage_prefix)

    # The request was published right after commit, and validates.
    assert publisher.types() == ["conversion.requested"]
    topic, event, attributes = publisher.sent[0]
    assert topic == "conversion-requests"
    events.validate(event)
    assert event["task_id"] == task.id
    assert event["source_key"] == task.source_key
    assert (event["source_format"], event["target_format"]) == ("wav", "ogg")
    assert attributes["task_id"] == str(task.id)
    assert pending(sessions) == []
    assert count(sessions, PendingUpload) == 0


def test_a_format_alias_names_its_format(service, owner):
    assert create(service, owner, target="AAC").new_format == "m4a"


@pytest.mark.parametrize(
    ("data", "target", "error", "message"),
    [
        (b"", "ogg", InvalidRequest, "empty"),
        (b"this is a text file, not audio" * 10, "ogg", UnsupportedMedia, "content"),
        (b"\x89PNG\r\n\x1a\n" + bytes(200), "ogg", UnsupportedMedia, "not audio"),
        (wav_bytes(), "wav", InvalidRequest, "already wav"),
        (wav_bytes(), "xyz", InvalidRequest, "not a format"),
        (wav_bytes(), "", InvalidRequest, "missing"),
    ],
)
def test_a_bad_upload_keeps_nothing(
    service, owner, storage, sessions, publisher, data, target, error, message
):
    with pytest.raises(error, match=message):
        create(service, owner, data, target=target)
    assert storage.stored_keys() == []
    assert count(sessions, Task) == 0
    assert count(sessions, OutboxEntry) == 0
    assert count(sessions, PendingUpload) == 0
    assert publisher.sent == []


def test_no_file_at_all_is_a_bad_request(service, owner):
    with pytest.raises(InvalidRequest, match="No file"):
        service.create(owner, None, "x.wav", "ogg")


def test_an_upload_over_the_limit_stops_being_read_and_keeps_nothing(
    service, owner, storage, sessions
):
    source = CountingReader(wav_bytes(seconds=60))
    assert len(source._data) > 3 * LIMIT
    with pytest.raises(UploadTooLarge, match=str(LIMIT)):
        service.create(owner, source, "long.wav", "ogg")
    assert source.read_bytes <= LIMIT + 1
    assert storage.stored_keys() == []
    assert count(sessions, Task) == 0
    assert count(sessions, PendingUpload) == 0


def test_an_upload_of_exactly_the_limit_is_taken(service, owner):
    data = wav_bytes(seconds=60)[:LIMIT]
    assert create(service, owner, data).size_bytes == LIMIT


def test_the_limited_reader_counts_its_head():
    reader = LimitedReader(b"abcd", io.BytesIO(b"efgh"), limit=6)
    assert reader.read(100) == b"abcd"
    with pytest.raises(UploadTooLarge):
        reader.read(100)


def test_a_failed_transaction_removes_the_stored_file(
    service, owner, storage, sessions, monkeypatch
):
    def broken(*_args):
        raise OperationalError("INSERT", {}, Exception("database is gone"))

    monkeypatch.setattr(service, "_insert", broken)
    with pytest.raises(OperationalError):
        create(service, owner)
    assert storage.stored_keys() == []
    assert count(sessions, Task) == 0
    assert count(sessions, PendingUpload) == 0


def test_a_commit_that_errs_after_it_applied_keeps_the_tasks_file(
    service, owner, storage, sessions, monkeypatch
):
    insert = service._insert

    def lost_reply(*args):
        insert(*args)
        raise OperationalError("COMMIT", {}, Exception("connection reset"))

    monkeypatch.setattr(service, "_insert", lost_reply)
    with pytest.raises(OperationalError):
        create(service, owner)

    with sessions() as session:
        [task] = session.scalars(select(Task))
    assert storage.stored_keys() == [task.source_key]


def test_a_storage_fault_keeps_no_task(service, owner, storage, sessions):
    storage.failing.add("save")
    with pytest.raises(Exception, match="storage unreachable"):
        create(service, owner)
    assert count(sessions, Task) == 0
    assert count(sessions, OutboxEntry) == 0


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def clocked(sessions, storage, outbox, clock) -> TaskService:
    return TaskService(sessions, storage, outbox, LIMIT, clock=clock)


def die_after_storing(service, monkeypatch) -> None:
    """Make the next upload's process stop once its file is stored: no task
    row, and none of the request's own cleanup."""

    def killed(*_args):
        raise SystemExit("killed")

    monkeypatch.setattr(service, "_insert", killed)
    monkeypatch.setattr(service, "_abandon", lambda _prefix: None)


def test_an_upload_a_crash_orphaned_is_swept_once_no_request_can_own_it(
    clocked, clock, owner, storage, sessions, monkeypatch
):
    kept = create(clocked, owner)
    die_after_storing(clocked, monkeypatch)
    with pytest.raises(SystemExit):
        create(clocked, owner)
    [orphan] = [key for key in storage.stored_keys() if key != kept.source_key]

    clock.now += timedelta(minutes=59)
    assert clocked.sweep_abandoned_uploads() == 0
    assert storage.exists(orphan)

    clock.now += timedelta(minutes=2)
    assert clocked.sweep_abandoned_uploads() == 1
    assert storage.stored_keys() == [kept.source_key]
    assert count(sessions, PendingUpload) == 0
    assert clocked.sweep_abandoned_uploads() == 0


def test_a_storage_fault_during_the_sweep_leaves_the_upload_for_the_next(
    clocked, clock, owner, storage, sessions, monkeypatch
):
    die_after_storing(clocked, monkeypatch)
    with pytest.raises(SystemExit):
        create(clocked, owner)
    clock.now += timedelta(hours=2)
    storage.failing.add("delete")

    with pytest.raises(StorageError):
        clocked.sweep_abandoned_uploads()
    assert count(sessions, PendingUpload) == 1

    storage.failing.clear()
    assert clocked.sweep_abandoned_uploads() == 1
    assert storage.stored_keys() == []


def test_a_failed_upload_whose_cleanup_fails_is_left_to_the_sweep(
    clocked, clock, owner, storage, sessions, monkeypatch
):
    def broken(*_args):
        raise OperationalError("INSERT", {}, Exception("database is gone"))

    monkeypatch.setattr(clocked, "_insert", broken)
    storage.failing.add("delete")
    with pytest.raises(OperationalError):
        create(clocked, owner)
    assert len(storage.stored_keys()) == 1
    assert count(sessions, Task) == 0

    storage.failing.clear()
    clock.now += timedelta(hours=2)
    assert clocked.sweep_abandoned_uploads() == 1
    assert storage.stored_keys() == []


def test_a_bus_outage_leaves_the_request_for_the_next_flush(
    service, owner, sessions, publisher, outbox
):
    publisher.failing = True
    task = create(service, owner)

    [entry] = pending(sessions)
    assert entry.task_id == task.id
    assert entry.attempts == 1
    assert "unreachable" in entry.last_error

    assert outbox.flush().pending == 1
    publisher.failing = False
    result = outbox.flush()
    assert (result.published, result.pending) == (1, 0)
    assert publisher.types() == ["conversion.requested"]
    # A second flush sends nothing again.
    assert outbox.flush().published == 0
    assert len(publisher.sent) == 1


def test_a_topic_the_bus_refuses_holds_back_no_other(
    results, service, owner, sessions, publisher, outbox
):
    first = create(service, owner)
    publisher.refused_topics.add("task-events")
    results.apply(failed(first))
    publisher.failing = True
    later = create(service, owner)
    publisher.failing = False

    result = outbox.flush()

    assert (result.published, result.pending) == (1, 1)
    assert publisher.sent[-1][1]["task_id"] == later.id
    [stuck] = pending(sessions)
    assert (stuck.event_type, stuck.attempts) == ("task.failed", 2)


def test_ids_are_never_reused_after_a_delete(service, owner):
    first = create(service, owner)
    service.delete(owner, first.id)
    assert create(service, owner).id > first.id


# Reading -------------------------------------------------------------------


def test_list_is_the_owners_tasks_in_order_with_a_limit_and_status(
    results, service, owner, storage
):
    other = Owner("2", "grace", "grace@example.com")
    mine = [create(service, owner).id for _ in range(3)]
    create(service, other)
    results.apply(succeeded(service.get(owner, mine[1])))

    assert [t.id for t in service.list(owner, 100, False, None)] == mine
    assert [t.id for t in service.list(owner, 2, True, None)] == mine[::-1][:2]
    assert [t.id for t in service.list(owner, 100, False, "processed")] == [mine[1]]


def test_another_users_task_does_not_exist_for_you(service, owner):
    task = create(service, owner)
    stranger = Owner("2", "grace", "grace@example.com")
    for call in (service.get, service.original, service.converted, service.delete):
        with pytest.raises(TaskNotFound):
            call(stranger, task.id)
    with pytest.raises(TaskNotFound):
        service.reconvert(stranger, task.id, "mp3")


def test_there_is_no_converted_file_until_processed(results, service, owner, storage):
    task = create(service, owner)
    with pytest.raises(FileNotReady, match="uploaded"):
        service.converted(owner, task.id)
    event = succeeded(task)
    put_output(storage, event)
    results.apply(event)
    stored = service.converted(owner, task.id)
    assert stored.key == event["output_key"]
    assert stored.download_name == "song.ogg"
    assert stored.media_type == "audio/ogg"


# Changing ------------------------------------------------------------------


def test_reconvert_starts_a_new_version_and_removes_the_old_output(
    results, service, owner, storage, publisher
):
    task = create(service, owner)
    event = succeeded(task)
    put_output(storage, event)
    results.apply(event)

    again = service.reconvert(owner, task.id, "mp3")

    assert (again.version, again.status, again.new_format) == (2, "uploaded", "mp3")
    assert again.output_key is None and again.processed_at is None
    assert again.duration_seconds is None and again.converted_size_bytes is None
    assert not storage.exists(event["output_key"])
    assert storage.exists(task.source_key)
    request = publisher.sent[-1][1]
    assert (request["type"], request["version"]) == ("conversion.requested", 2)
    assert request["target_format"] == "mp3"


def test_reconvert_after_a_failure_clears_the_error(results, service, owner):
    task = create(service, owner)
    results.apply(failed(task))
    again = service.reconvert(owner, task.id, "flac")
    assert again.error_code is None and again.error_message is None


def test_reconvert_to_the_original_format_is_refused(service, owner):
    task = create(service, owner)
    with pytest.raises(InvalidRequest, match="already wav"):
        service.reconvert(owner, task.id, "wav")
    assert service.get(owner, task.id).version == 1


def test_a_reconvert_during_a_bus_outage_leaves_its_request_for_the_flush(
    service, owner, sessions, publisher, outbox
):
    task = create(service, owner)
    publisher.failing = True

    assert service.reconvert(owner, task.id, "mp3").version == 2

    [entry] = pending(sessions)
    assert entry.event_type == "conversion.requested"
    assert (entry.payload["version"], entry.payload["target_format"]) == (2, "mp3")
    publisher.failing = False
    assert outbox.flush().published == 1
    assert publisher.sent[-1][1]["version"] == 2


def test_a_reconvert_whose_request_is_not_written_changes_nothing(
    results, service, owner, storage, sessions, outbox, monkeypatch
):
    task = create(service, owner)
    event = succeeded(task)
    put_output(storage, event)
    results.apply(event)
    entries = count(sessions, OutboxEntry)
    add = outbox.add

    def unwritable(session, new_event):
        entry = add(session, new_event)
        entry.topic = None  # NOT NULL: the transaction's flush fails
        return entry

    monkeypatch.setattr(outbox, "add", unwritable)
    with pytest.raises(IntegrityError):
        service.reconvert(owner, task.id, "mp3")

    kept = service.get(owner, task.id)
    assert (kept.version, kept.status, kept.new_format) == (1, "processed", "ogg")
    assert kept.output_key == event["output_key"]
    assert storage.exists(event["output_key"])
    assert count(sessions, OutboxEntry) == entries


@pytest.mark.parametrize("status", ["uploaded", "processed", "failed"])
def test_delete_removes_every_file_and_the_task_in_any_status(
    results, service, owner, storage, status
):
    task = create(service, owner)
    if status == "processed":
        event = succeeded(task)
        put_output(storage, event)
        results.apply(event)
    elif status == "failed":
        results.apply(failed(task))
    assert service.get(owner, task.id).status == status

    service.delete(owner, task.id)

    assert storage.stored_keys() == []
    with pytest.raises(TaskNotFound):
        service.get(owner, task.id)


def test_delete_removes_outputs_the_task_never_recorded(service, owner, storage):
    task = create(service, owner)
    # An output written by a conversion whose result never arrived.
    orphan = f"tasks/{task.id}/v1/converted.ogg"
    storage.save(orphan, io.BytesIO(b"OggS"))
    unrelated = create(service, owner)

    service.delete(owner, task.id)

    assert storage.stored_keys() == [unrelated.source_key]


def test_a_storage_fault_during_delete_keeps_the_task(service, owner, storage):
    task = create(service, owner)
    storage.failing.add("delete")
    with pytest.raises(Exception, match="storage unreachable"):
        service.delete(owner, task.id)
    assert service.get(owner, task.id).id == task.id


# Results -------------------------------------------------------------------


def test_a_success_for_the_current_version_processes_the_task(
    results, service, owner, storage, publisher, sessions
):
    task = create(service, owner)
    event = succeeded(task)
    put_output(storage, event)

    outcome = results.apply(event)

    assert outcome.kind == "applied"
    done = service.get(owner, task.id)
    assert done.status == "processed"
    assert done.processed_at is not None
    assert done.output_key == event["output_key"]
    assert (done.converted_size_bytes, done.duration_seconds) == (1234, 2.5)
    assert storage.exists(event["output_key"])

    topic, announced, _ = publisher.sent[-1]
    assert topic == "task-events"
    assert announced["type"] == "task.processed"
    assert announced["owner"] == {
        "id": "1",
        "username": "ada",
        "email": "ada@example.com",
    }
    assert announced["download_path"] == f"/api/tasks/{task.id}/converted"
    assert (announced["size_bytes"], announced["duration_seconds"]) == (1234, 2.5)
    assert pending(sessions) == []


def test_a_failure_for_the_current_version_fails_the_task(
    results, service, owner, publisher
):
    task = create(service, owner)
    assert results.apply(failed(task)).kind == "applied"
    done = service.get(owner, task.id)
    assert done.status == "failed"
    assert done.error_code == "corrupt_input"
    assert "middle of a frame" in done.error_message
    announced = publisher.sent[-1][1]
    assert announced["type"] == "task.failed"
    assert announced["error"]["code"] == "corrupt_input"


def test_a_result_for_an_older_version_is_discarded_with_its_output(
    results, service, owner, storage, publisher
):
    task = create(service, owner)
    service.reconvert(owner, task.id, "mp3")
    old = succeeded(task, version=1)
    put_output(storage, old)
    sent = len(publisher.sent)

    assert results.apply(old).kind == "stale"

    current = service.get(owner, task.id)
    assert (current.status, current.version) == ("uploaded", 2)
    assert not storage.exists(old["output_key"])
    assert len(publisher.sent) == sent


def test_a_result_for_a_deleted_task_is_discarded_with_its_output(
    results, service, owner, storage, publisher
):
    task = create(service, owner)
    service.delete(owner, task.id)
    event = succeeded(task)
    put_output(storage, event)
    sent = len(publisher.sent)

    assert results.apply(event).kind == "deleted"
    assert not storage.exists(event["output_key"])
    assert len(publisher.sent) == sent


def test_a_redelivered_result_changes_nothing(
    results, service, owner, storage, publisher
):
    task = create(service, owner)
    event = succeeded(task)
    put_output(storage, event)
    results.apply(event)
    before = service.get(owner, task.id)
    sent = len(publisher.sent)

    assert results.apply(event).kind == "duplicate"
    assert results.apply(failed(task)).kind == "duplicate"

    after = service.get(owner, task.id)
    assert (after.status, after.processed_at, after.updated_at) == (
        before.status,
        before.processed_at,
        before.updated_at,
    )
    # The live output of the version stays.
    assert storage.exists(event["output_key"])
    assert len(publisher.sent) == sent


@pytest.mark.parametrize("state", ["current", "stale", "deleted"])
def test_a_result_naming_another_tasks_file_changes_and_removes_nothing(
    results, service, owner, storage, publisher, state
):
    task = create(service, owner)
    other = create(service, owner)
    if state == "stale":
        service.reconvert(owner, task.id, "mp3")
    elif state == "deleted":
        service.delete(owner, task.id)
    sent = len(publisher.sent)

    outcome = results.apply(succeeded(task, version=1, key=other.source_key))

    assert outcome.kind == "foreign"
    assert storage.exists(other.source_key)
    assert len(publisher.sent) == sent
    if state != "deleted":
        kept = service.get(owner, task.id)
        assert (kept.status, kept.output_key) == ("uploaded", None)


def test_a_storage_fault_while_discarding_is_raised_for_a_retry(
    results, service, owner, storage
):
    task = create(service, owner)
    service.delete(owner, task.id)
    storage.failing.add("delete")
    with pytest.raises(Exception, match="storage unreachable"):
        results.apply(succeeded(task))
