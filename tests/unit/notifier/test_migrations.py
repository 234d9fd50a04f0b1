from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from services.notifier.models import Base
from services.shared.db import make_engine


def test_migrations_build_the_tables_the_models_describe(database_url):
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            assert "sent_notifications" in inspect(connection).get_table_names()
            differences = compare_metadata(
                MigrationContext.configure(connection), Base.metadata
            )
    finally:
        engine.dispose()
    assert differences == []
