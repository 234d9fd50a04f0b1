"""Staging rules and the deploy plan, without Google Cloud (gcloud is a fake
here that records its arguments)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest
import yaml

from deploy import deploy, names, provision, stage


def test_project_settings_name_every_google_resource(tmp_path):
    staged = stage.stage("converter", tmp_path, project="audiomill-prod")
    env = yaml.safe_load((staged / "app.yaml").read_text())["env_variables"]

    assert env["BUS_URL"] == "pubsub://audiomill-prod"
    assert env["STORAGE_URL"] == "gs://audiomill-prod-audiomill"
    assert env["PUSH_AUTH"] == "oidc"
    assert env["PUSH_AUDIENCE"] == "https://converter-dot-audiomill-prod.appspot.com"
    assert env["PUSH_SERVICE_ACCOUNT"] == (
        "audiomill-push@audiomill-prod.iam.gserviceaccount.com"
    )
    assert env["TRANSCODE_TIMEOUT_SECONDS"] == "540"


def test_a_regional_endpoint_template_reaches_staging_and_provisioning_alike(
    tmp_path,
):
    template = "https://{service}-dot-{project}.ew.r.appspot.com"
    build = tmp_path / "build"
    for_make = [
        "--project",
        "p1",
        "--endpoint-template",
        template,
        "--out",
        str(build),
        "tasks",
        "converter",
    ]
    assert stage.main(for_make) == 0
    tasks, converter = (
        yaml.safe_load((build / name / "app.yaml").read_text())["env_variables"]
        for name in ("tasks", "converter")
    )
    pushes = provision.cloud_targets("p1", None, template)

    assert tasks["PUBLIC_BASE_URL"] == "https://p1.ew.r.appspot.com"
    assert tasks["AUTH_JWKS_URL"] == (
        "https://auth-dot-p1.ew.r.appspot.com/api/auth/jwks.json"
    )
    assert converter["PUSH_AUDIENCE"] == pushes["converter"].audience
    assert tasks["PUSH_AUDIENCE"] == pushes["default"].audience
    assert pushes["converter"].endpoint("/x") == (
        "https://converter-dot-p1.ew.r.appspot.com/x"
    )


def test_deploy_stages_with_the_endpoint_template_it_is_given(fake_gcloud, tmp_path):
    template = "https://{service}-dot-{project}.ew.r.appspot.com"

    deploy.deploy(
        "p1", ["notifier"], tmp_path / "build", template=template, dry_run=True
    )

    staged = yaml.safe_load((tmp_path / "build" / "notifier" / "app.yaml").read_text())
    assert staged["env_variables"]["PUSH_AUDIENCE"] == (
        "https://notifier-dot-p1.ew.r.appspot.com"
    )


def test_secrets_are_references_and_plain_ones_are_refused(tmp_path):
    staged = stage.stage("auth", tmp_path, project="p1")
    env = yaml.safe_load((staged / "app.yaml").read_text())["env_variables"]
    assert env["DATABASE_URL"] == (
        "sm://projects/p1/secrets/auth-database-url/versions/latest"
    )
    assert env["AUTH_SIGNING_KEY"].startswith("sm://projects/p1/secrets/")

    for assignment in (
        "SENDGRID_API_KEY=SG.abc",
        "DATABASE_URL=postgresql+psycopg2://app:hunter2@/auth",
        "PUSH_TOKEN=abc",
    ):
        with pytest.raises(stage.StageError, match="looks like a secret"):
            stage.stage("notifier", tmp_path, assignments=[assignment])


def test_layers_override_in_order(tmp_path):
    env_file = {
        "common": {"STORAGE_URL": "gs://my-bucket/prod", "LOG_LEVEL": "warning"},
        "tasks": {"LOG_LEVEL": "debug"},
    }
    staged = stage.stage(
        "tasks",
        tmp_path,
        project="p1",
        env_file=env_file,
        assignments=["tasks.MAX_UPLOAD_BYTES=1000", "auth.LOG_LEVEL=error"],
    )
    env = yaml.safe_load((staged / "app.yaml").read_text())["env_variables"]

    assert env["STORAGE_URL"] == "gs://my-bucket/prod"
    assert env["LOG_LEVEL"] == "debug"
    assert env["MAX_UPLOAD_BYTES"] == "1000"
    assert env["AUTH_JWKS_URL"] == (
        "https://auth-dot-p1.appspot.com/api/auth/jwks.json"
    )


def test_requirements_inline_includes_and_add_the_google_layer(tmp_path):
    root = tmp_path / "repo"
    service = root / "services" / "notifier"
    service.mkdir(parents=True)
    (root / "services" / "base.txt").write_text("httpx>=0.27\nPyYAML>=6\n")
    (service / "requirements.txt").write_text(
        "# comment\n-r ../base.txt\nGunicorn>=22  # pinned lower\nsendgrid>=6\n"
    )

    lines = stage.requirements(service)

    assert lines[:4] == ["httpx>=0.27", "PyYAML>=6", "Gunicorn>=22", "sendgrid>=6"]
    assert "google-cloud-secret-manager>=2.20" in lines
    assert sum(line.lower().startswith("gunicorn") for line in lines) == 1


def test_code_importing_another_service_is_refused(tmp_path):
    code = tmp_path / "services" / "auth"
    code.mkdir(parents=True)
    (code / "x.py").write_text("from services.tasks import models\n")

    with pytest.raises(stage.StageError, match="imports services.tasks"):
        stage.check_imports(tmp_path / "services", "auth")


def test_every_app_yaml_fits_app_engine(tmp_path):
    for service, engine_name in names.SERVICES.items():
        app = yaml.safe_load(
            (names.REPO_ROOT / "services" / service / "app.yaml").read_text()
        )
        assert app["service"] == engine_name
        assert app["runtime"] == "python313"
        assert "uvicorn_worker.UvicornWorker" in app["entrypoint"]
        assert "--bind :$PORT" in app["entrypoint"]
        assert f"'services.{service}.main:create_app()'" in app["entrypoint"]
        assert app["entrypoint"].startswith("python -m services.shared.gcp.secrets ")
        assert app["env_variables"]["PUSH_AUTH"] == "oidc"
        scaling = app["automatic_scaling"]
        assert 0.5 <= scaling["target_cpu_utilization"] <= 0.95
        for name, value in app["env_variables"].items():
            assert not stage.SECRET_SETTINGS.search(name), name
            assert isinstance(value, str), f"{service}: {name} must be quoted"
    converter = yaml.safe_load(
        (names.REPO_ROOT / "services" / "converter" / "app.yaml").read_text()
    )
    assert converter["automatic_scaling"]["target_cpu_utilization"] == 0.7
    assert converter["automatic_scaling"]["max_concurrent_requests"] <= 2
    assert converter["instance_class"].startswith("F4")


@pytest.fixture
def fake_gcloud(tmp_path, monkeypatch):
    """A `gcloud` on PATH that appends its arguments to a file."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "gcloud-calls"
    script = bin_dir / "gcloud"
    script.write_text(f'#!/bin/sh\necho "$*" >> {record}\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return record


def test_deploying_everything_starts_with_default_and_ends_with_routing(
    fake_gcloud, tmp_path
):
    deploy.deploy("audiomill-prod", list(names.SERVICES), tmp_path / "build")

    calls = fake_gcloud.read_text().splitlines()
    assert [c.split()[2].split("/")[-2] for c in calls[:4]] == list(names.DEPLOY_ORDER)
    assert calls[-1].split()[2:4] == [
        str(tmp_path / "build" / "dispatch.yaml"),
        str(tmp_path / "build" / "cron.yaml"),
    ]
    assert all("--project audiomill-prod --quiet" in c for c in calls)


def test_one_service_deploys_alone(fake_gcloud, tmp_path):
    code = subprocess.run(
        [
            sys.executable,
            "-m",
            "deploy.deploy",
            "--project",
            "audiomill-prod",
            "--service",
            "converter",
            "--version",
            "v7",
            "--no-promote",
            "--build",
            str(tmp_path / "build"),
        ],
        cwd=names.REPO_ROOT,
        env=os.environ,
        capture_output=True,
        text=True,
    )
    assert code.returncode == 0, code.stderr

    [call] = fake_gcloud.read_text().splitlines()
    assert call == (
        f"app deploy {tmp_path / 'build' / 'converter' / 'app.yaml'} "
        "--project audiomill-prod --quiet --version v7 --no-promote"
    )
    assert not (tmp_path / "build" / "tasks").exists()


def test_a_failed_deploy_says_what_is_live(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "gcloud").write_text("#!/bin/sh\nexit 1\n")
    (bin_dir / "gcloud").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")

    with pytest.raises(deploy.DeployError, match="deployed before it are live"):
        deploy.deploy("p1", ["tasks"], tmp_path / "build")


def connection_budget() -> dict[str, int]:
    """Most PostgreSQL connections each service can open at full scale:
    instances x gunicorn workers x (pool + the same again as overflow)."""
    import re

    budget = {}
    for service in ("auth", "tasks", "notifier"):
        app = yaml.safe_load(
            (names.REPO_ROOT / "services" / service / "app.yaml").read_text()
        )
        workers = int(re.search(r"--workers (\d+)", app["entrypoint"]).group(1))
        pool = int(app["env_variables"]["DATABASE_POOL_SIZE"])
        instances = app["automatic_scaling"]["max_instances"]
        budget[service] = instances * workers * 2 * pool
    return budget


def test_the_connection_budget_fits_the_documented_cloud_sql_instance():
    budget = connection_budget()
    docs = (names.REPO_ROOT / "docs" / "deployment.md").read_text()

    # docs/deployment.md sizes Cloud SQL with max_connections=250.
    assert sum(budget.values()) <= 250 - 20, budget
    for service, connections in budget.items():
        assert f"| {service} | " in docs and f"| {connections} |" in docs, service
