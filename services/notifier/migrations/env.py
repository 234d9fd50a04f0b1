"""Alembic environment for the notifier's database."""

from services.notifier.models import Base
from services.shared.db import run_migrations

run_migrations(Base.metadata)
