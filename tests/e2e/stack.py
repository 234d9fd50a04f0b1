"""Starting and stopping the real local stack (``python -m devstack``) for tests.

The stack gets a fresh ``VAR_DIR`` and six consecutive free ports. Settings
the developer's shell may hold are dropped, so a run is reproducible; a test
session chooses other backends by setting ``E2E_<NAME>``, which reaches the
stack as ``<NAME>`` (``E2E_BUS_URL``, ``E2E_TASKS_DATABASE_URL``,
``E2E_PUBSUB_EMULATOR_HOST`` ...). ``E2E_PROVISION_COMMAND``, when set, runs
once the ports are known and before a stack on a ``pubsub://`` bus starts (to
point the emulator's push subscriptions at them), with the stack's
environment plus ``DEVSTACK_ENDPOINTS``.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import secrets
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devstack.runner import port_is_free

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("auth", "tasks", "converter", "notifier")
APP_ENGINE_NAMES = {
    "auth": "auth",
    "tasks": "default",
    "converter": "converter",
    "notifier": "notifier",
}
PORT_OFFSETS = {"auth": 1, "tasks": 2, "converter": 3, "notifier": 4, "relay": 5}
PASSTHROUGH_PREFIX = "E2E_"

# Settings the stack or a service reads; an inherited value would leak in.
_STACK_SETTINGS = {
    "BUS_URL",
    "DATABASE_POOL_SIZE",
    "DATABASE_URL",
    "DEVSTACK_ENDPOINTS",
    "MAIL_URL",
    "PORT",
    "PUBLIC_BASE_URL",
    "PUBSUB_EMULATOR_HOST",
    "PUSH_AUDIENCE",
    "PUSH_AUTH",
    "PUSH_SERVICE_ACCOUNT",
    "PUSH_TOKEN",
    "SENDGRID_API_KEY",
    "STORAGE_EMULATOR_HOST",
    "STORAGE_URL",
    "VAR_DIR",
}
_STACK_PREFIXES = tuple(f"{name.upper()}_" for name in SERVICES) + ("RELAY_",)


def free_base_port(count: int = 6, attempts: int = 200) -> int:
    """A port P such that P .. P+count-1 are all free on 127.0.0.1."""
    for _ in range(attempts):
        base = random.randrange(20000, 60000 - count)
        if all(port_is_free(base + offset) for offset in range(count)):
            return base
    raise RuntimeError(f"no {count} consecutive free ports found")


def stack_environ(
    var_dir: Path,
    port: int,
    inherited: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The runner's environment: the shell's, minus stack settings, plus
    ``E2E_*`` settings unprefixed."""
    inherited = os.environ if inherited is None else inherited
    environ = {
        key: value
        for key, value in inherited.items()
        if key not in _STACK_SETTINGS
        and not key.startswith(_STACK_PREFIXES)
        and not key.startswith(PASSTHROUGH_PREFIX)
    }
    for key, value in inherited.items():
        if key.startswith(PASSTHROUGH_PREFIX) and key != "E2E_PROVISION_COMMAND":
            environ[key[len(PASSTHROUGH_PREFIX) :]] = value
    environ.setdefault("PUSH_TOKEN", secrets.token_urlsafe(24))
    environ["PORT"] = str(port)
    environ["VAR_DIR"] = str(var_dir)
    environ["PYTHONUNBUFFERED"] = "1"
    return environ


