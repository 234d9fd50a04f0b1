"""Every push endpoint, built by its service's own factory with PUSH_AUTH=oidc,
checks the Google-signed token: keys fetched from a local stand-in for
Google's key set, tokens signed by a key made here."""

from __future__ import annotations

import importlib
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from services.shared.gcp import oidc

from .test_oidc_certs import CertsServer

ACCOUNT = "audiomill-push@audiomill-prod.iam.gserviceaccount.com"
PUSH_PATHS = {
    "converter": "/_ah/push-handlers/conversion-requests",
    "tasks": "/_ah/push-handlers/conversion-results",
    "notifier": "/_ah/push-handlers/task-events",
}
KEY = rsa.generate_private_key(65537, 2048)


def audience(service: str) -> str:
    name = "default" if service == "tasks" else service
    return f"https://{name}-dot-audiomill-prod.appspot.com"


def token(aud: str, email: str = ACCOUNT, key=KEY) -> str:
    now = int(time.time())
    claims = {
        "iss": "https://accounts.google.com",
        "aud": aud,
        "email": email,
        "email_verified": True,
        "iat": now,
        "exp": now + 600,
    }
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1"})


@pytest.fixture
def certs(monkeypatch):
    server = CertsServer()
    server.publish(("k1", KEY))
    monkeypatch.setattr(oidc, "GOOGLE_CERTS", server.url)
    yield server
    server.close()


@pytest.fixture(params=list(PUSH_PATHS))
def push_client(request, certs, monkeypatch, tmp_path):
    service = request.param
    from deploy.emulators import free_port

    for name, value in {
        "VAR_DIR": str(tmp_path),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}",
        "STORAGE_URL": f"file://{tmp_path / 'storage'}",
        "BUS_URL": f"relay://127.0.0.1:{free_port()}",
        "MAIL_URL": f"file://{tmp_path / 'outbox'}",
        "PUSH_AUTH": "oidc",
        "PUSH_AUDIENCE": audience(service),
        "PUSH_SERVICE_ACCOUNT": ACCOUNT,
        "AUTH_JWKS_URL": f"http://127.0.0.1:{free_port()}/api/auth/jwks.json",
        "OUTBOX_FLUSH_SECONDS": "3600",
    }.items():
        monkeypatch.setenv(name, value)
    module = importlib.import_module(f"services.{service}.main")
    app = module.create_app()
    return service, app.test_client()


def envelope() -> dict:
    return {
        "message": {"data": "e30=", "attributes": {}, "messageId": "1"},
        "subscription": "projects/audiomill-prod/subscriptions/x",
    }


def test_a_genuine_token_gets_past_push_auth(push_client):
    service, client = push_client

    response = client.post(
        PUSH_PATHS[service],
        json=envelope(),
        headers={"Authorization": f"Bearer {token(audience(service))}"},
    )

    # Past push auth, the empty event is a message that can never succeed:
    # logged and acked, not refused.
    assert response.status_code == 204, response.text


@pytest.mark.parametrize(
    "case", ["no token", "another service's audience", "another account", "bad key"]
)
def test_a_bad_token_is_401_with_a_challenge(push_client, case):
    service, client = push_client
    other = "notifier" if service != "notifier" else "converter"
    headers = {
        "no token": {},
        "another service's audience": {
            "Authorization": f"Bearer {token(audience(other))}"
        },
        "another account": {
            "Authorization": f"Bearer {token(audience(service), 'x@evil.example')}"
        },
        "bad key": {
            "Authorization": "Bearer "
            + token(audience(service), key=rsa.generate_private_key(65537, 2048))
        },
    }[case]

    response = client.post(PUSH_PATHS[service], json=envelope(), headers=headers)

    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.headers["content-type"].startswith("application/problem+json")
