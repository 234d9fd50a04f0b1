"""`make migrate` against a real PostgreSQL: each service's migrations reach
its own database, read from <SERVICE>_DATABASE_URL."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from sqlalchemy import create_engine, inspect

from deploy import migrate, names

pytestmark = pytest.mark.postgres


def test_every_service_with_migrations_gets_its_own_database(postgres_database):
    services = migrate.with_migrations()
    urls = {service: postgres_database(service) for service in services}
    env = {
        **os.environ,
        **{f"{s.upper()}_DATABASE_URL": url for s, url in urls.items()},
    }

    result = subprocess.run(
        [sys.executable, "-m", "deploy.migrate"],
        cwd=names.REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
    )

    assert result.returncode == 0, result.stderr
    assert set(services) == {"auth", "tasks", "notifier"}
    for service, url in urls.items():
        engine = create_engine(url)
        try:
            tables = set(inspect(engine).get_table_names())
        finally:
            engine.dispose()
        assert "alembic_version" in tables, service
        assert len(tables) > 1, f"{service} has no tables: {tables}"

    # A second run is a no-op at head.
    again = subprocess.run(
        [sys.executable, "-m", "deploy.migrate"],
        cwd=names.REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert again.returncode == 0, again.stderr


def test_a_missing_url_names_the_setting():
    with pytest.raises(migrate.MigrateError, match="TASKS_DATABASE_URL"):
        migrate.database_urls(["auth", "tasks"], {"AUTH_DATABASE_URL": "sqlite://"})


def test_one_service_may_use_database_url():
    assert migrate.database_urls(["auth"], {"DATABASE_URL": "sqlite://"}) == {
        "auth": "sqlite://"
    }
