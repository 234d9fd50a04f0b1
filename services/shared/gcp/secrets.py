"""Settings whose value is a Secret Manager reference, resolved once at start.

A setting may hold `sm://projects/P/secrets/S/versions/V` instead of its value
(V may be `latest`). `resolve_environ` swaps every such value for the secret's
payload, so no secret needs to be written in `app.yaml` or any committed file.

Run a command with its environment resolved:

    python -m services.shared.gcp.secrets gunicorn ...

The process is replaced by the command (exec), so signals and exit codes are
those of the command itself.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Callable, Mapping

logger = logging.getLogger(__name__)

PREFIX = "sm://"
_REFERENCE = re.compile(r"^sm://(projects/[^/]+/secrets/[^/]+/versions/[^/]+)$")


class SecretError(Exception):
    """A reference is malformed or its secret cannot be read."""


def is_reference(value: str) -> bool:
    return value.startswith(PREFIX)


def resource_name(reference: str) -> str:
    """`sm://projects/P/secrets/S/versions/V` -> `projects/P/secrets/S/versions/V`."""
    match = _REFERENCE.match(reference)
    if match is None:
        raise SecretError(
            f"{reference!r} is not sm://projects/PROJECT/secrets/NAME/versions/VERSION"
        )
    return match.group(1)


def resolve_environ(
    environ: Mapping[str, str],
    access: Callable[[str], str] | None = None,
) -> dict[str, str]:
    """A copy of `environ` with every Secret Manager reference replaced."""
    resolved = dict(environ)
    references = {name: value for name, value in environ.items() if is_reference(value)}
    if not references:
        return resolved
    access = access or SecretManagerAccess()
    for name, value in sorted(references.items()):
        try:
            resolved[name] = access(resource_name(value))
        except SecretError as exc:
            raise SecretError(f"{name}: {exc}") from exc
        logger.info("setting %s read from Secret Manager", name)
    return resolved


class SecretManagerAccess:
    """Reads one secret version with google-cloud-secret-manager."""

    def __init__(self, client: object = None) -> None:
        self._client = client

    def __call__(self, name: str) -> str:
        client = self._client or self._make_client()
        try:
            response = client.access_secret_version(request={"name": name})
        except Exception as exc:  # any fault: name the secret
            raise SecretError(f"cannot read {name}: {exc}") from exc
        return response.payload.data.decode("utf-8")

    def _make_client(self) -> object:
        try:
            from google.cloud import secretmanager
        except ImportError as exc:
            raise SecretError(
                "a setting names a Secret Manager secret but "
                "google-cloud-secret-manager is not installed"
            ) from exc
        self._client = secretmanager.SecretManagerServiceClient()
        return self._client


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--"]:
        args = args[1:]
    if not args:
        sys.stderr.write("usage: python -m services.shared.gcp.secrets COMMAND...\n")
        raise SystemExit(2)
    from services.shared.logging import configure_logging

    configure_logging(os.environ.get("GAE_SERVICE", "secrets"))
    try:
        environ = resolve_environ(os.environ)
    except SecretError as exc:
        logger.critical("cannot start: %s", exc)
        raise SystemExit(78) from exc
    os.execvpe(args[0], args, environ)  # noqa: S606 - replaces this process


if __name__ == "__main__":
    main()
