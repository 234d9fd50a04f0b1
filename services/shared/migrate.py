"""Apply a service's migrations to its DATABASE_URL.

python -m services.shared.migrate auth [tasks ...]
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from services.shared.config import CommonSettings, ConfigError
from services.shared.db import upgrade
from services.shared.logging import configure_logging

SERVICES_DIR = Path(__file__).resolve().parent.parent
log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("services", nargs="+")
    args = parser.parse_args(argv)
    configure_logging("migrate")
    for service in args.services:
        migrations = SERVICES_DIR / service / "migrations"
        if not migrations.is_dir():
            parser.error(f"{service} has no migrations at {migrations}")
        try:
            settings = CommonSettings.from_env(service)
        except ConfigError as error:
            parser.error(str(error))
        upgrade(settings.database_url, migrations)
        log.info("migrated %s", service)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
