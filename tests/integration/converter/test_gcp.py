"""The converter on the Google adapters: ``gs://`` storage on the storage
emulator and ``pubsub://`` publishing on the Pub/Sub emulator, with the real
ffmpeg, through the app."""

from __future__ import annotations

import base64
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from services.converter.main import create_app
from services.converter.settings import ConverterSettings
from services.shared import events, formats
from services.shared.bus import open_publisher
from services.shared.storage import open_storage

from .conftest import PUSH_TOKEN

pytestmark = [pytest.mark.pubsub, pytest.mark.gcs]


def _emulator(variable: str, start_name: str, what: str) -> Iterator[str]:
    from deploy import emulators

    host = os.environ.get(variable)
    if host:
        yield host
        return
    try:
        emulator = getattr(emulators, start_name)()
    except emulators.EmulatorUnavailable as error:
        pytest.skip(f"{what} not available: {error}")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(variable, emulator.host)
        try:
            yield emulator.host
        finally:
            emulator.stop()


@pytest.fixture(scope="module")
def pubsub_host() -> Iterator[str]:
    yield from _emulator("PUBSUB_EMULATOR_HOST", "start_pubsub", "Pub/Sub emulator")


@pytest.fixture(scope="module")
def storage_host() -> Iterator[str]:
    yield from _emulator("STORAGE_EMULATOR_HOST", "start_storage", "storage emulator")


@pytest.fixture
def results(pubsub_host: str):
    """A project with the results topic and a pull subscription on it."""
    from google.cloud import pubsub_v1

    project = f"conv-{uuid.uuid4().hex[:8]}"
    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    topic = publisher.topic_path(project, "conversion-results")
    subscription = subscriber.subscription_path(project, "results-probe")
    publisher.create_topic(name=topic)
    subscriber.create_subscription(name=subscription, topic=topic)

    def pull(expected: int) -> list:
        received = []
        deadline = time.monotonic() + 20
        while len(received) < expected and time.monotonic() < deadline:
            response = subscriber.pull(
                subscription=subscription, max_messages=10, timeout=5
            )
            received.extend(m.message for m in response.received_messages)
            if response.received_messages:
                subscriber.acknowledge(
                    subscription=subscription,
                    ack_ids=[m.ack_id for m in response.received_messages],
                )
        return received

    return project, pull


def test_a_conversion_on_the_google_adapters(
    storage_host: str,
    results,
    make_audio: Callable[..., Path],
    tmp_path: Path,
) -> None:
    from deploy import emulators

    project, pull = results
    bucket = f"conv-{uuid.uuid4().hex[:8]}"
    emulators.create_bucket(storage_host, bucket)
    storage = open_storage(f"gs://{bucket}/audiomill")
    storage.upload_from("tasks/9/original.wav", make_audio(3.0, "wav"))
    work = tmp_path / "work"
    work.mkdir()
    settings = ConverterSettings.from_env(
        {
            "VAR_DIR": str(tmp_path),
            "STORAGE_URL": f"gs://{bucket}/audiomill",
            "BUS_URL": f"pubsub://{project}",
            "PUSH_TOKEN": PUSH_TOKEN,
            "WORK_DIR": str(work),
        }
    )
    publisher = open_publisher(settings.common.bus_url)
    app = create_app(settings, storage=storage, publisher=publisher)
    event = events.new_event(
        "conversion.requested",
        task_id=9,
        version=3,
        source_key="tasks/9/original.wav",
        source_format="wav",
        target_format="mp3",
        filename="tone.wav",
    )
    data, attributes = events.encode(event)
    body = {
        "message": {
            "data": base64.b64encode(data).decode(),
            "attributes": attributes,
            "messageId": "1",
        },
        "subscription": f"projects/{project}/subscriptions/converter",
    }

    with app.test_client() as client:
        response = client.post(
            "/_ah/push-handlers/conversion-requests",
            params={"token": PUSH_TOKEN},
            json=body,
        )
    publisher.close()

    assert response.status_code == 204, response.text
    key = "tasks/9/v3/converted.mp3"
    with storage.open(key) as stored:
        assert formats.sniff(stored.read(formats.SNIFF_BYTES)) == formats.get("mp3")
    [message] = pull(1)
    result = events.decode_push(
        {"message": {"data": base64.b64encode(message.data).decode()}}
    ).event
    assert result["type"] == message.attributes["type"] == "conversion.succeeded"
    assert result["output_key"] == key
    assert result["size_bytes"] == storage.size(key)
    assert result["duration_seconds"] == pytest.approx(3.0, abs=0.1)
    assert list(work.iterdir()) == []
