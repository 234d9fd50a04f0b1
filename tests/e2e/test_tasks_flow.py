"""Accounts and tasks through the gateway, as a client of the first version
would use them."""

from __future__ import annotations

import httpx

from tests.e2e.client import User


def test_a_user_signs_up_uploads_reconverts_downloads_and_deletes(stack, user, sources):
    original = sources.wav.read_bytes()

    refused = user.upload(sources.wav, "ogg", name="../../etc/tone.wav")
    assert refused.status_code == 400, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert user.http.get("/api/tasks").json() == []

    created = user.upload(sources.wav, "ogg", name="tone.wav")
    assert created.status_code == 201, created.text
    task = created.json()
    assert task["status"] == "uploaded"
    assert task["version"] == 1
    assert (task["original_format"], task["new_format"]) == ("wav", "ogg")
    assert task["filename"] == "tone.wav"
    assert task["size_bytes"] == len(original)
    task_id = task["id"]

    listed = user.http.get("/api/tasks", params={"order": 1, "max": 10})
    assert listed.status_code == 200
    assert [t["id"] for t in listed.json()] == [task_id]

    fetched = user.task(task_id)
    assert fetched["id"] == task_id
    assert fetched["filename"] == "tone.wav"

    reconverted = user.http.put(f"/api/tasks/{task_id}", json={"newFormat": "mp3"})
    assert reconverted.status_code == 200, reconverted.text
    assert reconverted.json()["version"] == 2
    assert reconverted.json()["new_format"] == "mp3"
    assert reconverted.json()["status"] == "uploaded"

    download = user.download(f"/api/tasks/{task_id}/original")
    assert download.status_code == 200
    assert download.content == original
    assert download.headers["content-type"].startswith("audio/")
    partial = user.http.get(
        f"/api/tasks/{task_id}/original", headers={"Range": "bytes=4-11"}
    )
    assert partial.status_code == 206
    assert partial.content == original[4:12]

    deleted = user.http.delete(f"/api/tasks/{task_id}")
    assert deleted.status_code == 204

    gone = user.http.get(f"/api/tasks/{task_id}")
    assert gone.status_code == 404
    assert gone.headers["content-type"].startswith("application/problem+json")
    assert user.http.get(f"/api/tasks/{task_id}/original").status_code == 404


def test_another_users_task_is_not_found(stack, user, sources):
    task = user.create(sources.wav, "flac")
    path = f"/api/tasks/{task['id']}"
    stranger = User.sign_up(stack.base_url)
    try:
        answers = [
            stranger.http.get(path),
            stranger.http.get(f"{path}/original"),
            stranger.http.get(f"/api/download/{task['id']}"),
            stranger.http.put(path, json={"newFormat": "mp3"}),
            stranger.http.delete(path),
        ]
        listed = stranger.http.get("/api/tasks")
    finally:
        stranger.http.close()

    assert [a.status_code for a in answers] == [404] * len(answers)
    assert all(
        a.headers["content-type"].startswith("application/problem+json")
        for a in answers
    )
    assert listed.json() == []
    # Nothing the stranger sent changed the owner's task.
    kept = user.task(task["id"])
    assert (kept["version"], kept["new_format"]) == (1, "flac")
    assert user.download(f"{path}/original").content == sources.wav.read_bytes()


def test_without_a_token_the_api_answers_401_problem(stack, user):
    answer = httpx.get(f"{stack.base_url}/api/tasks")

    assert answer.status_code == 401
    assert answer.headers["content-type"].startswith("application/problem+json")


def test_both_swagger_uis_are_served_through_the_gateway(stack, user):
    for path in ("/api/ui/", "/api/auth/ui/"):
        answer = httpx.get(f"{stack.base_url}{path}")
        assert answer.status_code == 200, path
        assert "swagger" in answer.text.lower()
