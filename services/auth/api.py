"""The HTTP edge: one method per ``operationId`` in ``openapi/auth.yaml``."""

from __future__ import annotations

from typing import Any

from services.auth.accounts import Accounts, check_signup, login_identifier
from services.auth.errors import Unauthenticated
from services.auth.models import User
from services.shared.tokens import InvalidToken, JwksVerifier, TokenSigner

LOGIN_HINT = "log in again with POST /api/auth/login"
JWKS_MAX_AGE_SECONDS = 300
# Operations also answer problem+json, so each success names its type.
JSON = {"Content-Type": "application/json"}


def user_view(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "username": user.username,
        "email": user.email,
        "created_at": user.created_at.isoformat(),
    }


class AuthApi:
    def __init__(
        self, accounts: Accounts, signer: TokenSigner, verifier: JwksVerifier
    ) -> None:
        self._accounts = accounts
        self._signer = signer
        self._verifier = verifier

    def signup(self, body: dict[str, Any]):
        user = self._accounts.signup(check_signup(body))
        return user_view(user), 201, {**JSON, "Location": "/api/auth/me"}

    def login(self, body: dict[str, Any]):
        identifier = login_identifier(body)
        user = self._accounts.login(identifier, body["password"])
        token, expires_in = self._signer.issue(str(user.id), user.username, user.email)
        body = {"token": token, "token_type": "Bearer", "expires_in": expires_in}
        return body, 200, JSON

    def jwks(self):
        cache = f"public, max-age={JWKS_MAX_AGE_SECONDS}"
        return self._signer.jwks(), 200, {**JSON, "Cache-Control": cache}

    def me(self, user: str):
        account = self._accounts.get(int(user))
        if account is None:
            raise Unauthenticated(
                f"The account this token was issued for no longer exists; {LOGIN_HINT}."
            )
        return user_view(account), 200, JSON

    def bearer_info(self, token: str) -> dict[str, Any]:
        """The claims of a valid access token (connexion's bearer check)."""
        try:
            claims = self._verifier.verify(token)
        except InvalidToken as error:
            raise Unauthenticated(
                f"The bearer token was refused ({error}); {LOGIN_HINT}."
            ) from None
        if not str(claims.get("sub", "")).isdigit():
            raise Unauthenticated(f"The bearer token names no account; {LOGIN_HINT}.")
        return claims
