"""OidcVerifier fetching its key set over HTTP from a local stand-in for
Google's certs endpoint, as it fetches https://www.googleapis.com/oauth2/v3/certs."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from services.shared.gcp.oidc import OidcError, OidcVerifier

AUDIENCE = "audiomill-push"
ACCOUNT = "audiomill-push@audiomill-prod.iam.gserviceaccount.com"


class CertsServer:
    """Serves a JWKS document on 127.0.0.1 and counts the fetches."""

    def __init__(self) -> None:
        self.jwks: dict = {"keys": []}
        self.fetches = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server hook name
                outer.fetches += 1
                body = json.dumps(outer.jwks).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/oauth2/v3/certs"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def publish(self, *keys: tuple[str, rsa.RSAPrivateKey]) -> None:
        self.jwks = {
            "keys": [
                {
                    **json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(k.public_key())),
                    "kid": kid,
                    "alg": "RS256",
                    "use": "sig",
                }
                for kid, k in keys
            ]
        }

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def certs():
    server = CertsServer()
    yield server
    server.close()


def token(key, kid: str) -> str:
    now = int(time.time())
    payload = {
        "iss": "https://accounts.google.com",
        "aud": AUDIENCE,
        "email": ACCOUNT,
        "email_verified": True,
        "iat": now,
        "exp": now + 600,
    }
    return jwt.encode(payload, key, algorithm="RS256", headers={"kid": kid})


def test_keys_are_fetched_cached_and_refetched_once_for_a_new_kid(certs):
    first, second = (rsa.generate_private_key(65537, 2048) for _ in range(2))
    certs.publish(("kid-1", first))
    verifier = OidcVerifier(
        AUDIENCE, ACCOUNT, certs_url=certs.url, refetch_cooldown_seconds=0
    )

    verifier.verify(token(first, "kid-1"))
    verifier.verify(token(first, "kid-1"))
    assert certs.fetches == 1

    # Google rotates its keys: a token with the new kid makes one refetch.
    certs.publish(("kid-1", first), ("kid-2", second))
    verifier.verify(token(second, "kid-2"))
    assert certs.fetches == 2

    with pytest.raises(OidcError, match="unknown"):
        verifier.verify(token(second, "kid-3"))


def test_unreachable_certs_are_an_oidc_error():
    from deploy.emulators import free_port

    verifier = OidcVerifier(
        AUDIENCE, ACCOUNT, certs_url=f"http://127.0.0.1:{free_port()}/certs"
    )
    key = rsa.generate_private_key(65537, 2048)

    with pytest.raises(OidcError, match="unreachable|unknown") as refused:
        verifier.verify(token(key, "kid-1"))

    # What a push caller reads names no host, port or socket error.
    assert "127.0.0.1" not in str(refused.value)
    assert "rrno" not in str(refused.value)


def test_unknown_key_ids_refetch_at_most_once_per_cooldown(certs):
    key = rsa.generate_private_key(65537, 2048)
    certs.publish(("kid-1", key))
    verifier = OidcVerifier(AUDIENCE, ACCOUNT, certs_url=certs.url)
    verifier.verify(token(key, "kid-1"))

    for n in range(5):
        with pytest.raises(OidcError, match="unknown"):
            verifier.verify(token(key, f"forged-{n}"))

    assert certs.fetches == 1
