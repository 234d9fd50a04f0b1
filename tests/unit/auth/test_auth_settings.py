"""Where the signing key and the other auth settings come from, and the
errors a bad one gives at start."""

from __future__ import annotations

import stat

import pytest

from services.auth.settings import AuthSettings
from services.shared.config import ConfigError


def settings_from(tmp_path, **environ) -> AuthSettings:
    return AuthSettings.from_env({"VAR_DIR": str(tmp_path), **environ})


def test_the_defaults(tmp_path, signing_key_pem):
    settings = settings_from(tmp_path, AUTH_SIGNING_KEY=signing_key_pem.decode())

    assert settings.token_ttl_seconds == 3600
    assert settings.token_issuer == "audiomill-auth"
    assert settings.token_audience == "audiomill"
    assert (settings.throttle.max_failures, settings.throttle.window_seconds) == (
        5,
        900,
    )
    assert settings.common.database_url.endswith("auth.db")


def test_the_key_may_come_as_pem_text_with_escaped_newlines(tmp_path, signing_key_pem):
    one_line = signing_key_pem.decode().replace("\n", "\\n")

    settings = settings_from(tmp_path, AUTH_SIGNING_KEY=one_line)

    assert settings.signing_key_pem == signing_key_pem
    assert not (tmp_path / "auth-key.pem").exists()


def test_the_key_may_come_from_a_file(tmp_path, signing_key_pem):
    key_file = tmp_path / "mounted.pem"
    key_file.write_bytes(signing_key_pem)

    settings = settings_from(tmp_path, AUTH_SIGNING_KEY_FILE=str(key_file))

    assert settings.signing_key_pem == signing_key_pem


def test_without_a_key_setting_one_is_made_under_var_and_kept(tmp_path):
    first = settings_from(tmp_path)
    second = settings_from(tmp_path)

    key_file = tmp_path / "auth-key.pem"
    assert first.signing_key_pem == second.signing_key_pem == key_file.read_bytes()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"AUTH_SIGNING_KEY": "not a key"}, "AUTH_SIGNING_KEY must hold a PEM"),
        ({"AUTH_SIGNING_KEY_FILE": "/etc/hostname"}, "not both"),
        (
            {"AUTH_SIGNING_KEY": "sm://projects/p/secrets/key/versions/latest"},
            "services.shared.gcp.secrets",
        ),
        ({"TOKEN_TTL_SECONDS": "soon"}, "TOKEN_TTL_SECONDS must be an integer"),
        ({"TOKEN_TTL_SECONDS": "5"}, "TOKEN_TTL_SECONDS must be at least 60"),
        ({"LOGIN_MAX_FAILURES": "0"}, "LOGIN_MAX_FAILURES must be at least 1"),
        ({"LOGIN_WINDOW_SECONDS": "x"}, "LOGIN_WINDOW_SECONDS must be an integer"),
    ],
)
def test_a_bad_setting_stops_the_start_naming_it(
    tmp_path, signing_key_pem, environ, message
):
    environ = {"AUTH_SIGNING_KEY": signing_key_pem.decode(), **environ}
    with pytest.raises(ConfigError, match=message):
        settings_from(tmp_path, **environ)


def test_an_unreadable_key_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="AUTH_SIGNING_KEY_FILE names /nonexistent"):
        settings_from(tmp_path, AUTH_SIGNING_KEY_FILE="/nonexistent/key.pem")


def test_a_var_dir_where_no_key_can_be_made_asks_for_the_setting(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")

    with pytest.raises(ConfigError, match="set AUTH_SIGNING_KEY or AUTH_SIGNING_KEY"):
        AuthSettings.from_env({"VAR_DIR": str(blocker / "var")})


def test_a_key_that_is_not_rsa_is_refused_at_start(tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from services.auth.main import create_app

    pem = (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    with pytest.raises(ConfigError, match="signing key is unusable"):
        create_app(settings_from(tmp_path, AUTH_SIGNING_KEY=pem))
