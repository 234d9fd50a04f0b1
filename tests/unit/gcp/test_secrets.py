"""Secret Manager references in settings, resolved once at start."""

from __future__ import annotations

import subprocess
import sys

import pytest

from services.shared.gcp.secrets import (
    SecretError,
    SecretManagerAccess,
    resolve_environ,
    resource_name,
)

REF = "sm://projects/audiomill-prod/secrets/sendgrid-api-key/versions/latest"


class FakeSecretManager:
    """Answers access_secret_version like the client, from a dict."""

    def __init__(self, secrets: dict[str, bytes]) -> None:
        self.secrets = secrets
        self.calls: list[str] = []

    def access_secret_version(self, request: dict):
        name = request["name"]
        self.calls.append(name)
        if name not in self.secrets:
            raise RuntimeError(f"404 Secret [{name}] not found or has no versions")

        class Payload:
            data = self.secrets[name]

        class Response:
            payload = Payload()

        return Response()


def test_references_are_replaced_and_other_values_kept():
    client = FakeSecretManager(
        {"projects/audiomill-prod/secrets/sendgrid-api-key/versions/latest": b"SG.x"}
    )
    environ = {"SENDGRID_API_KEY": REF, "LOG_LEVEL": "info", "EMPTY": ""}

    resolved = resolve_environ(environ, SecretManagerAccess(client))

    assert resolved == {"SENDGRID_API_KEY": "SG.x", "LOG_LEVEL": "info", "EMPTY": ""}
    assert environ["SENDGRID_API_KEY"] == REF
    assert len(client.calls) == 1


def test_no_reference_needs_no_client():
    def access(name: str) -> str:
        raise AssertionError("Secret Manager was called")

    assert resolve_environ({"A": "b"}, access) == {"A": "b"}


@pytest.mark.parametrize(
    "reference",
    [
        "sm://sendgrid-api-key",
        "sm://projects/p/secrets/s",
        "sm://projects/p/secrets/s/versions/",
        "sm://projects/p/secrets/s/versions/1/extra",
    ],
)
def test_a_malformed_reference_names_the_setting(reference):
    with pytest.raises(SecretError, match="DATABASE_URL"):
        resolve_environ({"DATABASE_URL": reference}, lambda name: "x")


def test_an_unreadable_secret_names_the_setting_and_the_secret():
    access = SecretManagerAccess(FakeSecretManager({}))

    with pytest.raises(SecretError, match="TOKEN_SIGNING_KEY.*sendgrid-api-key"):
        resolve_environ({"TOKEN_SIGNING_KEY": REF}, access)


def test_resource_name():
    assert resource_name("sm://projects/p/secrets/s/versions/3") == (
        "projects/p/secrets/s/versions/3"
    )


def test_the_launcher_runs_the_command_with_the_environment():
    result = subprocess.run(
        [sys.executable, "-m", "services.shared.gcp.secrets", "--", "env"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "PLAIN": "value"},
        check=True,
    )
    assert "PLAIN=value" in result.stdout.splitlines()


def test_the_launcher_refuses_to_start_on_a_bad_reference():
    result = subprocess.run(
        [sys.executable, "-m", "services.shared.gcp.secrets", "env"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "DATABASE_URL": "sm://nope"},
    )
    assert result.returncode == 78
    assert "DATABASE_URL" in result.stderr
    assert "sm://nope" in result.stderr
