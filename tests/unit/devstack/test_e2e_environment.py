"""How the end-to-end suite builds the stack's environment."""

from pathlib import Path

from tests.e2e.stack import isolate, stack_environ


def test_the_shells_stack_settings_are_dropped_and_e2e_ones_take_their_place():
    inherited = {
        "PATH": "/usr/bin",
        "BUS_URL": "pubsub://someone-elses",
        "TASKS_DATABASE_URL": "postgresql://prod/tasks",
        "RELAY_DUPLICATE_DELIVERY": "1",
        "E2E_STORAGE_URL": "gs://bucket",
        "E2E_NOTIFIER_MAIL_URL": "smtp://127.0.0.1:2525",
        "E2E_PROVISION_COMMAND": "provision",
    }

    environ = stack_environ(Path("/tmp/var"), 9000, inherited)

    assert environ["PATH"] == "/usr/bin"
    assert "BUS_URL" not in environ
    assert "TASKS_DATABASE_URL" not in environ
    assert "RELAY_DUPLICATE_DELIVERY" not in environ
    assert environ["STORAGE_URL"] == "gs://bucket"
    assert environ["NOTIFIER_MAIL_URL"] == "smtp://127.0.0.1:2525"
    assert "PROVISION_COMMAND" not in environ
    assert (environ["PORT"], environ["VAR_DIR"]) == ("9000", "/tmp/var")
    assert environ["PUSH_TOKEN"]


def test_each_stack_gets_its_own_pubsub_project_and_storage_prefix():
    environ = isolate(
        {"BUS_URL": "pubsub://local", "STORAGE_URL": "gs://bucket/"}, "e2eabc"
    )

    assert environ["BUS_URL"] == "pubsub://local-e2eabc"
    assert environ["STORAGE_URL"] == "gs://bucket/e2eabc"


def test_embedded_backends_need_no_isolation():
    environ = isolate({"STORAGE_URL": "file:///tmp/var/storage"}, "e2eabc")

    assert environ == {"STORAGE_URL": "file:///tmp/var/storage"}
