"""The real gateway process routes every rule of dispatch.yaml to its service.

Each App Engine service name gets an echo server of its own; a request for a
path of each rule must come back from the server the rule names.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from devstack.gateway import DEFAULT_SERVICE, load_rules
from tests.e2e.stack import REPO_ROOT, free_base_port

ECHO = Path(__file__).with_name("echo_servers.py")


def _sample_path(path_pattern: str) -> str:
    return path_pattern[:-1] + "probe" if path_pattern.endswith("*") else path_pattern


def _wait_for(url: str, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{process.args} exited with {process.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise AssertionError(f"{url} did not answer in {timeout:g} s")


@pytest.fixture(scope="module")
def gateway():
    rules = load_rules(REPO_ROOT / "dispatch.yaml")
    names = sorted({rule.service for rule in rules} | {DEFAULT_SERVICE})
    base = free_base_port(len(names) + 1)
    endpoints = {
        name: f"http://127.0.0.1:{base + 1 + i}" for i, name in enumerate(names)
    }

    processes = [
        subprocess.Popen(
            [
                sys.executable,
                str(ECHO),
                *(f"{name}={base + 1 + i}" for i, name in enumerate(names)),
            ],
            cwd=REPO_ROOT,
        ),
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "devstack.gateway:create_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(base),
                "--log-level",
                "warning",
            ],
            cwd=REPO_ROOT,
            env={**os.environ, "DEVSTACK_ENDPOINTS": json.dumps(endpoints)},
        ),
    ]
    try:
        for url in endpoints.values():
            _wait_for(url, processes[0])
        _wait_for(f"http://127.0.0.1:{base}", processes[1])
        yield f"http://127.0.0.1:{base}", rules
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_every_dispatch_rule_reaches_the_service_it_names(gateway):
    url, rules = gateway

    for rule in rules:
        path = _sample_path(rule.path_pattern)
        answer = httpx.post(f"{url}{path}?probe=1", content=b"x" * 1000)
        assert answer.status_code == 200, (rule, answer.text)
        assert answer.json() == {
            "service": rule.service,
            "method": "POST",
            "path": path,
            "query": "probe=1",
            "size": 1000,
        }


def test_a_path_no_rule_matches_reaches_default(gateway):
    url, _ = gateway

    answer = httpx.get(f"{url}/no/rule/matches/this")

    assert answer.json()["service"] == DEFAULT_SERVICE
