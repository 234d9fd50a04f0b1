"""The staged services under the Cloud SDK's dev_appserver.py, with
dispatch.yaml, the Pub/Sub emulator and the Cloud Storage emulator: sign up,
log in and create a task through the dispatcher, and see it converted."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid

import httpx
import pytest

from deploy import dev_appserver, emulators

# dev_appserver.py installs four environments before it serves: seconds with
# uv, minutes with pip.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.pubsub,
    pytest.mark.gcs,
    pytest.mark.timeout(1200),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    out = tmp_path_factory.mktemp("dev-appserver")
    try:
        with dev_appserver.running(out=out / "build") as running:
            yield running
    except (dev_appserver.DevAppserverUnavailable, emulators.EmulatorUnavailable) as e:
        pytest.skip(f"dev_appserver.py not available: {e}")


def ffmpeg() -> str:
    found = shutil.which("ffmpeg")
    if found:
        return found
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def test_sign_up_log_in_and_create_a_task_through_dispatch(server, tmp_path):
    api = httpx.Client(base_url=server.base_url, timeout=30)
    name = f"das{uuid.uuid4().hex[:8]}"
    password = "a long enough password"

    signup = api.post(
        "/api/auth/signup",
        json={
            "username": name,
            "email": f"{name}@example.com",
            "password1": password,
            "password2": password,
        },
    )
    assert signup.status_code == 201, signup.text
    login = api.post("/api/auth/login", json={"username": name, "password": password})
    assert login.status_code == 200, login.text
    auth = {"Authorization": f"Bearer {login.json()['token']}"}

    tone = tmp_path / "tone.wav"
    subprocess.run(
        [ffmpeg(), "-v", "error", "-f", "lavfi", "-i", "sine=frequency=440:duration=2"]
        + ["-ac", "1", str(tone)],
        check=True,
    )
    created = api.post(
        "/api/tasks",
        headers=auth,
        files={"file": ("tone.wav", tone.read_bytes(), "audio/wav")},
        data={"newFormat": "mp3"},
    )
    assert created.status_code == 201, created.text
    task = created.json()
    assert task["size_bytes"] == tone.stat().st_size

    # The rest travels as pushes from the Pub/Sub emulator to the module ports.
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        task = api.get(f"/api/tasks/{task['id']}", headers=auth).json()
        if task["status"] in ("processed", "failed"):
            break
        time.sleep(0.5)
    assert task["status"] == "processed", task

    download = api.get(f"/api/tasks/{task['id']}/converted", headers=auth)
    assert download.status_code == 200
    assert download.content[:3] == b"ID3" or download.content[:2] == b"\xff\xfb"

    # The mail follows the status change, one more push away.
    outbox = server.var_dir / "outbox"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list(outbox.glob("*.eml")):
        time.sleep(0.5)
    time.sleep(1)
    mails = list(outbox.glob("*.eml"))
    assert len(mails) == 1, mails
    assert f"{name}@example.com" in mails[0].read_text(errors="replace")
