"""The converter through its ASGI app: push auth, decoding, statuses."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.converter.errors import CorruptInput
from services.converter.main import create_app
from services.shared.config import ConfigError
from services.shared.storage import FileStorage

from .conftest import PUSH_TOKEN

PUSH_PATH = "/_ah/push-handlers/conversion-requests"


@pytest.fixture
def app(settings, storage, publisher, transcoder):
    storage.objects["tasks/7/original.mp3"] = b"original"
    return create_app(
        settings, storage=storage, publisher=publisher, transcoder=transcoder
    )


@pytest.fixture
def client(app):
    with app.test_client() as client:
        yield client


@pytest.fixture
def push(client) -> Callable[..., httpx.Response]:
    def push(body: Any, token: str | None = PUSH_TOKEN) -> httpx.Response:
        params = {"token": token} if token is not None else {}
        return client.post(PUSH_PATH, params=params, json=body)

    return push


def test_a_request_is_converted_and_acked(
    push, make_request, make_envelope, publisher, storage
) -> None:
    response = push(make_envelope(make_request(target_format="flac")))

    assert response.status_code == 204, response.text
    assert "tasks/7/v2/converted.flac" in storage.objects
    [(_, event, _)] = publisher.sent
    assert event["type"] == "conversion.succeeded"


def test_a_redelivered_request_transcodes_once(
    push, make_request, make_envelope, publisher, transcoder
) -> None:
    envelope = make_envelope(make_request())
    assert push(envelope).status_code == 204
    assert push(envelope).status_code == 204
    assert transcoder.calls == 1
    assert len(publisher.sent) == 2


@pytest.mark.parametrize("token", [None, "", "wrong", PUSH_TOKEN + "x"])
def test_a_push_without_the_token_is_401(
    push, make_request, make_envelope, publisher, token
) -> None:
    response = push(make_envelope(make_request()), token=token)

    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"].startswith("Token")
    assert publisher.sent == []


def _envelope_of(data: bytes) -> dict[str, Any]:
    return {"message": {"data": base64.b64encode(data).decode(), "messageId": "m"}}


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"message": "not an object"},
        {"message": {"data": "%%% not base64"}},
        _envelope_of(b"not json"),
        _envelope_of(b"[1, 2]"),
        _envelope_of(json.dumps({"type": "conversion.requested"}).encode()),
        _envelope_of(json.dumps({"type": "no.such.event"}).encode()),
        _envelope_of(json.dumps({"type": ["conversion.requested"]}).encode()),
    ],
)
def test_a_message_that_can_never_succeed_is_logged_and_acked(
    push, publisher, transcoder, body, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        response = push(body)

    assert response.status_code == 204, response.text
    assert publisher.sent == []
    assert transcoder.calls == 0
    assert "invalid conversion request" in caplog.text


def test_an_event_of_another_topic_is_acked_unhandled(
    push, make_envelope, publisher, transcoder
) -> None:
    from services.shared import events

    stray = events.new_event(
        "conversion.failed", task_id=7, version=2, code="timeout", message="Slow."
    )
    assert push(make_envelope(stray)).status_code == 204
    assert publisher.sent == [] and transcoder.calls == 0


def test_a_corrupt_file_is_reported_and_acked(
    push, make_request, make_envelope, publisher, transcoder
) -> None:
    transcoder.error = CorruptInput("The file could not be decoded.")

    response = push(make_envelope(make_request()))

    assert response.status_code == 204
    [(_, event, _)] = publisher.sent
    assert (event["type"], event["code"]) == ("conversion.failed", "corrupt_input")


def test_a_storage_fault_is_503_for_redelivery(
    push, make_request, make_envelope, storage
) -> None:
    storage.fail.add("download_to")

    response = push(make_envelope(make_request()))

    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert "retry-after" in response.headers
    assert "download_to" not in response.text, "no internal text reaches the caller"


def test_a_bus_fault_is_503_for_redelivery(
    push, make_request, make_envelope, publisher
) -> None:
    publisher.failing = True
    assert push(make_envelope(make_request())).status_code == 503


def test_a_deleted_task_is_acked(push, make_request, make_envelope, storage) -> None:
    storage.objects.clear()
    assert push(make_envelope(make_request())).status_code == 204


def test_health(client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_a_missing_push_token_stops_the_app_at_start(tmp_path: Path) -> None:
    from services.converter.settings import ConverterSettings

    with pytest.raises(ConfigError, match="PUSH_TOKEN"):
        ConverterSettings.from_env({"VAR_DIR": str(tmp_path)})


def test_a_bad_timeout_stops_the_app_at_start(tmp_path: Path) -> None:
    from services.converter.settings import ConverterSettings

    with pytest.raises(ConfigError, match="TRANSCODE_TIMEOUT_SECONDS"):
        ConverterSettings.from_env(
            {"PUSH_TOKEN": "t", "TRANSCODE_TIMEOUT_SECONDS": "soon"}
        )


def test_real_ffmpeg_and_file_storage_through_the_app(
    settings, publisher, make_request, make_envelope, make_audio, tmp_path: Path
) -> None:
    storage = FileStorage(tmp_path / "storage")
    storage.upload_from("tasks/7/original.mp3", make_audio("mp3", 1.5))
    app = create_app(settings, storage=storage, publisher=publisher)

    with app.test_client() as client:
        response = client.post(
            PUSH_PATH,
            params={"token": PUSH_TOKEN},
            json=make_envelope(make_request(target_format="m4a")),
        )

    assert response.status_code == 204, response.text
    [(_, event, _)] = publisher.sent
    assert event["output_key"] == "tasks/7/v2/converted.m4a"
    assert event["size_bytes"] == storage.size("tasks/7/v2/converted.m4a")
    assert event["duration_seconds"] == pytest.approx(1.5, abs=0.1)
    assert list(settings.work_dir.iterdir()) == []
