"""Who may call a push endpoint.

``PUSH_AUTH=token``: a shared secret in the endpoint's query string, as
configured on the relay or on an emulator subscription; compared in
constant time. ``PUSH_AUTH=oidc``: the Google-signed OIDC token Pub/Sub puts
in ``Authorization``, checked for signature, audience and service account.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Protocol

from services.shared.config import CommonSettings


class PushUnauthorized(Exception):
    """The push request did not prove it comes from our subscription."""


class TokenVerifier(Protocol):
    def verify(self, token: str) -> object:
        """Raise PushUnauthorized unless ``token`` is a valid push token."""


class PushVerifier:
    def __init__(
        self,
        mode: str,
        shared_token: str | None = None,
        oidc: TokenVerifier | None = None,
        oidc_errors: tuple[type[Exception], ...] = (),
    ) -> None:
        self.mode = mode
        self._shared = shared_token
        self._oidc = oidc
        self._oidc_errors = (PushUnauthorized, *oidc_errors)

    @classmethod
    def from_settings(cls, common: CommonSettings) -> PushVerifier:
        common.check_push_auth()
        if common.push_auth == "oidc":
            from services.shared.gcp.oidc import OidcError, OidcVerifier

            return cls(
                "oidc",
                oidc=OidcVerifier(
                    audience=common.push_audience,
                    service_account=common.push_service_account,
                ),
                oidc_errors=(OidcError,),
            )
        return cls("token", shared_token=common.push_token)

    @property
    def challenge(self) -> str:
        """The ``WWW-Authenticate`` value a 401 carries."""
        if self.mode == "oidc":
            return 'Bearer realm="pubsub-push"'
        return 'Token realm="pubsub-push", param="token"'

    def verify(self, headers: Mapping[str, str], query: Mapping[str, str]) -> None:
        if self.mode == "token":
            given = query.get("token") or ""
            if not self._shared or not hmac.compare_digest(
                given.encode(), self._shared.encode()
            ):
                raise PushUnauthorized("missing or wrong push token")
            return
        scheme, _, token = (headers.get("authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise PushUnauthorized("push request carries no bearer token")
        assert self._oidc is not None
        try:
            self._oidc.verify(token)
        except self._oidc_errors as error:
            raise PushUnauthorized(str(error)) from None
