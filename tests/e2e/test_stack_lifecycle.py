"""The runner itself: Ctrl-C leaves nothing running, a restart loses nothing,
a crashed service is started again."""

from __future__ import annotations

import os
import signal

import httpx

from devstack.runner import port_is_free
from tests.e2e.client import PASSWORD, User, eventually
from tests.e2e.stack import start_stack


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_interrupting_the_runner_stops_every_child_and_a_restart_keeps_data(
    stack_factory,
):
    first = stack_factory("restarted")
    try:
        children = {
            name: child["pid"] for name, child in first.refresh()["children"].items()
        }
        ports = [child["port"] for child in first.state["children"].values()]
        signed_up = User.sign_up(first.base_url)
        signed_up.http.close()

        first.process.send_signal(signal.SIGINT)
        assert first.process.wait(timeout=20) == 0
        assert [name for name, pid in children.items() if _alive(pid)] == []
        assert all(port_is_free(port) for port in ports)
        assert not (first.var_dir / "devstack.json").exists()
    finally:
        first.stop()

    same_data = {
        key: value
        for key, value in first.environ.items()
        if key.endswith("DATABASE_URL") or key in ("BUS_URL", "STORAGE_URL")
    }
    again = start_stack(first.var_dir, same_data, port=first.port)
    try:
        login = httpx.post(
            f"{again.base_url}/api/auth/login",
            json={"username": signed_up.username, "password": PASSWORD},
        )
        assert login.status_code == 200, login.text
    finally:
        again.stop()


def test_a_service_that_dies_is_reported_and_started_again(stack, user):
    auth = stack.child_pid("auth")

    os.kill(auth, signal.SIGKILL)

    eventually(lambda: stack.child_pid("auth") != auth, 10, "auth to be restarted")

    def healthy() -> bool:
        try:
            return httpx.get(f"{stack.service_url('auth')}/healthz").status_code == 200
        except httpx.HTTPError:
            return False

    eventually(healthy, 30, "auth to answer again")
    assert "auth (pid" in stack.log_tail(400)
    User.sign_up(stack.base_url).http.close()
