"""The migrations build exactly the tables the models describe."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from services.shared.db import make_engine
from services.tasks.models import Base


def test_migrations_build_the_tables_the_models_describe(database_url):
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            assert {"tasks", "outbox"} <= set(inspect(connection).get_table_names())
            differences = compare_metadata(
                MigrationContext.configure(connection), Base.metadata
            )
            # AUTOINCREMENT keeps SQLite from handing a deleted task's id out again.
            ddl = connection.execute(
                text("SELECT sql FROM sqlite_master WHERE name = 'tasks'")
            ).scalar_one()
    finally:
        engine.dispose()
    assert differences == []
    assert "AUTOINCREMENT" in ddl
