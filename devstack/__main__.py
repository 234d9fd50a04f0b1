"""``python -m devstack``: run the whole local stack until Ctrl-C."""

from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path

from devstack.logs import configure_logging
from devstack.runner import Stack


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__)
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("PORT") or 8080),
        help="the gateway's port; services use the next five (default: $PORT or 8080)",
    )
    parser.add_argument(
        "--var-dir",
        type=Path,
        default=Path(os.environ.get("VAR_DIR") or "var"),
        help="where the stack keeps its data (default: $VAR_DIR or var/)",
    )
    args = parser.parse_args(argv)
    configure_logging()

    stack = Stack(port=args.port, var_dir=args.var_dir.resolve(), environ=os.environ)
    # The children have process groups of their own, so a terminal's Ctrl-C
    # or hang-up reaches only the runner, which stops them all.
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, stack.request_stop)
    return stack.run()


if __name__ == "__main__":
    raise SystemExit(main())
