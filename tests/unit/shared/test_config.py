import pytest

from services.shared.config import CommonSettings, ConfigError, Env


def test_defaults_put_every_embedded_backend_under_var_dir(tmp_path):
    settings = CommonSettings.from_env("tasks", {"VAR_DIR": str(tmp_path)})

    assert settings.database_url == f"sqlite:///{tmp_path / 'tasks.db'}"
    assert settings.storage_url == f"file://{tmp_path / 'storage'}"
    assert settings.mail_url == f"file://{tmp_path / 'outbox'}"
    assert settings.bus_url.startswith("relay://")
    assert settings.push_auth == "token"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("DATABASE_URL", "mysql://x", "DATABASE_URL must start with one of"),
        ("STORAGE_URL", "s3://bucket", "STORAGE_URL must start with one of"),
        ("BUS_URL", "amqp://x", "BUS_URL must start with one of"),
        ("MAIL_URL", "ses://x", "MAIL_URL must start with one of"),
        ("PUSH_AUTH", "none", "PUSH_AUTH must be one of token, oidc"),
        ("DATABASE_POOL_SIZE", "lots", "DATABASE_POOL_SIZE must be an integer"),
        ("DATABASE_POOL_SIZE", "0", "DATABASE_POOL_SIZE must be at least 1"),
        ("LOG_LEVEL", "loud", "LOG_LEVEL must be one of"),
    ],
)
def test_a_bad_value_names_its_setting(name, value, message):
    with pytest.raises(ConfigError, match=message):
        CommonSettings.from_env("tasks", {name: value})


def test_push_auth_modes_demand_their_secrets():
    with pytest.raises(ConfigError, match="PUSH_TOKEN must be set"):
        CommonSettings.from_env("converter", {}).check_push_auth()
    with pytest.raises(ConfigError, match="PUSH_AUDIENCE and PUSH_SERVICE_ACCOUNT"):
        CommonSettings.from_env("converter", {"PUSH_AUTH": "oidc"}).check_push_auth()
    CommonSettings.from_env("converter", {"PUSH_TOKEN": "s"}).check_push_auth()


def test_postgres_urls_with_a_driver_are_accepted():
    url = "postgresql+psycopg2://u:p@/db?host=/cloudsql/p:r:i"
    assert CommonSettings.from_env("auth", {"DATABASE_URL": url}).database_url == url


def test_booleans():
    env = Env({"A": "yes", "B": "0", "C": "maybe"})
    assert env.bool("A", False) is True
    assert env.bool("B", True) is False
    assert env.bool("D", True) is True
    with pytest.raises(ConfigError, match="C must be true or false"):
        env.bool("C", False)


@pytest.mark.parametrize("raw", ["nan", "inf", "-inf", "soon"])
def test_a_number_must_be_finite(raw):
    with pytest.raises(ConfigError, match="T must be a number"):
        Env({"T": raw}).float("T", 1.0, minimum=1)


def test_numbers_parse_and_default():
    env = Env({"I": "3", "F": "2.5"})
    assert (env.int("I", 1), env.float("F", 1.0), env.int("X", 7)) == (3, 2.5, 7)