@dataclass
class RunningStack:
    """A ``python -m devstack`` this test session started."""

    port: int
    var_dir: Path
    environ: dict[str, str]
    process: subprocess.Popen[bytes]
    log_path: Path
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def services(self) -> set[str]:
        return set(self.state.get("children", {})) & set(SERVICES)

    @property
    def relay_url(self) -> str | None:
        if "relay" not in self.state.get("children", {}):
            return None
        return f"http://127.0.0.1:{self.port + PORT_OFFSETS['relay']}"

    @property
    def push_token(self) -> str:
        return self.environ["PUSH_TOKEN"]

    def service_url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.port + PORT_OFFSETS[service]}"

    def setting(self, service: str, name: str) -> str | None:
        """The value a service sees for a setting, prefixed one first."""
        return self.environ.get(f"{service.upper()}_{name}") or self.environ.get(name)

    def refresh(self) -> dict[str, Any]:
        path = self.var_dir / "devstack.json"
        with contextlib.suppress(OSError, ValueError):
            self.state = json.loads(path.read_text(encoding="utf-8"))
        return self.state

    def child_pid(self, name: str) -> int:
        return int(self.refresh()["children"][name]["pid"])

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                raise RuntimeError(
                    f"the stack exited with code {code} while starting:\n"
                    + self.log_tail()
                )
            if self.refresh().get("ready"):
                return
            time.sleep(0.1)
        raise RuntimeError(
            f"the stack was not ready in {timeout:.0f} s:\n{self.log_tail()}"
        )

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM to the runner's process group, SIGKILL past ``timeout``."""
        if self.process.poll() is None:
            _signal_group(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _signal_group(self.process.pid, signal.SIGKILL)
                self.process.wait()
        # Each child leads a group of its own; a crashed runner leaves them
        # running, so what its state file last named goes too.
        children = self.refresh().get("children", {}).values()
        for pgid in [self.process.pid, *(c["pid"] for c in children if c["pid"])]:
            _signal_group(pgid, signal.SIGKILL)
        return self.process.returncode


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signum)


def isolate(environ: dict[str, str], label: str) -> dict[str, str]:
    """Give a stack its own corner of shared backends: a Pub/Sub project of
    its own and a storage prefix of its own, so stacks in one session (and
    sessions on one emulator) never see each other's messages or files."""
    bus = environ.get("BUS_URL", "")
    if bus.startswith("pubsub://"):
        project = bus.removeprefix("pubsub://").split("/", 1)[0] or "local"
        environ["BUS_URL"] = f"pubsub://{project}-{label}"
    storage = environ.get("STORAGE_URL", "")
    if storage.startswith("gs://"):
        environ["STORAGE_URL"] = f"{storage.rstrip('/')}/{label}"
    return environ


def start_stack(
    var_dir: Path,
    overrides: Mapping[str, str | None] | None = None,
    timeout: float = 120.0,
    port: int | None = None,
) -> RunningStack:
    """Start the stack in its own process group and wait until it is ready.

    ``overrides`` are applied last (``None`` unsets) and are not isolated: a
    restart passes the first start's ``BUS_URL`` and ``STORAGE_URL`` to find
    the same data."""
    var_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_base_port()
    environ = stack_environ(var_dir, port)
    isolate(environ, f"e2e{secrets.token_hex(4)}")
    for key, value in (overrides or {}).items():
        if value is None:
            environ.pop(key, None)
        else:
            environ[key] = value
    _provision(environ, port)

    log_path = var_dir / "stack.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "devstack"],
            cwd=REPO_ROOT,
            env=environ,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    stack = RunningStack(port, var_dir, environ, process, log_path)
    try:
        stack.wait_ready(timeout)
    except BaseException:
        stack.stop()
        raise
    return stack


def _provision(environ: dict[str, str], port: int) -> None:
    """Run ``E2E_PROVISION_COMMAND``, its ``{python}``, ``{port}`` and
    ``{project}`` (of a ``pubsub://`` bus) filled in."""
    command = os.environ.get("E2E_PROVISION_COMMAND")
    if not command or not environ.get("BUS_URL", "").startswith("pubsub://"):
        return
    endpoints = {
        APP_ENGINE_NAMES[name]: f"http://127.0.0.1:{port + PORT_OFFSETS[name]}"
        for name in SERVICES
    }
    project = environ.get("BUS_URL", "").removeprefix("pubsub://")
    values = {"python": sys.executable, "port": str(port), "project": project}
    subprocess.run(
        [part.format(**values) for part in shlex.split(command)],
        cwd=REPO_ROOT,
        env={**environ, "DEVSTACK_ENDPOINTS": json.dumps(endpoints)},
        check=True,
        timeout=120,
    )


def missing_services(*needed: str) -> list[str]:
    """Needed services whose ``services/<name>/main.py`` does not exist."""
    return [
        name
        for name in needed
        if not (REPO_ROOT / "services" / name / "main.py").is_file()
    ]
