"""Alembic environment for the auth database."""

from services.auth.models import Base
from services.shared.db import run_migrations

run_migrations(Base.metadata)
