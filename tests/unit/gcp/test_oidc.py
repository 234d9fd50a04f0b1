"""OIDC push-token checks with tokens signed by keys made in the test."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from services.shared.gcp.oidc import OidcError, OidcVerifier
from services.shared.pushauth import PushUnauthorized, PushVerifier

AUDIENCE = "https://converter-dot-audiomill-prod.appspot.com/_ah/push-handlers"
ACCOUNT = "audiomill-push@audiomill-prod.iam.gserviceaccount.com"


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


GOOGLE_KEY = new_key()
OTHER_KEY = new_key()


class FakeKeySource:
    """Google's key set, holding the public half of GOOGLE_KEY as `kid-1`."""

    def __init__(self) -> None:
        self.keys = {"kid-1": jwt.PyJWK.from_dict(public_jwk(GOOGLE_KEY, "kid-1"))}

    def get_signing_key_from_jwt(self, token: str) -> jwt.PyJWK:
        kid = jwt.get_unverified_header(token).get("kid")
        if kid not in self.keys:
            raise jwt.PyJWKClientError(
                f'Unable to find a signing key that matches: "{kid}"'
            )
        return self.keys[kid]


def public_jwk(key: rsa.RSAPrivateKey, kid: str) -> dict:
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    return {**jwk, "kid": kid, "alg": "RS256", "use": "sig"}


def claims(**overrides) -> dict:
    now = int(time.time())
    base = {
        "iss": "https://accounts.google.com",
        "aud": AUDIENCE,
        "azp": "1234567890",
        "sub": "1234567890",
        "email": ACCOUNT,
        "email_verified": True,
        "iat": now,
        "exp": now + 3600,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign(payload: dict, key=GOOGLE_KEY, kid: str = "kid-1", alg: str = "RS256") -> str:
    return jwt.encode(payload, key, algorithm=alg, headers={"kid": kid})


@pytest.fixture
def verifier() -> OidcVerifier:
    return OidcVerifier(AUDIENCE, ACCOUNT, key_source=FakeKeySource())


def test_a_genuine_push_token_passes_and_returns_its_claims(verifier):
    token = sign(claims())

    verified = verifier.verify(token)

    assert verified["email"] == ACCOUNT
    assert verifier.verify_authorization(f"Bearer {token}")["aud"] == AUDIENCE


def test_the_bare_issuer_form_is_accepted(verifier):
    assert verifier.verify(sign(claims(iss="accounts.google.com")))


def _unsigned(payload: dict) -> str:
    def part(obj: dict) -> str:
        raw = json.dumps(obj).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT', 'kid': 'kid-1'})}.{part(payload)}."


def _hs256_with_public_key() -> str:
    public_pem = GOOGLE_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )

    def part(obj: dict) -> str:
        raw = json.dumps(obj).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    import hashlib
    import hmac

    head = part({"alg": "HS256", "typ": "JWT", "kid": "kid-1"})
    body = part(claims())
    mac = hmac.new(public_pem, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


BAD_TOKENS = {
    "wrong audience": (sign(claims(aud="https://elsewhere.example")), "audience"),
    "wrong service account": (
        sign(claims(email="someone@evil.iam.gserviceaccount.com")),
        "another service account",
    ),
    "email not verified": (sign(claims(email_verified=False)), "not verified"),
    "email_verified missing": (sign(claims(email_verified=None)), "not verified"),
    "email verified as a string": (sign(claims(email_verified="true")), "not verified"),
    "no email": (sign(claims(email=None)), "email"),
    "expired": (
        sign(claims(iat=int(time.time()) - 7200, exp=int(time.time()) - 3600)),
        "expired",
    ),
    "no expiry": (sign(claims(exp=None)), "exp"),
    "another issuer": (sign(claims(iss="https://issuer.example")), "not issued by"),
    "signed by another key": (sign(claims(), key=OTHER_KEY), "invalid"),
    "unknown key id": (sign(claims(), kid="kid-9"), "unknown"),
    "alg none": (_unsigned(claims()), "'none'"),
    "HS256 with the public key as secret": (_hs256_with_public_key(), "'HS256'"),
    "not a token": ("not-a-jwt", "malformed"),
}


@pytest.mark.parametrize("case", list(BAD_TOKENS))
def test_a_bad_push_token_is_refused_with_a_reason(verifier, case):
    token, reason = BAD_TOKENS[case]

    with pytest.raises(OidcError, match=reason):
        verifier.verify(token)


@pytest.mark.parametrize(
    "header", [None, "", "Bearer", "Bearer  ", "Basic dXNlcjpwYXNz", "token abc"]
)
def test_an_authorization_header_without_a_bearer_token_is_refused(verifier, header):
    with pytest.raises(OidcError):
        verifier.verify_authorization(header)


def test_the_push_verifier_answers_oidc_failures_as_unauthorized(verifier):
    push = PushVerifier("oidc", oidc=verifier)
    good = sign(claims())

    push.verify({"authorization": f"Bearer {good}"}, {})
    with pytest.raises(PushUnauthorized):
        push.verify({"authorization": f"Bearer {sign(claims(aud='x'))}"}, {})
    with pytest.raises(PushUnauthorized):
        push.verify({}, {"token": "a shared token does not count in oidc mode"})
    assert push.challenge.startswith("Bearer")


def test_audience_and_service_account_are_required():
    with pytest.raises(ValueError, match="audience"):
        OidcVerifier("", ACCOUNT, key_source=FakeKeySource())
    with pytest.raises(ValueError, match="service account"):
        OidcVerifier(AUDIENCE, "", key_source=FakeKeySource())
