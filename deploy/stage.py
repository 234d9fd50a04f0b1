"""Stage each service as a directory App Engine can deploy on its own.

    python -m deploy.stage [--project P] [--env-file F] [--set NAME=VALUE]
                           [--endpoint-template T] [--out build] [SERVICE ...]

`build/<service>/` holds:

    app.yaml            the service's, with project settings merged in
    requirements.txt    the service's, its `-r` includes inlined, plus
                        deploy/requirements-gcp.txt
    .gcloudignore
    services/__init__.py, services/shared/, services/<service>/
    openapi/<its specs>  beside services/, where services.shared.web.spec_dir()
                        and the event schemas look for them

and nothing of the other services. `build/dispatch.yaml` is copied for the
routing deploy.

Settings are layered: the service's app.yaml `env_variables`, then what the
project id implies (`--project`: Pub/Sub, bucket, base URLs, push audience and
account, Secret Manager references by the names docs/deployment.md gives),
then `--env-file` (YAML: `common:` and one mapping per service), then `--set`
(`NAME=VALUE` for every service or `SERVICE.NAME=VALUE`). A value that looks
like a secret is refused unless it is an `sm://` reference.
"""

from __future__ import annotations

import argparse
import ast
import logging
import re
import shutil
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from deploy import names

logger = logging.getLogger(__name__)

SPECS = {
    "auth": ("auth.yaml",),
    "tasks": ("tasks.yaml", "events.yaml"),
    "converter": ("converter.yaml", "events.yaml"),
    "notifier": ("notifier.yaml", "events.yaml"),
}
GCP_REQUIREMENTS = Path(__file__).resolve().parent / "requirements-gcp.txt"
IGNORED = shutil.ignore_patterns(
    "__pycache__", "*.pyc", "*.pyo", ".pytest_cache", ".ruff_cache", "*.db", "*.log"
)
GCLOUDIGNORE = """\
# Everything here is what the service needs; only caches stay behind.
.gcloudignore
__pycache__/
*.py[co]
.venv/
"""
# Settings whose value must never be written in clear into a staged app.yaml.
SECRET_SETTINGS = re.compile(r"(PASSWORD|SECRET|API_KEY|SIGNING_KEY|PUSH_TOKEN)$")
SECRET_URL = re.compile(r"^[a-z0-9+]+://[^/@:]*:[^/@]+@")


class StageError(Exception):
    """The service cannot be staged; the message says why."""


def project_settings(
    service: str,
    project: str,
    template: str = names.APPSPOT_TEMPLATE,
) -> dict[str, str]:
    """What the project id implies, for one service (by folder name)."""
    engine = names.SERVICES[service]
    secrets = f"sm://projects/{project}/secrets"
    settings = {
        "BUS_URL": f"pubsub://{project}",
        "STORAGE_URL": f"gs://{project}-audiomill",
        "PUBLIC_BASE_URL": names.public_base_url(project, template),
        "PUSH_SERVICE_ACCOUNT": names.push_service_account(project),
        "PUSH_AUDIENCE": names.push_audience(engine, project, template),
    }
    if service in ("auth", "tasks", "notifier"):
        settings["DATABASE_URL"] = f"{secrets}/{service}-database-url/versions/latest"
    if service == "auth":
        settings["AUTH_SIGNING_KEY"] = f"{secrets}/auth-signing-key/versions/latest"
    if service == "tasks":
        auth_base = names.service_base_url("auth", project, template)
        settings["AUTH_JWKS_URL"] = f"{auth_base}/api/auth/jwks.json"
    if service == "notifier":
        settings["SENDGRID_API_KEY"] = f"{secrets}/sendgrid-api-key/versions/latest"
    return settings


def merged_settings(
    service: str,
    base: Mapping[str, Any],
    project: str | None,
    env_file: Mapping[str, Any],
    assignments: Iterable[str],
    local: bool = False,
    template: str = names.APPSPOT_TEMPLATE,
) -> dict[str, str]:
    settings = {str(k): str(v) for k, v in base.items()}
    if project:
        settings.update(project_settings(service, project, template))
    for layer in (env_file.get("common") or {}, env_file.get(service) or {}):
        settings.update({str(k): str(v) for k, v in layer.items()})
    for assignment in assignments:
        name, sep, value = assignment.partition("=")
        if not sep:
            raise StageError(f"--set expects NAME=VALUE, got {assignment!r}")
        target, dot, bare = name.rpartition(".")
        if dot and target != service:
            continue
        settings[bare] = value
    for name, value in settings.items():
        refused = SECRET_SETTINGS.search(name) or SECRET_URL.match(value)
        if refused and value and not value.startswith("sm://") and not local:
            raise StageError(
                f"{service}: {name} looks like a secret; give it as an "
                "sm://projects/P/secrets/S/versions/V reference instead"
            )
    return dict(sorted(settings.items()))


