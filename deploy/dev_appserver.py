"""Run the staged services under the Cloud SDK's dev_appserver.py.

    python -m deploy.dev_appserver [--port 8090] [--pip]

Stages the four services for local use (`build/dev-appserver/`), starts the
Pub/Sub and Cloud Storage emulators, applies the migrations to one SQLite file
per service, provisions the emulator with push endpoints on the module ports,
and starts dev_appserver.py with `dispatch.yaml`: the dispatcher on PORT, then
default (tasks), auth, converter and notifier on PORT+1 to PORT+4, as they are
given in that order. It runs until interrupted.

dev_appserver.py runs on the SDK's bundled Python 3.12 and creates one virtual
environment per service from its `requirements.txt`, with the interpreter
`--runtime_python_path` names. Its pip runs take minutes for four services; where
uv is installed, the interpreter given is a shim that lets uv install the same
requirements into the same environments in seconds (`--pip` keeps pip).

dev_appserver.py can hang on SIGINT, so it runs in its own process group and
is stopped by its process id (TERM, then KILL).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml

from deploy import emulators, names, provision, stage
from deploy.runtime import runtime_python
from devstack.topology import Topology

logger = logging.getLogger(__name__)

# The order dev_appserver.py is given the services, hence their ports.
MODULE_ORDER = ("tasks", "auth", "converter", "notifier")
READY_SECONDS = 900.0
BUCKET = "audiomill-dev"


class DevAppserverUnavailable(Exception):
    """dev_appserver.py cannot run here; the message says what is missing."""


@dataclass
class DevAppserver:
    """A running dev_appserver.py and what it serves."""

    process: subprocess.Popen[bytes]
    base_url: str
    module_urls: dict[str, str]
    log_path: Path
    var_dir: Path
    push_token: str
    emulators: list[emulators.Emulator] = field(default_factory=list)

    def stop(self, timeout: float = 15.0) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                logger.info("dev_appserver.py ignored TERM; killing it")
        # The instances (gunicorn and its workers) share the process group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)
        for emulator in reversed(self.emulators):
            emulator.stop()

    def log_tail(self, characters: int = 4000) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return text.replace("\b", "")[-characters:]


def sdk_paths() -> tuple[Path, Path]:
    """The SDK's bundled Python and its dev_appserver.py."""
    root = emulators.sdk_root()
    if root is None:
        raise DevAppserverUnavailable("the Google Cloud SDK (gcloud) is not on PATH")
    python = root / "platform" / "bundledpythonunix" / "bin" / "python3"
    script = root / "bin" / "dev_appserver.py"
    if not script.is_file() or not (root / "platform" / "google_appengine").is_dir():
        raise DevAppserverUnavailable(
            "the SDK has no dev_appserver.py (gcloud components install "
            "app-engine-python, or apt-get install google-cloud-cli-app-engine-python)"
        )
    if not python.is_file():
        raise DevAppserverUnavailable(f"the SDK has no bundled Python at {python}")
    if shutil.which("java") is None:
        raise DevAppserverUnavailable("Java is not installed (the Pub/Sub emulator)")
    return python, script


def uv_path() -> str | None:
    beside = Path(sys.executable).parent / "uv"
    return str(beside) if beside.is_file() else shutil.which("uv")


def write_uv_shim(path: Path, python: str, uv: str) -> Path:
    """An interpreter stand-in for dev_appserver.py: `-m venv DIR` makes the
    environment with uv and gives it a pip that installs with uv."""
    pip = (
        "#!/bin/sh\n"
        "# dev_appserver.py upgrades pip first; uv needs no pip.\n"
        'if [ "$*" = "install --upgrade pip" ]; then exit 0; fi\n'
        f'exec "{uv}" pip "$@" --python "$VENV/bin/python"\n'
    )
    path.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then\n'
        f'  "{uv}" venv -q --python "{python}" "$3" || exit $?\n'
        "  cat > \"$3/bin/pip\" <<'PIP'\n"
        f"{pip}"
        "PIP\n"
        '  sed -i "2i VENV=$3" "$3/bin/pip"\n'
        '  chmod +x "$3/bin/pip"\n'
        "  exit 0\n"
        "fi\n"
        f'exec "{python}" "$@"\n'
    )
    path.chmod(0o755)
    return path


