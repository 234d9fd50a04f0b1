import json
import os
import stat
import sys
import time
from pathlib import Path

import pytest

from devstack.runner import (
    SERVICES,
    Child,
    Stack,
    ensure_push_token,
    service_environ,
    stack_environ,
    uses_relay,
)
from devstack.settings import SettingError, read_endpoints


def test_a_prefixed_setting_reaches_its_service_only_unprefixed():
    base = {
        "TASKS_DATABASE_URL": "postgresql://db/tasks",
        "AUTH_DATABASE_URL": "postgresql://db/auth",
        "DATABASE_URL": "sqlite:///shared.db",
        "LOG_LEVEL": "debug",
    }

    tasks = service_environ(base, "tasks")
    auth = service_environ(base, "auth")
    notifier = service_environ(base, "notifier")

    assert tasks["DATABASE_URL"] == "postgresql://db/tasks"
    assert auth["DATABASE_URL"] == "postgresql://db/auth"
    assert notifier["DATABASE_URL"] == "sqlite:///shared.db"
    assert tasks["LOG_LEVEL"] == auth["LOG_LEVEL"] == "debug"


def test_a_setting_whose_name_starts_like_a_service_stays_for_everyone():
    tasks = service_environ({"AUTH_JWKS_URL": "http://127.0.0.1:8081/jwks"}, "tasks")

    assert tasks["AUTH_JWKS_URL"] == "http://127.0.0.1:8081/jwks"


def test_the_stack_wires_each_service_to_the_others_by_port(tmp_path):
    environ = stack_environ({}, 9000, tmp_path, "tok")

    assert environ["VAR_DIR"] == str(tmp_path)
    assert environ["PUSH_TOKEN"] == "tok"
    assert environ["PUBLIC_BASE_URL"] == "http://127.0.0.1:9000"
    assert environ["AUTH_JWKS_URL"] == "http://127.0.0.1:9001/api/auth/jwks.json"
    assert environ["BUS_URL"] == "relay://127.0.0.1:9005"
    assert uses_relay(environ)
    ports = {spec.app_engine_name: 9000 + spec.port_offset for spec in SERVICES}
    assert ports == {"auth": 9001, "default": 9002, "converter": 9003, "notifier": 9004}


def test_what_the_caller_sets_wins_over_the_stack_defaults(tmp_path):
    environ = stack_environ(
        {"BUS_URL": "pubsub://demo", "PUSH_TOKEN": "mine"}, 9000, tmp_path, "tok"
    )

    assert environ["BUS_URL"] == "pubsub://demo"
    assert environ["PUSH_TOKEN"] == "mine"
    assert not uses_relay(environ)


def test_the_push_token_is_made_once_and_kept_private(tmp_path):
    path = tmp_path / "push-token"

    first = ensure_push_token(path)
    second = ensure_push_token(path)

    assert first == second
    assert len(first) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_endpoints_are_read_from_json():
    raw = json.dumps({"default": "http://127.0.0.1:8082/"})

    assert read_endpoints({"DEVSTACK_ENDPOINTS": raw}) == {
        "default": "http://127.0.0.1:8082"
    }
    with pytest.raises(SettingError, match="not JSON"):
        read_endpoints({"DEVSTACK_ENDPOINTS": "{"})
    with pytest.raises(SettingError, match="map service names"):
        read_endpoints({"DEVSTACK_ENDPOINTS": "[1]"})


# A child that starts a long-lived process of its own (as the converter starts
# ffmpeg), writes its pid, then waits or exits.
SPAWNER = """
import subprocess, sys, time
helper = subprocess.Popen(["sleep", "60"])
open(sys.argv[1], "w").write(str(helper.pid))
if sys.argv[2] == "exit":
    sys.exit(3)
time.sleep(60)
"""


def _spawning_child(tmp_path, mode: str) -> tuple[Child, Path]:
    pid_file = tmp_path / f"helper-{mode}.pid"
    argv = [sys.executable, "-c", SPAWNER, str(pid_file), mode]
    return Child("spawner", argv, dict(os.environ), 0, None), pid_file


def _helper_pid(pid_file: Path) -> int:
    deadline = time.monotonic() + 10
    while not pid_file.is_file() or not pid_file.read_text():
        assert time.monotonic() < deadline, "the child never started its helper"
        time.sleep(0.02)
    return int(pid_file.read_text())


def _gone(pid: int, within: float = 10) -> bool:
    """Not running: gone, or a zombie waiting for init to reap it."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_stopping_the_stack_stops_what_each_child_started(tmp_path):
    child, pid_file = _spawning_child(tmp_path, "wait")
    stack = Stack(port=0, var_dir=tmp_path, environ={}, services=())
    stack._children = [child]
    child.start()
    helper = _helper_pid(pid_file)

    stack._stop_all()

    assert child.exit_code() is not None
    assert _gone(helper)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_a_child_that_died_leaves_nothing_behind_when_started_again(tmp_path):
    child, pid_file = _spawning_child(tmp_path, "exit")
    stack = Stack(port=0, var_dir=tmp_path, environ={}, services=())
    stack._children = [child]
    stack._write_state = lambda ready: None  # type: ignore[method-assign]
    try:
        child.start()
        orphan = _helper_pid(pid_file)
        first = child.process
        first.wait(timeout=10)
        pid_file.unlink()

        stack._supervise()

        assert _gone(orphan)
        assert child.process is not first
        assert len(child.restarts) == 1
    finally:
        stack._stop_all()
