"""Names and addresses shared by staging, provisioning and deploying.

One place derives, from a project id, where each App Engine service answers
and which account signs push tokens, so the subscriptions `provision` creates
and the settings `stage` writes always agree.
"""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

# App Engine service name of each service folder; tasks is the default service.
SERVICES = {
    "auth": "auth",
    "tasks": "default",
    "converter": "converter",
    "notifier": "notifier",
}
# The order App Engine needs: the default service exists before any other.
DEPLOY_ORDER = ("tasks", "auth", "converter", "notifier")

# Port offsets of the local stack (docs/development.md).
LOCAL_PORT_OFFSETS = {"auth": 1, "default": 2, "converter": 3, "notifier": 4}

# Apps created since 2020 also answer, and are documented, with their region
# id: https://{service}-dot-{project}.REGION_ID.r.appspot.com. Staging and
# provisioning take the same --endpoint-template, so audiences always agree.
APPSPOT_TEMPLATE = "https://{service}-dot-{project}.appspot.com"
PUSH_ACCOUNT_NAME = "audiomill-push"


def folder_of(app_engine_service: str) -> str:
    """`default` -> `tasks`; the other names are the same."""
    for folder, name in SERVICES.items():
        if name == app_engine_service:
            return folder
    raise KeyError(app_engine_service)


def service_base_url(
    service: str, project: str, template: str = APPSPOT_TEMPLATE
) -> str:
    """Where an App Engine service answers, e.g. converter-dot-P.appspot.com."""
    return template.format(service=service, project=project).rstrip("/")


def public_base_url(project: str, template: str = APPSPOT_TEMPLATE) -> str:
    """The default service's own host (PROJECT.appspot.com), where
    dispatch.yaml routes the public API."""
    if "{service}-dot-" in template:
        bare = template.replace("{service}-dot-", "")
        return bare.format(project=project).rstrip("/")
    return service_base_url("default", project, template)


def push_audience(service: str, project: str, template: str = APPSPOT_TEMPLATE) -> str:
    """The OIDC audience of pushes to one service: its own base URL, so a token
    minted for one service is refused by the others."""
    return service_base_url(service, project, template)


def push_service_account(project: str) -> str:
    return f"{PUSH_ACCOUNT_NAME}@{project}.iam.gserviceaccount.com"


def pubsub_service_agent(project_number: str) -> str:
    return f"service-{project_number}@gcp-sa-pubsub.iam.gserviceaccount.com"
