"""Checking the OIDC token Pub/Sub puts in `Authorization` on a push request.

A push subscription with an OIDC service account sends a Google-signed ID
token. It is genuine when its RS256 signature verifies against Google's
published keys, it was issued by accounts.google.com, it has not expired, its
`aud` is the audience the subscription was given, and its `email` is the
subscription's service account with `email_verified` true.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import jwt

from services.shared.pushauth import PushUnauthorized

logger = logging.getLogger(__name__)

GOOGLE_CERTS = "https://www.googleapis.com/oauth2/v3/certs"
GOOGLE_ISSUERS = ("accounts.google.com", "https://accounts.google.com")
CLOCK_SKEW_SECONDS = 10


class OidcError(PushUnauthorized):
    """The push request does not carry a valid token; the message says why.

    A `PushUnauthorized`, so push endpoints answer it with 401 and a
    `WWW-Authenticate` challenge.
    """


class KeySource(Protocol):
    def get_signing_key_from_jwt(self, token: str) -> Any: ...


class OidcVerifier:
    """Verifies Google-signed push tokens for one audience and service account.

    `certs_url` is Google's key set (JWKS, `GOOGLE_CERTS` when not given);
    tests point it at a local server.
    Keys are cached for an hour and fetched again when a token names an
    unknown key, at most once per `refetch_cooldown_seconds` so a flood of
    forged key ids cannot turn into a flood of fetches.
    """

    def __init__(
        self,
        audience: str,
        service_account: str,
        certs_url: str | None = None,
        *,
        issuers: tuple[str, ...] = GOOGLE_ISSUERS,
        key_source: KeySource | None = None,
        fetch_timeout_seconds: float = 5.0,
        refetch_cooldown_seconds: float = 30.0,
    ) -> None:
        if not audience:
            raise ValueError("an OIDC audience is required")
        if not service_account:
            raise ValueError("a push service account is required")
        self.audience = audience
        self.service_account = service_account
        self.issuers = issuers
        self._keys: KeySource = key_source or _key_client(
            certs_url or GOOGLE_CERTS, fetch_timeout_seconds, refetch_cooldown_seconds
        )

    def verify_authorization(self, authorization: str | None) -> dict[str, Any]:
        """Verify the token in an `Authorization: Bearer ...` header value."""
        if not authorization:
            raise OidcError("the push request has no Authorization header")
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise OidcError("the Authorization header is not a Bearer token")
        return self.verify(token.strip())

    def verify(self, token: str) -> dict[str, Any]:
        """Return the token's claims, or raise OidcError saying what is wrong."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise OidcError(f"the push token is malformed: {exc}") from exc
        if header.get("alg") != "RS256":
            raise OidcError(f"the push token is signed with {header.get('alg')!r}")

        try:
            signing_key = self._keys.get_signing_key_from_jwt(token)
        except jwt.PyJWKClientConnectionError as exc:
            # The fetch error names hosts and sockets: for the log, not the caller.
            logger.warning("cannot fetch Google's push-token keys: %s", exc)
            raise OidcError("Google's signing keys are unreachable") from exc
        except jwt.PyJWTError as exc:
            raise OidcError(f"the push token's key is unknown: {exc}") from exc

        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                signing_key.key,
                algorithms=["RS256"],
                audience=self.audience,
                leeway=CLOCK_SKEW_SECONDS,
                options={"require": ["exp", "iat", "iss", "aud", "email"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise OidcError("the push token has expired") from exc
        except jwt.InvalidAudienceError as exc:
            raise OidcError("the push token is for another audience") from exc
        except jwt.PyJWTError as exc:
            raise OidcError(f"the push token is invalid: {exc}") from exc

        if claims.get("iss") not in self.issuers:
            raise OidcError("the push token was not issued by Google")
        if claims.get("email") != self.service_account:
            raise OidcError("the push token belongs to another service account")
        if claims.get("email_verified") is not True:
            raise OidcError("the push token's email is not verified")
        return claims


def _key_client(url: str, timeout: float, cooldown: float) -> jwt.PyJWKClient:
    options = {"cache_keys": True, "lifespan": 3600, "timeout": timeout}
    try:
        return jwt.PyJWKClient(url, cooldown_duration=cooldown, **options)
    except TypeError:
        # PyJWT before the refetch cooldown existed refetches on every miss.
        return jwt.PyJWKClient(url, **options)
