"""Apply each service's migrations to its own database.

    python -m deploy.migrate [SERVICE ...]

Each service with migrations (auth, tasks, notifier) reads its URL from
`<SERVICE>_DATABASE_URL` (`AUTH_DATABASE_URL`, ...), the prefixed form the
local stack uses too; with one service named, `DATABASE_URL` serves as well.
A value may be an `sm://` Secret Manager reference, so the operator can use
the very secret the service reads. Services without migrations are skipped.

Against Cloud SQL, run the Cloud SQL Auth Proxy with `--unix-socket /cloudsql`
so the socket form of the URL (`?host=/cloudsql/PROJECT:REGION:INSTANCE`)
works here as it does on App Engine.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from collections.abc import Mapping

from deploy import names
from services.shared.gcp.secrets import SecretError, resolve_environ

logger = logging.getLogger(__name__)


class MigrateError(Exception):
    """A database could not be migrated; the message says which and why."""


def with_migrations() -> list[str]:
    return [
        service
        for service in names.SERVICES
        if (names.REPO_ROOT / "services" / service / "migrations").is_dir()
    ]


def database_urls(services: list[str], environ: Mapping[str, str]) -> dict[str, str]:
    urls = {}
    for service in services:
        name = f"{service.upper()}_DATABASE_URL"
        url = environ.get(name)
        if not url and len(services) == 1:
            url = environ.get("DATABASE_URL")
        if not url:
            raise MigrateError(f"{service}: set {name} to its database URL")
        urls[service] = url
    try:
        return resolve_environ(urls)
    except SecretError as exc:
        raise MigrateError(str(exc)) from exc


def migrate(services: list[str], environ: Mapping[str, str]) -> None:
    urls = database_urls(services, environ)
    for service in services:
        env = {**environ, "DATABASE_URL": urls[service]}
        result = subprocess.run(
            [sys.executable, "-m", "services.shared.migrate", service],
            cwd=names.REPO_ROOT,
            env=env,
        )
        if result.returncode != 0:
            raise MigrateError(
                f"{service}: migrations failed (exit {result.returncode})"
            )
        logger.info("%s migrated", service)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("services", nargs="*")
    options = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    available = with_migrations()
    services = options.services or available
    unknown = [s for s in services if s not in available]
    if unknown:
        parser.error(f"no migrations for {', '.join(unknown)}; have {available}")
    try:
        migrate(services, os.environ)
    except MigrateError as exc:
        sys.stderr.write(f"migrate: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
