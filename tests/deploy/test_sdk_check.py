"""The staged production files, parsed by the Cloud SDK's own App Engine
parsers (those `gcloud app deploy` validates with)."""

from __future__ import annotations

import shutil

import pytest

from deploy import deploy, emulators, names, stage


@pytest.fixture
def sdk():
    if emulators.sdk_root() is None:
        pytest.skip("Google Cloud SDK not available: gcloud is not on PATH")


def test_every_staged_file_parses_as_app_engine_will(sdk, tmp_path):
    for service in names.SERVICES:
        stage.stage(service, tmp_path, project="audiomill-prod")
    shutil.copy2(names.REPO_ROOT / "dispatch.yaml", tmp_path / "dispatch.yaml")
    shutil.copy2(deploy.CRON, tmp_path / "cron.yaml")

    parsed = deploy.sdk_check(
        [tmp_path / s / "app.yaml" for s in names.SERVICES]
        + [tmp_path / "dispatch.yaml", tmp_path / "cron.yaml"]
    )

    apps = {p["service"]: p for p in parsed if "service" in p}
    assert set(apps) == set(names.SERVICES.values())
    for app in apps.values():
        assert app["runtime"] == "python313"
        assert app["entrypoint"].startswith("exec python -m services.shared.gcp.")
        assert app["env_variables"]["PUSH_AUTH"] == "oidc"
    assert apps["converter"]["instance_class"] == "F4_1G"
    assert float(apps["converter"]["target_cpu_utilization"]) == 0.7
    [dispatch] = [p["dispatch"] for p in parsed if "dispatch" in p]
    assert dispatch == [["*/api/auth/*", "auth"], ["*/api/*", "default"]]
    [cron] = [p["cron"] for p in parsed if "cron" in p]
    assert cron == [["/_ah/cron/flush-outbox", "every 1 minutes"]]


def test_a_key_app_engine_does_not_know_is_refused(sdk, tmp_path):
    bad = tmp_path / "app.yaml"
    bad.write_text(
        "runtime: python313\nentrypoint: x\nautomatic_scaling:\n  max_instance: 3\n"
    )

    with pytest.raises(deploy.DeployError, match="max_instance"):
        deploy.sdk_check([bad])
