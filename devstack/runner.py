"""Start the whole local stack as child processes, watch them, stop them all.

Ports, with ``PORT`` the base (8080 by default): the gateway on PORT, auth
PORT+1, tasks PORT+2, converter PORT+3, notifier PORT+4, the relay PORT+5.
A service whose ``services/<name>/main.py`` does not exist is skipped with a
warning. A child that dies is reported and started again. Each child runs in
a process group of its own, led by its pid, and is stopped through that group,
so what it started (the converter's ffmpeg) stops with it. The runner's own
state (pids, ports) is in ``$VAR_DIR/devstack.json`` while it runs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from devstack.settings import ENDPOINTS_VARIABLE, REPO_ROOT

logger = logging.getLogger(__name__)

STATE_FILE = "devstack.json"
STOP_GRACE_SECONDS = 5.0
HEALTH_TIMEOUT_SECONDS = 60.0
RESTART_DELAY_SECONDS = 0.5
RESTART_LIMIT = 5
RESTART_WINDOW_SECONDS = 60.0
GATEWAY_OFFSET = 0
RELAY_OFFSET = 5


class StackError(RuntimeError):
    """The stack cannot start; the message says what to fix."""


@dataclass(frozen=True)
class ServiceSpec:
    """A service of the stack: its package, App Engine name and port offset."""

    name: str
    app_engine_name: str
    port_offset: int

    @property
    def package_dir(self) -> Path:
        return REPO_ROOT / "services" / self.name

    @property
    def present(self) -> bool:
        return (self.package_dir / "main.py").is_file()

    @property
    def has_migrations(self) -> bool:
        return (self.package_dir / "migrations").is_dir()


SERVICES = (
    ServiceSpec("auth", "auth", 1),
    ServiceSpec("tasks", "default", 2),
    ServiceSpec("converter", "converter", 3),
    ServiceSpec("notifier", "notifier", 4),
)


def service_environ(base: Mapping[str, str], service: str) -> dict[str, str]:
    """The environment for one service: ``<SERVICE>_<NAME>`` becomes ``<NAME>``.

    The prefixed variables stay too (``AUTH_JWKS_URL`` is itself a setting),
    and a prefixed value wins over an unprefixed one for its own service.
    """
    environ = dict(base)
    prefix = f"{service.upper()}_"
    for key, value in base.items():
        if key.startswith(prefix) and len(key) > len(prefix):
            environ[key[len(prefix) :]] = value
    return environ


def stack_environ(
    base: Mapping[str, str], port: int, var_dir: Path, push_token: str
) -> dict[str, str]:
    """The environment every child shares; what the caller set wins."""
    environ = dict(base)
    environ["VAR_DIR"] = str(var_dir)
    environ["PYTHONUNBUFFERED"] = "1"
    environ.setdefault("PUSH_TOKEN", push_token)
    environ.setdefault("PUBLIC_BASE_URL", f"http://127.0.0.1:{port}")
    environ.setdefault(
        "AUTH_JWKS_URL", f"http://127.0.0.1:{port + 1}/api/auth/jwks.json"
    )
    environ.setdefault("BUS_URL", f"relay://127.0.0.1:{port + RELAY_OFFSET}")
    return environ


def uses_relay(environ: Mapping[str, str]) -> bool:
    return environ.get("BUS_URL", "").startswith("relay://")


def ffmpeg_in_use() -> str:
    """The ffmpeg the converter picks by its rule: PATH first, else the wheel's."""
    found = shutil.which("ffmpeg")
    if found:
        return f"{found} (from PATH)"
    try:
        import imageio_ffmpeg

        return f"{imageio_ffmpeg.get_ffmpeg_exe()} (from the imageio-ffmpeg wheel)"
    except (ImportError, RuntimeError) as exc:
        return f"none found ({exc}); conversions will fail"


def ensure_push_token(path: Path) -> str:
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(token + "\n")
    return token


