"""Start the Pub/Sub and Cloud Storage emulators on 127.0.0.1.

    python -m deploy.emulators [--env-file F] [--bucket B] [-- COMMAND ...]

Prints the environment that points the Google clients at them
(`PUBSUB_EMULATOR_HOST`, `STORAGE_EMULATOR_HOST`). With a COMMAND, runs it
with that environment and stops both emulators when it ends, passing on its
exit code; without one, waits until interrupted. Each emulator runs in its own
process group and is stopped by its process id.

The Pub/Sub emulator is the Google Cloud SDK's (`gcloud beta emulators pubsub
start`, Java); the storage emulator is the `gcp-storage-emulator` package.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

logger = logging.getLogger(__name__)

PUBSUB_START_SECONDS = 60.0
STORAGE_START_SECONDS = 20.0


class EmulatorUnavailable(Exception):
    """The emulator cannot run here; the message says what is missing."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Emulator:
    """One emulator process (and its children, in their own process group)."""

    name: str
    process: subprocess.Popen[bytes]
    host: str
    log_path: Path
    cleanup: list[Path] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self, timeout: float = 10.0) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.process.wait(timeout)
        # Children (the JVM under gcloud) may outlive their parent briefly.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        for path in self.cleanup:
            shutil.rmtree(path, ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def _spawn(name: str, argv: list[str], workdir: Path) -> tuple[subprocess.Popen, Path]:
    log_path = workdir / f"{name}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return process, log_path


def _wait_http(emulator: Emulator, url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if emulator.process.poll() is not None:
            tail = emulator.log_tail()
            emulator.stop()
            raise EmulatorUnavailable(f"{emulator.name} exited at start:\n{tail}")
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    tail = emulator.log_tail()
    emulator.stop()
    raise EmulatorUnavailable(f"{emulator.name} not ready after {seconds:g} s:\n{tail}")


def gcloud_path() -> str | None:
    return shutil.which("gcloud")


def sdk_root() -> Path | None:
    """The Google Cloud SDK root (where `platform/` lives), if there is one."""
    gcloud = gcloud_path()
    if gcloud is None:
        return None
    root = Path(os.path.realpath(gcloud)).parent.parent
    return root if (root / "platform").is_dir() else None


def start_pubsub(port: int | None = None, workdir: Path | None = None) -> Emulator:
    gcloud = gcloud_path()
    if gcloud is None:
        raise EmulatorUnavailable("the Google Cloud SDK (gcloud) is not on PATH")
    if shutil.which("java") is None:
        raise EmulatorUnavailable("Java is not installed (the emulator is a JVM)")
    root = sdk_root()
    if root is not None and not (root / "platform" / "pubsub-emulator").is_dir():
        raise EmulatorUnavailable(
            "the SDK has no Pub/Sub emulator (gcloud components install "
            "pubsub-emulator, or apt-get install google-cloud-cli-pubsub-emulator)"
        )
    port = port or free_port()
    workdir = workdir or Path(tempfile.mkdtemp(prefix="pubsub-emulator-"))
    data_dir = workdir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        gcloud,
        "beta",
        "emulators",
        "pubsub",
        "start",
        f"--host-port=127.0.0.1:{port}",
        f"--data-dir={data_dir}",
        "--quiet",
    ]
    process, log_path = _spawn("pubsub-emulator", argv, workdir)
    emulator = Emulator(
        "Pub/Sub emulator", process, f"127.0.0.1:{port}", log_path, [workdir]
    )
    _wait_http(emulator, f"http://127.0.0.1:{port}/", PUBSUB_START_SECONDS)
    logger.info("Pub/Sub emulator on 127.0.0.1:%s (pid %s)", port, emulator.pid)
    return emulator


def start_storage(port: int | None = None, workdir: Path | None = None) -> Emulator:
    try:
        import gcp_storage_emulator  # noqa: F401
    except ImportError as exc:
        raise EmulatorUnavailable(
            "the gcp-storage-emulator package is missing"
        ) from exc
    port = port or free_port()
    workdir = workdir or Path(tempfile.mkdtemp(prefix="storage-emulator-"))
    argv = [
        sys.executable,
        "-m",
        "gcp_storage_emulator",
        "start",
        "--host=127.0.0.1",
        f"--port={port}",
        "--in-memory",
    ]
    process, log_path = _spawn("storage-emulator", argv, workdir)
    emulator = Emulator(
        "storage emulator", process, f"http://127.0.0.1:{port}", log_path, [workdir]
    )
    _wait_http(emulator, f"http://127.0.0.1:{port}/", STORAGE_START_SECONDS)
    logger.info("storage emulator on 127.0.0.1:%s (pid %s)", port, emulator.pid)
    return emulator


def create_bucket(storage_host: str, bucket: str) -> None:
    """Create `bucket` on the storage emulator (no error if it exists)."""
    response = httpx.post(
        f"{storage_host}/storage/v1/b",
        params={"project": "local"},
        json={"name": bucket},
    )
    if response.status_code not in (200, 409):
        raise EmulatorUnavailable(
            f"cannot create bucket {bucket}: HTTP {response.status_code}"
        )


@contextlib.contextmanager
def running(pubsub: bool = True, storage: bool = True) -> Iterator[dict[str, str]]:
    """Both emulators for the length of a block; yields their environment."""
    started: list[Emulator] = []
    env: dict[str, str] = {}
    try:
        if pubsub:
            emulator = start_pubsub()
            started.append(emulator)
            env["PUBSUB_EMULATOR_HOST"] = emulator.host
        if storage:
            emulator = start_storage()
            started.append(emulator)
            env["STORAGE_EMULATOR_HOST"] = emulator.host
        yield env
    finally:
        for emulator in reversed(started):
            emulator.stop()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    command: list[str] = []
    if "--" in args:
        split = args.index("--")
        args, command = args[:split], args[split + 1 :]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env-file", type=Path, help="also write the exports here")
    parser.add_argument("--bucket", action="append", default=[], help="create it")
    parser.add_argument("--no-pubsub", action="store_true")
    parser.add_argument("--no-storage", action="store_true")
    options = parser.parse_args(args)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    stop = {"now": False}

    def on_signal(signum: int, frame: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, on_signal)
    try:
        with running(not options.no_pubsub, not options.no_storage) as env:
            for bucket in options.bucket:
                create_bucket(env["STORAGE_EMULATOR_HOST"], bucket)
            exports = "".join(f"export {k}={v}\n" for k, v in env.items())
            sys.stdout.write(exports)
            sys.stdout.flush()
            if options.env_file:
                options.env_file.write_text(exports)
            if command:
                return subprocess.call(command, env={**os.environ, **env})
            while not stop["now"]:
                time.sleep(0.5)
    except EmulatorUnavailable as exc:
        sys.stderr.write(f"{exc}\n")
        return 69
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
