"""The auth service's exceptions. The HTTP edge maps each to one status."""

from __future__ import annotations


class AuthError(Exception):
    """Base of every error the auth service reports to a client. The message
    is the problem's ``detail``: it says what to change."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidSignup(AuthError):
    """A sign-up breaks a rule: a missing or malformed field, a short password,
    two passwords that differ."""


class InvalidLogin(AuthError):
    """A log-in request that names no account."""


class AccountTaken(AuthError):
    """The username or email belongs to another account."""


class InvalidCredentials(AuthError):
    """No account has this name and password; unknown and wrong look the same."""

    def __init__(self) -> None:
        super().__init__(
            "The username or email and password do not match an account; "
            "check them and try again."
        )


class TooManyAttempts(AuthError):
    """The account had too many failed log-ins within the throttle window."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            f"Too many failed log-ins for this account; try again in "
            f"{retry_after} seconds."
        )
        self.retry_after = retry_after


class Unauthenticated(AuthError):
    """The bearer token is missing, malformed, expired or not ours."""


class AccountsUnavailable(AuthError):
    """The account database does not answer; the request may be retried."""

    def __init__(self) -> None:
        super().__init__(
            "The account database does not answer; try again in a few seconds."
        )