def stage_local(out: Path, port: int, var_dir: Path, env: dict[str, str], token: str):
    """Stage every service with local settings written into its app.yaml
    (dev_appserver.py passes instances only the app.yaml environment)."""
    base_url = f"http://127.0.0.1:{port}"
    common = {
        "PUSH_AUTH": "token",
        "PUSH_TOKEN": token,
        "BUS_URL": "pubsub://local",
        "STORAGE_URL": f"gs://{BUCKET}",
        "MAIL_URL": f"file://{var_dir / 'outbox'}",
        "PUBLIC_BASE_URL": base_url,
        "LOG_LEVEL": "info",
        "OUTBOX_FLUSH_SECONDS": "1",
        **env,
    }
    assignments = [f"{k}={v}" for k, v in common.items()]
    for service in names.SERVICES:
        own = var_dir / service
        own.mkdir(parents=True, exist_ok=True)
        assignments += [
            f"{service}.VAR_DIR={own}",
            f"{service}.DATABASE_URL=sqlite:///{var_dir / (service + '.db')}",
        ]
    assignments.append(f"tasks.AUTH_JWKS_URL={base_url}/api/auth/jwks.json")
    for service in names.SERVICES:
        staged = stage.stage(service, out, assignments=assignments, local=True)
        app_yaml = staged / "app.yaml"
        app = yaml.safe_load(app_yaml.read_text())
        # Listen on 127.0.0.1 only, as every server started here does.
        app["entrypoint"] = app["entrypoint"].replace(
            "--bind :$PORT", "--bind 127.0.0.1:$PORT"
        )
        app_yaml.write_text(yaml.safe_dump(app, sort_keys=False, width=100))
    shutil.copy2(names.REPO_ROOT / "dispatch.yaml", out / "dispatch.yaml")


def migrate(var_dir: Path) -> None:
    for service in names.SERVICES:
        if not (names.REPO_ROOT / "services" / service / "migrations").is_dir():
            continue
        env = {
            **os.environ,
            "VAR_DIR": str(var_dir / service),
            "DATABASE_URL": f"sqlite:///{var_dir / (service + '.db')}",
        }
        subprocess.run(
            [sys.executable, "-m", "services.shared.migrate", service],
            cwd=names.REPO_ROOT,
            env=env,
            check=True,
            capture_output=True,
        )


class DevAppserverFailed(Exception):
    """dev_appserver.py ran but the staged services did not come up: a fault
    of ours to look into, not a machine that lacks the SDK."""


def wait_ready(server: DevAppserver, seconds: float) -> None:
    checks = [f"{server.base_url}/api/formats"] + [
        f"{url}/healthz" for url in server.module_urls.values()
    ]
    deadline = time.monotonic() + seconds
    pending = list(checks)
    while pending and time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise DevAppserverFailed(f"dev_appserver.py exited:\n{server.log_tail()}")
        try:
            if httpx.get(pending[0], timeout=5).status_code == 200:
                pending.pop(0)
                continue
        except httpx.HTTPError:
            pass
        time.sleep(1)
    if pending:
        raise DevAppserverFailed(
            f"{pending[0]} not ready after {seconds:g} s:\n{server.log_tail()}"
        )


