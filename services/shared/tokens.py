"""RS256 access tokens: auth signs them, every other service verifies them
with the public keys auth publishes as a JWK set."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

ALGORITHM = "RS256"
REQUIRED_CLAIMS = ["exp", "iat", "iss", "aud", "sub"]
log = logging.getLogger(__name__)


class InvalidToken(Exception):
    """The token cannot be trusted; the message says why, for the client."""


class KeysUnavailable(Exception):
    """The token names a key we do not hold and the key set could not be
    fetched: the token may be good, so the caller should try again later."""


def generate_key_pem() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_or_create_key(path: Path) -> bytes:
    """The PEM at ``path``, made (readable by its owner only) on first use.

    The key is written to a temporary file and linked into place, so a
    process racing this one reads either no file or the whole key, and the
    first to link wins.
    """
    path = Path(path)
    if path.exists():
        return path.read_bytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".key-")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(generate_key_pem())
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)
    return path.read_bytes()


def _key_id(public_key: rsa.RSAPublicKey) -> str:
    """The RFC 7638 thumbprint of the public key."""
    numbers = json.loads(RSAAlgorithm.to_jwk(public_key))
    canonical = json.dumps(
        {"e": numbers["e"], "kty": "RSA", "n": numbers["n"]}, separators=(",", ":")
    )
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class TokenSigner:
    def __init__(
        self, private_key_pem: bytes, issuer: str, audience: str, ttl_seconds: int
    ) -> None:
        key = serialization.load_pem_private_key(private_key_pem, password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("the signing key must be an RSA private key")
        self._key = key
        self.issuer = issuer
        self.audience = audience
        self.ttl_seconds = ttl_seconds
        self.kid = _key_id(key.public_key())

    def issue(self, sub: str, username: str, email: str) -> tuple[str, int]:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": sub,
            "username": username,
            "email": email,
            "iat": now,
            "nbf": now,
            "exp": now + self.ttl_seconds,
        }
        token = jwt.encode(
            claims, self._key, algorithm=ALGORITHM, headers={"kid": self.kid}
        )
        return token, self.ttl_seconds

    def jwks(self) -> dict[str, Any]:
        jwk = json.loads(RSAAlgorithm.to_jwk(self._key.public_key()))
        jwk.update({"kid": self.kid, "use": "sig", "alg": ALGORITHM})
        return {"keys": [jwk]}

    def verifier(self) -> JwksVerifier:
        """A verifier that trusts this signer's key, without a network."""
        return JwksVerifier.from_jwks(self.jwks(), self.issuer, self.audience)


class JwksVerifier:
    """Verifies RS256 tokens against a JWK set fetched over HTTP and cached.

    An unknown ``kid`` triggers one refetch (keys rotate), at most once per
    ``refetch_interval`` seconds so a flood of forged kids cannot turn into a
    flood of requests to auth.
    """

    def __init__(
        self,
        jwks_url: str | None,
        issuer: str,
        audience: str,
        http: httpx.Client | None = None,
        refetch_interval: float = 30.0,
        leeway: int = 30,
    ) -> None:
        self.jwks_url = jwks_url
        self.issuer = issuer
        self.audience = audience
        self._http = http
        self._keys: dict[str, Any] = {}
        self._fetched_at = float("-inf")
        self._fetch_failed = False
        self._refetch_interval = refetch_interval
        self._leeway = leeway
        self._lock = threading.Lock()

    @classmethod
    def from_jwks(
        cls, jwks: dict[str, Any], issuer: str, audience: str
    ) -> JwksVerifier:
        verifier = cls(None, issuer, audience)
        verifier._keys = _parse_jwks(jwks)
        return verifier

    def _refresh(self) -> None:
        if self.jwks_url is None:
            return
        with self._lock:
            if time.monotonic() - self._fetched_at < self._refetch_interval:
                return
            self._fetched_at = time.monotonic()
            try:
                response = self._get(self.jwks_url)
                response.raise_for_status()
                self._keys = _parse_jwks(response.json())
                self._fetch_failed = False
            except (httpx.HTTPError, jwt.PyJWTError, ValueError, KeyError) as error:
                self._fetch_failed = True
                log.warning(
                    "cannot fetch signing keys from %s: %s", self.jwks_url, error
                )

    def _get(self, url: str) -> httpx.Response:
        if self._http is not None:
            return self._http.get(url)
        with httpx.Client(timeout=5.0) as http:
            return http.get(url)

    def _key_for(self, kid: str) -> Any:
        if kid not in self._keys:
            self._refresh()
        try:
            return self._keys[kid]
        except KeyError:
            if self._fetch_failed:
                raise KeysUnavailable(
                    f"the signing keys at {self.jwks_url} cannot be fetched"
                ) from None
            raise InvalidToken("token signed by an unknown key") from None

    def verify(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken("malformed token") from None
        if header.get("alg") != ALGORITHM:
            raise InvalidToken(f"tokens must be signed with {ALGORITHM}")
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise InvalidToken("token header has no key id")
        try:
            return jwt.decode(
                token,
                self._key_for(kid),
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self._leeway,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("token has expired; log in again") from None
        except jwt.InvalidIssuerError:
            raise InvalidToken("token was issued by someone else") from None
        except jwt.InvalidAudienceError:
            raise InvalidToken("token is meant for another audience") from None
        except jwt.PyJWTError as error:
            raise InvalidToken(f"invalid token: {error}") from None


def _parse_jwks(jwks: dict[str, Any]) -> dict[str, Any]:
    keys = {}
    for jwk in jwks["keys"]:
        if jwk.get("kty") == "RSA" and "kid" in jwk:
            keys[jwk["kid"]] = RSAAlgorithm.from_jwk(json.dumps(jwk))
    return keys
