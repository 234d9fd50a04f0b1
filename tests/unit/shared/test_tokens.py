import base64
import json
import time

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from services.shared.tokens import (
    InvalidToken,
    JwksVerifier,
    KeysUnavailable,
    TokenSigner,
    generate_key_pem,
    load_or_create_key,
)

ISSUER, AUDIENCE = "audiomill-auth", "audiomill"


@pytest.fixture(scope="module")
def signer():
    return TokenSigner(generate_key_pem(), ISSUER, AUDIENCE, 3600)


def test_issued_tokens_carry_the_claims_and_kid(signer):
    token, expires_in = signer.issue("42", "ada", "ada@example.com")

    claims = signer.verifier().verify(token)

    assert expires_in == 3600
    assert jwt.get_unverified_header(token)["kid"] == signer.kid
    assert {k: claims[k] for k in ("sub", "username", "email", "iss", "aud")} == {
        "sub": "42",
        "username": "ada",
        "email": "ada@example.com",
        "iss": ISSUER,
        "aud": AUDIENCE,
    }


def _public_pem(signer):
    key = jwt.algorithms.RSAAlgorithm.from_jwk(json.dumps(signer.jwks()["keys"][0]))
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_alg_none_is_refused(signer):
    forged = jwt.encode(
        {"sub": "1"}, None, algorithm="none", headers={"kid": signer.kid}
    )
    with pytest.raises(InvalidToken, match="RS256"):
        signer.verifier().verify(forged)


def test_hs256_with_the_public_key_as_secret_is_refused(signer):
    header = base64.urlsafe_b64encode(
        json.dumps({"alg": "HS256", "kid": signer.kid}).encode()
    ).rstrip(b"=")
    payload = base64.urlsafe_b64encode(json.dumps({"sub": "1"}).encode()).rstrip(b"=")
    import hashlib
    import hmac

    mac = hmac.new(_public_pem(signer), header + b"." + payload, hashlib.sha256)
    forged = b".".join(
        [header, payload, base64.urlsafe_b64encode(mac.digest()).rstrip(b"=")]
    ).decode()
    with pytest.raises(InvalidToken, match="RS256"):
        signer.verifier().verify(forged)


@pytest.mark.parametrize(
    ("issuer", "audience", "ttl", "message"),
    [
        ("someone-else", AUDIENCE, 3600, "issued by someone else"),
        (ISSUER, "other", 3600, "another audience"),
        (ISSUER, AUDIENCE, -120, "expired"),
    ],
)
def test_claims_are_checked(signer, issuer, audience, ttl, message):
    other = TokenSigner(generate_key_pem(), issuer, audience, ttl)
    token, _ = other.issue("1", "u", "u@example.com")
    verifier = JwksVerifier.from_jwks(other.jwks(), ISSUER, AUDIENCE)
    with pytest.raises(InvalidToken, match=message):
        verifier.verify(token)


def test_a_token_from_an_unknown_key_is_refused(signer):
    stranger = TokenSigner(generate_key_pem(), ISSUER, AUDIENCE, 60)
    token, _ = stranger.issue("1", "u", "u@example.com")
    with pytest.raises(InvalidToken, match="unknown key"):
        signer.verifier().verify(token)


def test_an_unknown_kid_refetches_the_key_set_once(signer):
    rotated = TokenSigner(generate_key_pem(), ISSUER, AUDIENCE, 60)
    served = [signer.jwks()]
    calls = []

    def handler(request):
        calls.append(time.monotonic())
        return httpx.Response(200, json=served[-1])

    http = httpx.Client(transport=httpx.MockTransport(handler))
    verifier = JwksVerifier("http://auth/jwks.json", ISSUER, AUDIENCE, http=http)
    verifier._refetch_interval = 0

    verifier.verify(signer.issue("1", "u", "u@example.com")[0])
    served.append(rotated.jwks())
    verifier.verify(rotated.issue("2", "v", "v@example.com")[0])
    verifier.verify(rotated.issue("3", "w", "w@example.com")[0])

    assert len(calls) == 2


def test_a_refetch_without_a_given_client_closes_the_one_it_opens(signer, monkeypatch):
    opened = []

    class RecordingClient(httpx.Client):
        def __init__(self, **kwargs):
            super().__init__(
                transport=httpx.MockTransport(
                    lambda request: httpx.Response(200, json=signer.jwks())
                ),
                **kwargs,
            )
            opened.append(self)

    monkeypatch.setattr(httpx, "Client", RecordingClient)
    verifier = JwksVerifier("http://auth/jwks.json", ISSUER, AUDIENCE)

    verifier.verify(signer.issue("1", "u", "u@example.com")[0])

    assert len(opened) == 1
    assert opened[0].is_closed


def test_a_malformed_key_set_is_a_failed_fetch_not_a_crash(signer):
    broken = {"keys": [{"kty": "RSA", "kid": signer.kid, "n": "AQAB"}]}
    http = httpx.Client(
        transport=httpx.MockTransport(lambda request: httpx.Response(200, json=broken))
    )
    verifier = JwksVerifier("http://auth/jwks.json", ISSUER, AUDIENCE, http=http)

    with pytest.raises(KeysUnavailable, match="cannot be fetched"):
        verifier.verify(signer.issue("1", "u", "u@example.com")[0])


def test_load_or_create_key_keeps_the_same_key(tmp_path):
    path = tmp_path / "k" / "auth-key.pem"
    first = load_or_create_key(path)
    assert load_or_create_key(path) == first
    assert path.stat().st_mode & 0o077 == 0


def test_racing_key_creations_agree_on_one_whole_key(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    path = tmp_path / "auth-key.pem"
    with ThreadPoolExecutor(8) as pool:
        keys = set(pool.map(lambda _: load_or_create_key(path), range(16)))

    assert len(keys) == 1
    TokenSigner(keys.pop(), ISSUER, AUDIENCE, 60)
    assert [p.name for p in tmp_path.iterdir()] == ["auth-key.pem"]


def test_an_unknown_kid_while_the_key_set_cannot_be_fetched_is_not_a_bad_token(
    signer,
):
    answers = [httpx.Response(503), httpx.Response(200, json=signer.jwks())]
    http = httpx.Client(transport=httpx.MockTransport(lambda _: answers.pop(0)))
    verifier = JwksVerifier("http://auth/jwks.json", ISSUER, AUDIENCE, http=http)
    verifier._refetch_interval = 0
    token, _ = signer.issue("1", "u", "u@example.com")

    with pytest.raises(KeysUnavailable):
        verifier.verify(token)
    assert verifier.verify(token)["sub"] == "1"