@contextlib.contextmanager
def running(
    port: int | None = None,
    out: Path = names.REPO_ROOT / "build" / "dev-appserver",
    use_pip: bool = False,
    ready_seconds: float = READY_SECONDS,
) -> Iterator[DevAppserver]:
    python, script = sdk_paths()
    port = port or _free_block(5)
    if out.exists():
        shutil.rmtree(out)
    var_dir = out / "var"
    var_dir.mkdir(parents=True)
    token = secrets.token_urlsafe(24)

    started: list[emulators.Emulator] = []
    server: DevAppserver | None = None
    try:
        pubsub = emulators.start_pubsub()
        started.append(pubsub)
        storage = emulators.start_storage()
        started.append(storage)
        emulators.create_bucket(storage.host, BUCKET)
        emulator_env = {
            "PUBSUB_EMULATOR_HOST": pubsub.host,
            "STORAGE_EMULATOR_HOST": storage.host,
        }

        stage_local(out, port, var_dir, emulator_env, token)
        migrate(var_dir)
        module_urls = {
            service: f"http://127.0.0.1:{port + offset}"
            for offset, service in enumerate(MODULE_ORDER, start=1)
        }
        with _environ(emulator_env):
            targets = provision.emulator_targets(
                token,
                port,
                {names.SERVICES[s]: url for s, url in module_urls.items()},
            )
            topology = Topology.load(names.REPO_ROOT / "pubsub.yaml")
            provision.Provisioner("local").run(topology, targets)

        interpreter = runtime_python()
        uv = None if use_pip else uv_path()
        if uv:
            interpreter = str(write_uv_shim(out / "python-uv-shim", interpreter, uv))
        argv = [
            str(python),
            str(script),
            f"--runtime_python_path={interpreter}",
            "--host=127.0.0.1",
            f"--port={port}",
            "--admin_host=127.0.0.1",
            f"--admin_port={_port_outside(port, 5)}",
            "--api_host=127.0.0.1",
            f"--api_port={_port_outside(port, 5)}",
            "--skip_sdk_update_check=yes",
            "--automatic_restart=no",
            f"--storage_path={out / 'sdk-storage'}",
            *[str(out / s / "app.yaml") for s in MODULE_ORDER],
            str(out / "dispatch.yaml"),
        ]
        log_path = out / "dev_appserver.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                argv,
                cwd=out,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, **emulator_env},
            )
        server = DevAppserver(
            process,
            f"http://127.0.0.1:{port}",
            module_urls,
            log_path,
            var_dir,
            token,
            started,
        )
        logger.info(
            "dev_appserver.py started (pid %s); installing and starting", process.pid
        )
        wait_ready(server, ready_seconds)
        yield server
    finally:
        if server is not None:
            server.stop()
        else:
            for emulator in reversed(started):
                emulator.stop()


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _port_outside(base: int, size: int) -> int:
    """A free port not in the block dev_appserver.py gives its modules."""
    while True:
        candidate = emulators.free_port()
        if not base <= candidate < base + size:
            return candidate


def _free_block(size: int) -> int:
    """A port whose next `size - 1` ports are free too."""
    import socket

    for _ in range(50):
        base = emulators.free_port()
        if base + size > 65535:
            continue
        sockets = []
        try:
            for offset in range(size):
                sock = socket.socket()
                sock.bind(("127.0.0.1", base + offset))
                sockets.append(sock)
            return base
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise DevAppserverUnavailable(f"no {size} consecutive free ports found")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", 8090)))
    parser.add_argument("--pip", action="store_true", help="install with pip, not uv")
    parser.add_argument(
        "--out", type=Path, default=names.REPO_ROOT / "build" / "dev-appserver"
    )
    options = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)
    try:
        with running(options.port, options.out, options.pip) as server:
            logger.info("API (dispatch.yaml): %s/api/", server.base_url)
            for service, url in server.module_urls.items():
                logger.info("%-9s %s  (Swagger UI under /api/.../ui/)", service, url)
            logger.info("mail outbox: %s", server.var_dir / "outbox")
            logger.info("log: %s; Ctrl-C stops everything", server.log_path)
            while server.process.poll() is None:
                time.sleep(0.5)
    except (DevAppserverUnavailable, emulators.EmulatorUnavailable) as exc:
        sys.stderr.write(f"dev_appserver: {exc}\n")
        return 69
    except KeyboardInterrupt:
        logger.info("stopped")
    return 0


def interrupt(signum: int, frame: object) -> None:
    """Leave whatever runs, the minutes of installing too, through the
    cleanup of `running`; a second signal must not cut that cleanup short."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


if __name__ == "__main__":
    raise SystemExit(main())
