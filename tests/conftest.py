"""Suite-wide rules.

Under ``CI=true`` a skipped test fails: CI has every server the suite needs,
so a skip there means a test that did not run, not a machine without it.
"""

from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else ""
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, which counts as a failure: {reason}"


@pytest.fixture(scope="session")
def postgres_database():
    """A factory of fresh, empty PostgreSQL databases on the server that
    ``TEST_POSTGRES_URL`` names; each is dropped when the session ends.

    Each service gets its own, as in production, since each keeps its own
    Alembic version table.
    """
    import uuid

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import OperationalError

    server_url = os.environ.get("TEST_POSTGRES_URL")
    if not server_url:
        pytest.skip("PostgreSQL not available: TEST_POSTGRES_URL is not set")
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text("SELECT 1"))
    except OperationalError as error:
        admin.dispose()
        pytest.skip(f"PostgreSQL not available at {server_url}: {error.orig}")

    created: list[str] = []

    def create(label: str) -> str:
        name = f"audiomill_test_{label}_{uuid.uuid4().hex[:8]}"
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        created.append(name)
        return (
            make_url(server_url)
            .set(database=name)
            .render_as_string(hide_password=False)
        )

    yield create

    with admin.connect() as connection:
        for name in created:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
