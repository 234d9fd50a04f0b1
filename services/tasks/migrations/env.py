"""Alembic environment for the tasks database."""

from services.shared.db import run_migrations
from services.tasks.models import Base

run_migrations(Base.metadata)
