"""Plain-text logging for the devstack processes (they are tools, not services)."""

from __future__ import annotations

import logging
import os


def configure_logging(level: str | None = None) -> None:
    logging.basicConfig(
        level=(level or os.environ.get("LOG_LEVEL") or "INFO").upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    # One line per outgoing request drowns out what the stack reports.
    logging.getLogger("httpx").setLevel(logging.WARNING)
