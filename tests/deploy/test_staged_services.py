"""Each staged service installs from its own requirements.txt into a fresh
virtual environment and starts with its app.yaml entrypoint, seeing nothing of
the repository: each is deployable on its own.

One test does all four (their installs run side by side, with pip's cache), as
it is the slow part of the suite.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import yaml

from deploy import names, stage
from deploy.emulators import free_port
from deploy.runtime import runtime_python

# With pip instead of uv the four installs take minutes, not seconds.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

INSTALL_SECONDS = 600
# The Python App Engine's runtime names, where installed (python313).
PYTHON = runtime_python()
START_SECONDS = 60


def installer() -> list[str] | None:
    """uv where it is installed (seconds instead of minutes for four
    environments), else pip: both resolve the same requirements.txt."""
    for candidate in (Path(sys.executable).parent / "uv", shutil.which("uv")):
        if candidate and Path(candidate).is_file():
            return [str(candidate)]
    return None


def make_venv(service_dir: Path, venv: Path) -> str:
    """Create the venv and install the staged requirements; return the
    installer's output tail on failure, empty on success."""
    requirements = str(service_dir / "requirements.txt")
    uv = installer()
    if uv:
        subprocess.run([*uv, "venv", "-q", "--python", PYTHON, str(venv)], check=True)
        command = [
            *uv,
            "pip",
            "install",
            "-q",
            "--python",
            str(venv / "bin" / "python"),
        ]
    else:
        subprocess.run([PYTHON, "-m", "venv", str(venv)], check=True)
        command = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    result = subprocess.run(
        [*command, "-r", requirements],
        capture_output=True,
        text=True,
        timeout=INSTALL_SECONDS,
    )
    return "" if result.returncode == 0 else (result.stdout + result.stderr)[-3000:]


def service_env(venv: Path, var: Path, **settings: str) -> dict[str, str]:
    env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HOME": os.environ.get("HOME", "/root"),
        "VAR_DIR": str(var),
        "LOG_LEVEL": "warning",
        "PUSH_AUTH": "token",
        "PUSH_TOKEN": "staged-test-token",
        "STORAGE_URL": f"file://{var / 'storage'}",
        "MAIL_URL": f"file://{var / 'outbox'}",
        # Nothing listens here; publishing fails and stays in the outbox.
        "BUS_URL": f"relay://127.0.0.1:{free_port()}",
    }
    env.update(settings)
    return env


def entrypoint(service_dir: Path) -> str:
    """The app.yaml entrypoint, bound to 127.0.0.1 instead of every interface."""
    app = yaml.safe_load((service_dir / "app.yaml").read_text())
    command = app["entrypoint"]
    assert "--bind :$PORT" in command
    return command.replace("--bind :$PORT", "--bind 127.0.0.1:$PORT")


def start(service_dir: Path, env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen(
            ["/bin/sh", "-c", entrypoint(service_dir)],
            cwd=service_dir,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_ready(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{url} exited at start:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    pytest.fail(f"{url} not ready after {START_SECONDS} s:\n{log.read_text()[-3000:]}")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)


def test_every_staged_service_installs_alone_and_serves(tmp_path):
    build = tmp_path / "build"
    for service in names.SERVICES:
        staged = stage.stage(service, build)
        # Nothing of another service, and the specs beside services/.
        others = set(names.SERVICES) - {service}
        assert not any((staged / "services" / other).exists() for other in others)
        assert sorted(p.name for p in (staged / "openapi").iterdir()) == sorted(
            stage.SPECS[service]
        )
        for name in ("app.yaml", "requirements.txt", ".gcloudignore"):
            assert (staged / name).is_file(), name

    venvs = {service: tmp_path / f"venv-{service}" for service in names.SERVICES}
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=4) as pool:
        failures = dict(
            zip(
                names.SERVICES,
                pool.map(
                    make_venv,
                    [build / s for s in names.SERVICES],
                    [venvs[s] for s in names.SERVICES],
                ),
                strict=True,
            )
        )
    install_seconds = time.monotonic() - started
    for service, failure in failures.items():
        assert not failure, f"{service} requirements do not install:\n{failure}"

    ports = {service: free_port() for service in names.SERVICES}
    auth_url = f"http://127.0.0.1:{ports['auth']}"
    settings = {
        "auth": {},
        "tasks": {"AUTH_JWKS_URL": f"{auth_url}/api/auth/jwks.json"},
        "converter": {},
        "notifier": {},
    }
    processes: dict[str, subprocess.Popen] = {}
    try:
        for service in names.SERVICES:
            var = tmp_path / f"var-{service}"
            var.mkdir()
            env = service_env(
                venvs[service],
                var,
                PORT=str(ports[service]),
                DATABASE_URL=f"sqlite:///{var / (service + '.db')}",
                **settings[service],
            )
            if (build / service / "services" / service / "migrations").is_dir():
                subprocess.run(
                    [
                        str(venvs[service] / "bin" / "python"),
                        "-m",
                        "services.shared.migrate",
                        service,
                    ],
                    cwd=build / service,
                    env=env,
                    check=True,
                    capture_output=True,
                )
            log = tmp_path / f"{service}.log"
            processes[service] = start(build / service, env, log)

        for service, process in processes.items():
            wait_ready(
                f"http://127.0.0.1:{ports[service]}/healthz",
                process,
                tmp_path / f"{service}.log",
            )

        # Across the staged services: sign up and log in on auth, then tasks
        # verifies the token with auth's published keys.
        name = f"staged{uuid.uuid4().hex[:8]}"
        signup = httpx.post(
            f"{auth_url}/api/auth/signup",
            json={
                "username": name,
                "email": f"{name}@example.com",
                "password1": "correct horse battery",
                "password2": "correct horse battery",
            },
            timeout=20,
        )
        assert signup.status_code == 201, signup.text
        login = httpx.post(
            f"{auth_url}/api/auth/login",
            json={"username": name, "password": "correct horse battery"},
            timeout=20,
        )
        assert login.status_code == 200, login.text
        tasks = httpx.get(
            f"http://127.0.0.1:{ports['tasks']}/api/tasks",
            headers={"Authorization": f"Bearer {login.json()['token']}"},
            timeout=20,
        )
        assert tasks.status_code == 200, tasks.text
        assert tasks.json() == []

        for service in ("converter", "notifier"):
            refused = httpx.post(
                f"http://127.0.0.1:{ports[service]}/_ah/push-handlers/"
                + ("conversion-requests" if service == "converter" else "task-events"),
                json={},
                timeout=10,
            )
            assert refused.status_code == 401
            assert "www-authenticate" in refused.headers
    finally:
        for process in processes.values():
            stop(process)

    logging.getLogger(__name__).info(
        "four environments installed in %.0f s with %s",
        install_seconds,
        "uv" if installer() else "pip",
    )
