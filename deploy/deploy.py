"""Stage and deploy to App Engine: every service, or one.

    python -m deploy.deploy --project P [--service converter] [--env-file F]
                            [--version V] [--no-promote] [--dry-run]
                            [--endpoint-template T]

Deploys in the order App Engine needs (the default service, tasks, first),
then, when every service was deployed, the routing (`dispatch.yaml`) and the
outbox cron (`deploy/cron.yaml`). One service deploys and rolls back on its
own: `--service converter` touches nothing else.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from deploy import names, stage

logger = logging.getLogger(__name__)

CRON = Path(__file__).resolve().parent / "cron.yaml"
SDK_CHECK = Path(__file__).resolve().parent / "sdk_check.py"


class DeployError(Exception):
    """Nothing or only part was deployed; the message says what failed."""


def commands(
    project: str,
    build: Path,
    services: list[str],
    version: str | None = None,
    promote: bool = True,
) -> list[list[str]]:
    flags = ["--project", project, "--quiet"]
    if version:
        flags += ["--version", version]
    if not promote:
        flags.append("--no-promote")
    ordered = [s for s in names.DEPLOY_ORDER if s in services]
    result = [
        ["gcloud", "app", "deploy", str(build / service / "app.yaml"), *flags]
        for service in ordered
    ]
    if set(services) == set(names.SERVICES):
        result.append(
            [
                "gcloud",
                "app",
                "deploy",
                str(build / "dispatch.yaml"),
                str(build / "cron.yaml"),
                "--project",
                project,
                "--quiet",
            ]
        )
    return result


def sdk_check(paths: list[Path]) -> list[dict]:
    """Parse config files with the Cloud SDK's parsers (its bundled Python),
    as `gcloud app deploy` will; raise DeployError naming the bad file."""
    import json

    from deploy.emulators import sdk_root

    root = sdk_root()
    python = (
        root / "platform" / "bundledpythonunix" / "bin" / "python3" if root else None
    )
    if python is None or not python.is_file():
        raise DeployError("the Google Cloud SDK and its bundled Python are needed")
    result = subprocess.run(
        [str(python), str(SDK_CHECK), *map(str, paths)],
        capture_output=True,
        text=True,
        env={"CLOUDSDK_ROOT": str(root), "PATH": "/usr/bin:/bin"},
    )
    if result.returncode != 0:
        raise DeployError(f"App Engine would refuse it: {result.stderr.strip()}")
    return [json.loads(line) for line in result.stdout.splitlines()]


def deploy(
    project: str,
    services: list[str],
    build: Path,
    env_file: dict | None = None,
    version: str | None = None,
    promote: bool = True,
    dry_run: bool = False,
    template: str = names.APPSPOT_TEMPLATE,
) -> list[list[str]]:
    if shutil.which("gcloud") is None and not dry_run:
        raise DeployError("gcloud is not on PATH (install the Google Cloud SDK)")
    for service in services:
        stage.stage(
            service, build, project=project, env_file=env_file or {}, template=template
        )
    shutil.copy2(names.REPO_ROOT / "dispatch.yaml", build / "dispatch.yaml")
    shutil.copy2(CRON, build / "cron.yaml")

    planned = commands(project, build, services, version, promote)
    from deploy.emulators import sdk_root

    # A pre-flight parse where the SDK is laid out as usual; gcloud itself
    # validates again when it deploys.
    if sdk_root() is not None:
        files = [build / s / "app.yaml" for s in services]
        sdk_check([*files, build / "dispatch.yaml", build / "cron.yaml"])
    for command in planned:
        logger.info("$ %s", shlex.join(command))
        if dry_run:
            continue
        result = subprocess.run(command)
        if result.returncode != 0:
            raise DeployError(
                f"{shlex.join(command)} failed with exit code {result.returncode}; "
                "the services deployed before it are live, the rest are not"
            )
    return planned


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--project", required=True)
    parser.add_argument(
        "--service",
        action="append",
        choices=list(names.SERVICES),
        help="deploy only this service (repeatable); default: all and the routing",
    )
    parser.add_argument("--env-file", type=Path, help="YAML settings, see stage")
    parser.add_argument("--version", help="App Engine version id (default: gcloud's)")
    parser.add_argument(
        "--no-promote", action="store_true", help="deploy without sending it traffic"
    )
    parser.add_argument(
        "--endpoint-template",
        default=names.APPSPOT_TEMPLATE,
        help="service URLs, as for provision (default: %(default)s)",
    )
    parser.add_argument("--build", type=Path, default=names.REPO_ROOT / "build")
    parser.add_argument("--dry-run", action="store_true", help="stage and print only")
    options = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    env_file = {}
    if options.env_file:
        env_file = yaml.safe_load(options.env_file.read_text()) or {}
    try:
        deploy(
            options.project,
            options.service or list(names.SERVICES),
            options.build,
            env_file,
            options.version,
            not options.no_promote,
            options.dry_run,
            options.endpoint_template,
        )
    except (DeployError, stage.StageError) as exc:
        sys.stderr.write(f"deploy: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