def ensure_signing_key(path: Path) -> None:
    if path.exists():
        return
    from services.shared.tokens import load_or_create_key

    load_or_create_key(path)


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As a server binds: a closed connection in TIME_WAIT does not count.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass
class Child:
    """One process of the stack and how to start and check it again."""

    name: str
    argv: list[str]
    environ: dict[str, str]
    port: int
    health_path: str | None
    process: subprocess.Popen[bytes] | None = None
    restarts: deque[float] = field(default_factory=deque)
    given_up: bool = False

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.argv,
            cwd=REPO_ROOT,
            env={**self.environ, "PORT": str(self.port)},
            stdin=subprocess.DEVNULL,
            process_group=0,
        )
        logger.info("started %s (pid %s) on %s", self.name, self.process.pid, self.port)

    def signal_group(self, signum: int) -> None:
        """Signal the child and everything it started (its process group)."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signum)

    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def healthy(self, http: httpx.Client) -> bool:
        if self.health_path is None:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                probe.settimeout(0.5)
                return probe.connect_ex(("127.0.0.1", self.port)) == 0
        try:
            response = http.get(self.base_url + self.health_path, timeout=1.0)
        except httpx.HTTPError:
            return False
        return response.status_code == 200


def uvicorn_argv(app: str, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        app,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        "--timeout-graceful-shutdown",
        "3",
    ]


class Stack:
    """The runner: prepares ``VAR_DIR``, starts, supervises and stops children."""

    def __init__(
        self,
        port: int,
        var_dir: Path,
        environ: Mapping[str, str],
        services: Sequence[ServiceSpec] = SERVICES,
    ) -> None:
        self.port = port
        self.var_dir = var_dir
        self._base_environ = dict(environ)
        self._services = list(services)
        self._children: list[Child] = []
        self._stopping = threading.Event()

    @property
    def state_path(self) -> Path:
        return self.var_dir / STATE_FILE

    def request_stop(self, signum: int, _frame: Any = None) -> None:
        if not self._stopping.is_set():
            logger.info("stopping the stack (%s)", signal.Signals(signum).name)
        self._stopping.set()

    def run(self) -> int:
        """Start everything, then supervise until asked to stop."""
        try:
            self._prepare()
            self._start_all()
            while not self._stopping.wait(0.2):
                self._supervise()
        except StackError as exc:
            logger.error("%s", exc)
            return 1
        finally:
            self._stop_all()
            self._clear_state()
        logger.info("stack stopped; data kept in %s", self.var_dir)
        return 0

    def _prepare(self) -> None:
        self.var_dir.mkdir(parents=True, exist_ok=True)
        self._refuse_second_runner()
        present = [spec for spec in self._services if spec.present]
        for spec in self._services:
            if not spec.present:
                logger.warning(
                    "skipping %s: %s does not exist",
                    spec.name,
                    spec.package_dir / "main.py",
                )
        if not present:
            raise StackError("no service to start: no services/<name>/main.py found")

        ensure_signing_key(self.var_dir / "auth-key.pem")
        token = ensure_push_token(self.var_dir / "push-token")
        common = stack_environ(self._base_environ, self.port, self.var_dir, token)

        endpoints = {
            spec.app_engine_name: f"http://127.0.0.1:{self.port + spec.port_offset}"
            for spec in present
        }
        routing = {**common, ENDPOINTS_VARIABLE: json.dumps(endpoints)}
        self._children = [
            Child(
                name=spec.name,
                argv=uvicorn_argv(f"services.{spec.name}.main:create_app", port),
                environ=service_environ(common, spec.name),
                port=port,
                health_path="/healthz",
            )
            for spec in present
            for port in [self.port + spec.port_offset]
        ]
        if uses_relay(common):
            relay_port = self.port + RELAY_OFFSET
            self._children.append(
                Child(
                    "relay",
                    uvicorn_argv("devstack.relay:create_app", relay_port),
                    routing,
                    relay_port,
                    "/healthz",
                )
            )
        else:
            logger.info("BUS_URL is %s: the relay is not started", common["BUS_URL"])
        self._children.append(
            Child(
                "gateway",
                uvicorn_argv("devstack.gateway:create_app", self.port),
                routing,
                self.port,
                None,
            )
        )

        busy = [
            f"{c.port} ({c.name})" for c in self._children if not port_is_free(c.port)
        ]
        if busy:
            raise StackError(
                f"port(s) in use: {', '.join(busy)}; stop what holds them or set PORT"
            )
        self._migrate(present, common)

    def _refuse_second_runner(self) -> None:
        try:
            state = json.loads(self.state_path.read_text(encoding="utf-8"))
            pid = int(state["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            return
        if pid != os.getpid() and _alive(pid):
            raise StackError(
                f"a stack (pid {pid}) already runs with VAR_DIR={self.var_dir}"
            )

    def _migrate(self, present: Sequence[ServiceSpec], common: dict[str, str]) -> None:
        if not (REPO_ROOT / "services" / "shared" / "migrate.py").is_file():
            logger.warning("services/shared/migrate.py is missing: no migrations run")
            return
        # Services that see the same settings migrate in one process.
        groups: dict[tuple[tuple[str, str], ...], list[str]] = {}
        for spec in present:
            if spec.has_migrations:
                environ = service_environ(common, spec.name)
                groups.setdefault(tuple(sorted(environ.items())), []).append(spec.name)
        runs = {
            ", ".join(names): subprocess.Popen(
                [sys.executable, "-m", "services.shared.migrate", *names],
                cwd=REPO_ROOT,
                env=dict(key),
                stdin=subprocess.DEVNULL,
            )
            for key, names in groups.items()
        }
        failed = [name for name, run in runs.items() if run.wait() != 0]
        if failed:
            raise StackError(f"migrations failed for: {', '.join(failed)}")

    def _start_all(self) -> None:
        for child in self._children:
            child.start()
        self._write_state(ready=False)

        deadline = time.monotonic() + HEALTH_TIMEOUT_SECONDS
        waiting = list(self._children)
        with httpx.Client() as http:
            while waiting:
                if self._stopping.is_set():
                    raise StackError("stopped while starting")
                for child in list(waiting):
                    code = child.exit_code()
                    if code is not None:
                        raise StackError(
                            f"{child.name} exited with code {code} while starting; "
                            "its output is above"
                        )
                    if child.healthy(http):
                        waiting.remove(child)
                if waiting and time.monotonic() > deadline:
                    names = ", ".join(child.name for child in waiting)
                    raise StackError(
                        f"not healthy after {HEALTH_TIMEOUT_SECONDS:.0f} s: {names}"
                    )
                if waiting:
                    time.sleep(0.05)

        self._write_state(ready=True)
        self._banner()

    def _banner(self) -> None:
        api = f"http://127.0.0.1:{self.port}"
        env = self._children[0].environ
        started = {child.name for child in self._children}
        lines = [f"Audiomill is up: API at {api}/api/"]
        if "auth" in started:
            lines.append(f"  Swagger UI (auth):  {api}/api/auth/ui/")
        if "tasks" in started:
            lines.append(f"  Swagger UI (tasks): {api}/api/ui/")
        lines.append(f"  data:    {self.var_dir} (databases, storage/, relay.db)")
        mail = env.get("NOTIFIER_MAIL_URL") or env.get("MAIL_URL")
        lines.append(f"  emails:  {mail or self.var_dir / 'outbox'} (one .eml a mail)")
        lines.append(f"  ffmpeg:  {ffmpeg_in_use()}")
        lines.append(f"  bus:     {env['BUS_URL']}")
        skipped = [spec.name for spec in self._services if spec.name not in started]
        if skipped:
            lines.append(f"  not running (no main.py yet): {', '.join(skipped)}")
        lines.append("Press Ctrl-C to stop.")
        logger.info("%s", "\n".join(lines))

    def _supervise(self) -> None:
        for child in self._children:
            if child.given_up or child.process is None:
                continue
            code = child.exit_code()
            if code is None:
                continue
            # An exit while the stack is stopping is no crash.
            if self._stopping.wait(RESTART_DELAY_SECONDS):
                return
            # What the dead child started (an ffmpeg mid-transcode) goes too.
            child.signal_group(signal.SIGKILL)
            now = time.monotonic()
            while child.restarts and now - child.restarts[0] > RESTART_WINDOW_SECONDS:
                child.restarts.popleft()
            if len(child.restarts) >= RESTART_LIMIT:
                logger.error(
                    "%s exited with code %s and died %s times within %.0f s: "
                    "not starting it again",
                    child.name,
                    code,
                    RESTART_LIMIT,
                    RESTART_WINDOW_SECONDS,
                )
                child.given_up = True
                continue
            logger.warning(
                "%s (pid %s) exited with code %s: starting it again",
                child.name,
                child.process.pid,
                code,
            )
            child.restarts.append(now)
            child.start()
            self._write_state(ready=True)

    def _stop_all(self) -> None:
        running = [c for c in self._children if c.process and c.process.poll() is None]
        for child in running:
            child.signal_group(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for child in running:
            assert child.process is not None
            try:
                child.process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                logger.warning(
                    "%s did not stop in time: killing pid %s",
                    child.name,
                    child.process.pid,
                )
                child.signal_group(signal.SIGKILL)
                child.process.wait()
        # Whatever a child started and left behind in its group goes too.
        for child in self._children:
            child.signal_group(signal.SIGKILL)

    def _write_state(self, ready: bool) -> None:
        state = {
            "pid": os.getpid(),
            "ready": ready,
            "base_url": f"http://127.0.0.1:{self.port}",
            "var_dir": str(self.var_dir),
            "children": {
                child.name: {
                    "pid": child.process.pid if child.process else None,
                    "port": child.port,
                    "url": child.base_url,
                }
                for child in self._children
            },
        }
        temporary = self.state_path.with_suffix(".tmp")
        temporary.write_text(json.dumps(state, indent=2), encoding="utf-8")
        temporary.replace(self.state_path)

    def _clear_state(self) -> None:
        try:
            state = json.loads(self.state_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        if state.get("pid") == os.getpid():
            self.state_path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