def requirements(service_dir: Path) -> list[str]:
    """The service's requirement lines with `-r` includes inlined, then the
    Google Cloud layer, each package once (the first mention wins)."""
    lines: list[str] = []

    def read(path: Path, seen: set[Path]) -> None:
        if path in seen:
            return
        seen.add(path)
        for raw in path.read_text().splitlines():
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            if line.startswith(("-r ", "--requirement ")):
                read((path.parent / line.split(None, 1)[1]).resolve(), seen)
            else:
                lines.append(line)

    path = service_dir / "requirements.txt"
    if not path.is_file():
        raise StageError(f"{service_dir.name} has no requirements.txt")
    read(path, set())
    read(GCP_REQUIREMENTS, set())

    kept: dict[str, str] = {}
    for line in lines:
        key = re.split(r"[\s\[<>=!~;@]", line, maxsplit=1)[0].lower()
        key = key.replace("_", "-")
        kept.setdefault(key, line)
    return list(kept.values())


def check_imports(staged: Path, service: str) -> None:
    """Refuse code that imports another service: it would not be there."""
    allowed = {"shared", service}
    for path in staged.rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            modules = []
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                modules = [node.module]
            for module in modules:
                parts = module.split(".")
                if (
                    parts[0] == "services"
                    and len(parts) > 1
                    and parts[1] not in allowed
                ):
                    where = path.relative_to(staged)
                    raise StageError(f"{where} imports {module}, not staged with it")


def stage(
    service: str,
    out: Path,
    project: str | None = None,
    env_file: Mapping[str, Any] | None = None,
    assignments: Iterable[str] = (),
    root: Path = names.REPO_ROOT,
    local: bool = False,
    template: str = names.APPSPOT_TEMPLATE,
) -> Path:
    """Stage one service; `local` (for dev_appserver only) lets a setting hold
    a plain local secret such as the emulator's push token."""
    if service not in names.SERVICES:
        raise StageError(
            f"unknown service {service!r}; one of {', '.join(names.SERVICES)}"
        )
    source = root / "services" / service
    target = out / service
    if target.exists():
        shutil.rmtree(target)
    (target / "services").mkdir(parents=True)

    shutil.copy2(root / "services" / "__init__.py", target / "services" / "__init__.py")
    for folder in ("shared", service):
        shutil.copytree(
            root / "services" / folder, target / "services" / folder, ignore=IGNORED
        )
    (target / "openapi").mkdir()
    for spec in SPECS[service]:
        shutil.copy2(root / "openapi" / spec, target / "openapi" / spec)
    check_imports(target / "services", service)

    app = yaml.safe_load((source / "app.yaml").read_text())
    if app.get("service", "default") != names.SERVICES[service]:
        raise StageError(
            f"{service}/app.yaml names service {app.get('service')!r}, "
            f"expected {names.SERVICES[service]!r}"
        )
    app["env_variables"] = merged_settings(
        service,
        app.get("env_variables") or {},
        project,
        env_file or {},
        assignments,
        local,
        template,
    )
    header = (
        f"# Staged from services/{service}/app.yaml by deploy/stage.py; "
        "edit that file, not this one.\n"
    )
    (target / "app.yaml").write_text(
        header + yaml.safe_dump(app, sort_keys=False, width=100)
    )
    (target / "requirements.txt").write_text("\n".join(requirements(source)) + "\n")
    (target / ".gcloudignore").write_text(GCLOUDIGNORE)
    logger.info("staged %s in %s", service, target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("services", nargs="*", default=list(names.SERVICES))
    parser.add_argument("--out", type=Path, default=names.REPO_ROOT / "build")
    parser.add_argument("--project", help="derive project settings from this id")
    parser.add_argument("--env-file", type=Path, help="YAML: common: / <service>:")
    parser.add_argument(
        "--set", action="append", default=[], metavar="[SERVICE.]NAME=VALUE"
    )
    parser.add_argument(
        "--endpoint-template",
        default=names.APPSPOT_TEMPLATE,
        help="service URLs, as for provision (default: %(default)s)",
    )
    parser.add_argument(
        "--local",
        action="store_true",
        help="for dev_appserver: allow plain local secrets such as a push token",
    )
    options = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    env_file: dict[str, Any] = {}
    if options.env_file:
        env_file = yaml.safe_load(options.env_file.read_text()) or {}
    try:
        for service in options.services:
            stage(
                service,
                options.out,
                options.project,
                env_file,
                options.set,
                local=options.local,
                template=options.endpoint_template,
            )
    except StageError as exc:
        sys.stderr.write(f"stage: {exc}\n")
        return 1
    options.out.mkdir(parents=True, exist_ok=True)
    shutil.copy2(names.REPO_ROOT / "dispatch.yaml", options.out / "dispatch.yaml")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
