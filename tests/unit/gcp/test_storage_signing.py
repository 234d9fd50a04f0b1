"""Which signing path GcsStorage takes, without a network: a key, IAM signBlob
with App Engine's default service account, or none (the service streams)."""

from __future__ import annotations

import base64
from urllib.parse import parse_qsl, urlsplit

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage as gcs

from services.shared.gcp.storage import GcsStorage, content_disposition
from services.shared.storage import InvalidKey


class FakeComputeCredentials:
    """Like App Engine's default credentials: a token, no private key; the
    email is "default" until the first refresh asks the metadata server."""

    def __init__(self, fail: bool = False) -> None:
        self.service_account_email = "default"
        self.token = None
        self.valid = False
        self.fail = fail

    def refresh(self, request) -> None:
        if self.fail:
            raise RuntimeError("metadata server unreachable")
        self.service_account_email = "audiomill-prod@appspot.gserviceaccount.com"
        self.token = "ya29.token"
        self.valid = True


@pytest.fixture
def client(monkeypatch):
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    return gcs.Client(project="audiomill-prod", credentials=AnonymousCredentials())


def test_iam_sign_blob_is_used_with_the_default_service_account(monkeypatch, client):
    calls = []

    def fake_sign_message(message, access_token, service_account_email, *rest):
        calls.append((access_token, service_account_email))
        return base64.b64encode(b"signature").decode()

    monkeypatch.setattr(
        "google.cloud.storage._signing._sign_message", fake_sign_message
    )
    storage = GcsStorage(
        "audiomill-files", client=client, signing_credentials=FakeComputeCredentials()
    )

    url = storage.signed_url(
        "tasks/1/out.mp3",
        filename="a.mp3",
        content_type="audio/mpeg",
        expires_seconds=300,
    )

    assert calls == [("ya29.token", "audiomill-prod@appspot.gserviceaccount.com")]
    query = dict(parse_qsl(urlsplit(url).query))
    assert query["X-Goog-Credential"].startswith(
        "audiomill-prod@appspot.gserviceaccount.com/"
    )
    assert query["X-Goog-Signature"] == b"signature".hex()
    assert urlsplit(url).netloc == "storage.googleapis.com"


def test_no_token_means_no_signed_url(client):
    storage = GcsStorage(
        "audiomill-files",
        client=client,
        signing_credentials=FakeComputeCredentials(fail=True),
    )

    assert (
        storage.signed_url(
            "tasks/1/out.mp3",
            filename="a",
            content_type="audio/mpeg",
            expires_seconds=60,
        )
        is None
    )


def test_anonymous_credentials_mean_no_signed_url(client):
    storage = GcsStorage("audiomill-files", client=client)

    url = storage.signed_url(
        "tasks/1/out.mp3", filename="a", content_type="audio/mpeg", expires_seconds=60
    )

    assert url is None


@pytest.mark.parametrize("key", ["", "/abs", "a/../b", "a//b", "a/./b"])
def test_keys_that_could_escape_are_refused(client, key):
    with pytest.raises(InvalidKey):
        GcsStorage("b", client=client).exists(key)


def test_urls_and_arguments():
    storage = GcsStorage.from_url("gs://audiomill-files/prod/")
    assert (storage.bucket_name, storage.prefix) == ("audiomill-files", "prod")
    assert GcsStorage.from_url("gs://audiomill-files").prefix == ""
    with pytest.raises(ValueError):
        GcsStorage.from_url("gs:///nobucket")
    with pytest.raises(ValueError):
        GcsStorage("b", chunk_size=1000)


def test_content_disposition_keeps_a_safe_ascii_fallback():
    assert content_disposition('my "song".mp3') == (
        "attachment; filename=\"my _song_.mp3\"; filename*=UTF-8''my%20%22song%22.mp3"
    )
