from __future__ import annotations

import pytest

from services.notifier.settings import DEFAULT_MAIL_FROM, NotifierSettings
from services.shared.config import ConfigError

BASE = {"PUSH_TOKEN": "t", "VAR_DIR": "/tmp/audiomill-notifier-settings"}


def test_defaults_write_mails_to_the_outbox_under_var_dir():
    settings = NotifierSettings.from_env(BASE)
    assert settings.common.mail_url == "file:///tmp/audiomill-notifier-settings/outbox"
    assert settings.mail_from == DEFAULT_MAIL_FROM
    assert settings.mail_timeout_seconds == 10
    assert settings.claim_timeout_seconds == 300


def test_sendgrid_needs_its_key():
    with pytest.raises(ConfigError, match="SENDGRID_API_KEY"):
        NotifierSettings.from_env(BASE | {"MAIL_URL": "sendgrid://"})
    settings = NotifierSettings.from_env(
        BASE
        | {
            "MAIL_URL": "sendgrid://",
            "SENDGRID_API_KEY": "SG.key",
            "SENDGRID_API_HOST": "http://127.0.0.1:9999",
        }
    )
    assert settings.sendgrid_api_key == "SG.key"
    assert settings.sendgrid_api_host == "http://127.0.0.1:9999"


def test_mail_from_must_be_an_address():
    with pytest.raises(ConfigError, match="MAIL_FROM"):
        NotifierSettings.from_env(BASE | {"MAIL_FROM": "Audiomill"})


def test_a_claim_must_outlive_a_slow_send():
    with pytest.raises(ConfigError, match="MAIL_CLAIM_TIMEOUT_SECONDS"):
        NotifierSettings.from_env(
            BASE | {"MAIL_TIMEOUT_SECONDS": "30", "MAIL_CLAIM_TIMEOUT_SECONDS": "60"}
        )


def test_push_auth_needs_its_secret():
    with pytest.raises(ConfigError, match="PUSH_TOKEN"):
        NotifierSettings.from_env({"VAR_DIR": "/tmp/x"})


def test_an_unknown_mail_scheme_stops_the_start():
    with pytest.raises(ConfigError, match="MAIL_URL"):
        NotifierSettings.from_env(BASE | {"MAIL_URL": "mailgun://"})
