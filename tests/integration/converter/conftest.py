"""Real servers for the converter: the service itself under uvicorn, a
relay-shaped publish endpoint, and the Google Cloud emulators."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.shared import events

ROOT = Path(__file__).resolve().parents[3]
PUSH_TOKEN = "integration-push-token"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ffmpeg_path() -> str:
    found = shutil.which("ffmpeg")
    if found:
        return found
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


@pytest.fixture(scope="session")
def make_audio(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    where = tmp_path_factory.mktemp("audio")

    def make(seconds: float, muxer: str = "mp3") -> Path:
        path = where / f"tone-{uuid.uuid4().hex[:8]}.{muxer}"
        subprocess.run(
            [ffmpeg_path(), "-v", "error", "-nostdin", "-y", "-f", "lavfi"]
            + ["-i", f"sine=frequency=440:duration={seconds}", "-f", muxer, str(path)],
            check=True,
            timeout=120,
        )
        return path

    return make


@dataclass
class CaptureRelay:
    """A local HTTP server speaking the relay's publish call; keeps what it
    gets. While ``refusing`` it answers 503, as a relay that is down would."""

    port: int
    published: list[tuple[str, dict[str, Any], dict[str, str]]] = field(
        default_factory=list
    )
    refusing: bool = False

    @property
    def url(self) -> str:
        return f"relay://127.0.0.1:{self.port}"


@pytest.fixture
def capture_relay() -> Iterator[CaptureRelay]:
    relay = CaptureRelay(port=free_port())

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            body = json.loads(self.rfile.read(length))
            if relay.refusing:
                self.send_response(503)
                self.end_headers()
                return
            topic = self.path.rsplit("/", 1)[-1].removesuffix(":publish")
            ids = []
            for message in body["messages"]:
                event = json.loads(base64.b64decode(message["data"]))
                relay.published.append((topic, event, message["attributes"]))
                ids.append(str(len(relay.published)))
            payload = json.dumps({"messageIds": ids}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", relay.port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield relay
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class ServedConverter:
    """The converter under uvicorn, in a process of its own."""

    env: dict[str, str]
    log_path: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.port = free_port()
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory"]
            + ["services.converter.main:create_app"]
            + ["--host", "127.0.0.1", "--port", str(self.port)],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"converter exited: {self.log_tail()}")
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise AssertionError(f"converter did not start: {self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL the service and its ffmpeg, as an instance that dies does."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def push(self, event: dict[str, Any], timeout: float = 120) -> httpx.Response:
        data, attributes = events.encode(event)
        body = {
            "message": {
                "data": base64.b64encode(data).decode(),
                "attributes": attributes,
                "messageId": uuid.uuid4().hex,
                "publishTime": "2026-01-01T00:00:00Z",
            },
            "subscription": (
                "projects/local/subscriptions/converter-conversion-requests"
            ),
        }
        return httpx.post(
            f"{self.base_url}/_ah/push-handlers/conversion-requests",
            params={"token": PUSH_TOKEN},
            json=body,
            timeout=timeout,
        )


@pytest.fixture
def storage_root(tmp_path: Path) -> Path:
    return tmp_path / "storage"


@pytest.fixture
def served_converter(
    tmp_path: Path, capture_relay: CaptureRelay, storage_root: Path
) -> Iterator[ServedConverter]:
    work = tmp_path / "work"
    work.mkdir()
    env = {
        **os.environ,
        "VAR_DIR": str(tmp_path / "var"),
        "STORAGE_URL": f"file://{storage_root}",
        "BUS_URL": capture_relay.url,
        "PUSH_AUTH": "token",
        "PUSH_TOKEN": PUSH_TOKEN,
        "WORK_DIR": str(work),
        "LOG_LEVEL": "info",
    }
    served = ServedConverter(env=env, log_path=tmp_path / "converter.log")
    served.start()
    try:
        yield served
    finally:
        served.stop()
