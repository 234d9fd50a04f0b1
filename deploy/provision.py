"""Create the Pub/Sub topology of `pubsub.yaml`, on Google Cloud or the emulator.

    python -m deploy.provision --project P [--project-number N] [--dry-run]
    python -m deploy.provision --emulator [--project local] [--push-token T]

For each subscription in `pubsub.yaml`: its topic; the push subscription with
its endpoint, ack deadline, retry policy and dead-letter policy; the
dead-letter topic `<subscription>-dead-letter` with a pull subscription of the
same name, so a dead letter stays readable. Subscriptions never expire (the
default would delete one after 31 days without traffic).

On Google Cloud a push carries an OIDC token for the push service account with
the receiving service's base URL as audience (`deploy.names`). On the emulator,
which sends no token, the endpoint is the local port of the service with the
shared push token in `?token=`. The emulator stores the dead-letter and retry
policies but does not apply them.

Idempotent: what matches is left alone, what differs is updated in place, and
the run prints one line per change. A second run prints none.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from deploy import names
from devstack.topology import Subscription, Topology

logger = logging.getLogger(__name__)

DEAD_LETTER_RETENTION = datetime.timedelta(days=7)
UPDATABLE = (
    "push_config",
    "ack_deadline_seconds",
    "retry_policy",
    "dead_letter_policy",
    "expiration_policy",
    "message_retention_duration",
)


class ProvisionError(Exception):
    """The project cannot be brought to the wanted state; the message says why."""


@dataclass(frozen=True)
class PushTarget:
    """Where and how one App Engine service receives pushes."""

    base_url: str
    query: dict[str, str] = field(default_factory=dict)
    service_account: str | None = None
    audience: str | None = None

    def endpoint(self, path: str) -> str:
        url = f"{self.base_url}{path}"
        return f"{url}?{urlencode(self.query)}" if self.query else url


@dataclass
class Plan:
    """What a run did (or, with --dry-run, would do)."""

    changes: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    def change(self, line: str) -> None:
        self.changes.append(line)
        logger.info("%s", line)


def cloud_targets(
    project: str, service_account: str | None, template: str
) -> dict[str, PushTarget]:
    account = service_account or names.push_service_account(project)
    return {
        service: PushTarget(
            base_url=names.service_base_url(service, project, template),
            service_account=account,
            audience=names.push_audience(service, project, template),
        )
        for service in names.SERVICES.values()
    }


def emulator_targets(
    push_token: str, base_port: int, overrides: dict[str, str]
) -> dict[str, PushTarget]:
    targets = {}
    for service, offset in names.LOCAL_PORT_OFFSETS.items():
        base = overrides.get(service, f"http://127.0.0.1:{base_port + offset}")
        targets[service] = PushTarget(
            base_url=base.rstrip("/"), query={"token": push_token}
        )
    return targets


def desired_subscription(project: str, sub: Subscription, target: PushTarget) -> Any:
    from google.pubsub_v1 import types

    push = types.PushConfig(push_endpoint=target.endpoint(sub.path))
    if target.service_account:
        push.oidc_token = types.PushConfig.OidcToken(
            service_account_email=target.service_account,
            audience=target.audience or "",
        )
    subscription = types.Subscription(
        name=f"projects/{project}/subscriptions/{sub.name}",
        topic=f"projects/{project}/topics/{sub.topic}",
        push_config=push,
        ack_deadline_seconds=_ack_deadline(sub),
        retry_policy=_retry_policy(sub),
        expiration_policy=types.ExpirationPolicy(),
    )
    if sub.max_delivery_attempts:
        subscription.dead_letter_policy = types.DeadLetterPolicy(
            dead_letter_topic=f"projects/{project}/topics/{sub.dead_letter_topic}",
            max_delivery_attempts=_max_delivery_attempts(sub),
        )
    return subscription


def dead_letter_subscription(project: str, sub: Subscription) -> Any:
    from google.pubsub_v1 import types

    name = sub.dead_letter_topic
    return types.Subscription(
        name=f"projects/{project}/subscriptions/{name}",
        topic=f"projects/{project}/topics/{name}",
        ack_deadline_seconds=60,
        message_retention_duration=DEAD_LETTER_RETENTION,
        expiration_policy=types.ExpirationPolicy(),
    )


def _ack_deadline(sub: Subscription) -> int:
    seconds = int(sub.ack_deadline_seconds)
    if not 10 <= seconds <= 600:
        raise ProvisionError(
            f"{sub.name}: Pub/Sub allows ack deadlines of 10 to 600 s, not {seconds}"
        )
    return seconds


def _retry_policy(sub: Subscription) -> Any:
    from google.pubsub_v1 import types

    if sub.maximum_backoff_seconds > 600:
        raise ProvisionError(
            f"{sub.name}: Pub/Sub allows a backoff of at most 600 s, "
            f"not {sub.maximum_backoff_seconds:g}"
        )
    return types.RetryPolicy(
        minimum_backoff=datetime.timedelta(seconds=sub.minimum_backoff_seconds),
        maximum_backoff=datetime.timedelta(seconds=sub.maximum_backoff_seconds),
    )


def _max_delivery_attempts(sub: Subscription) -> int:
    attempts = int(sub.max_delivery_attempts or 0)
    if not 5 <= attempts <= 100:
        raise ProvisionError(
            f"{sub.name}: Pub/Sub allows 5 to 100 delivery attempts before "
            f"dead-lettering, not {attempts}"
        )
    return attempts


def view(subscription: Any, fields: tuple[str, ...]) -> dict[str, Any]:
    """The fields we manage, in a form two subscriptions can be compared by."""
    push = subscription.push_config
    retry = subscription.retry_policy
    dead = subscription.dead_letter_policy
    expiry = subscription.expiration_policy
    every = {
        "push_config": (
            push.push_endpoint,
            push.oidc_token.service_account_email,
            push.oidc_token.audience,
        ),
        "ack_deadline_seconds": subscription.ack_deadline_seconds,
        "retry_policy": (
            _seconds(retry.minimum_backoff),
            _seconds(retry.maximum_backoff),
        ),
        "dead_letter_policy": (dead.dead_letter_topic, dead.max_delivery_attempts),
        "expiration_policy": _seconds(expiry.ttl),
        "message_retention_duration": _seconds(subscription.message_retention_duration),
    }
    return {name: every[name] for name in fields}


def _seconds(value: Any) -> float:
    if value is None:
        return 0.0
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    return float(getattr(value, "seconds", 0)) + getattr(value, "nanos", 0) / 1e9


class Provisioner:
    def __init__(
        self,
        project: str,
        publisher: Any = None,
        subscriber: Any = None,
        dry_run: bool = False,
    ) -> None:
        from google.cloud import pubsub_v1

        self.project = project
        self.publisher = publisher or pubsub_v1.PublisherClient()
        self.subscriber = subscriber or pubsub_v1.SubscriberClient()
        self.dry_run = dry_run
        self.plan = Plan()

    def run(
        self,
        topology: Topology,
        targets: dict[str, PushTarget],
        service_agent: str | None = None,
    ) -> Plan:
        for topic in topology.topics:
            self.ensure_topic(topic)
        for sub in topology.subscriptions:
            if sub.service not in targets:
                raise ProvisionError(f"{sub.name}: unknown service {sub.service!r}")
            if sub.max_delivery_attempts:
                self.ensure_subscription(
                    dead_letter_subscription(self.project, sub),
                    (
                        "ack_deadline_seconds",
                        "expiration_policy",
                        "message_retention_duration",
                    ),
                )
            self.ensure_subscription(
                desired_subscription(self.project, sub, targets[sub.service]),
                UPDATABLE[:-1],
            )
            if service_agent and sub.max_delivery_attempts:
                self.grant_dead_letter_roles(sub, service_agent)
        return self.plan

    def ensure_topic(self, topic: str) -> None:
        from google.api_core import exceptions

        path = f"projects/{self.project}/topics/{topic}"
        try:
            self.publisher.get_topic(topic=path)
            self.plan.unchanged.append(path)
            return
        except exceptions.NotFound:
            pass
        self.plan.change(f"create topic {path}")
        if not self.dry_run:
            with contextlib.suppress(exceptions.AlreadyExists):
                self.publisher.create_topic(name=path)

    def ensure_subscription(self, wanted: Any, fields: tuple[str, ...]) -> None:
        from google.api_core import exceptions
        from google.protobuf import field_mask_pb2

        try:
            current = self.subscriber.get_subscription(subscription=wanted.name)
        except exceptions.NotFound:
            self.plan.change(f"create subscription {wanted.name} on {wanted.topic}")
            if not self.dry_run:
                self.subscriber.create_subscription(request=wanted)
            return

        if current.topic != wanted.topic:
            raise ProvisionError(
                f"{wanted.name} is attached to {current.topic}, not {wanted.topic}; "
                "Pub/Sub cannot move a subscription: delete it and run again"
            )
        have, want = view(current, fields), view(wanted, fields)
        differing = [name for name in fields if have[name] != want[name]]
        if not differing:
            self.plan.unchanged.append(wanted.name)
            return
        self.plan.change(f"update subscription {wanted.name}: {', '.join(differing)}")
        if not self.dry_run:
            self.subscriber.update_subscription(
                request={
                    "subscription": wanted,
                    "update_mask": field_mask_pb2.FieldMask(paths=differing),
                }
            )

    def grant_dead_letter_roles(self, sub: Subscription, service_agent: str) -> None:
        """Let Pub/Sub's own agent move messages to the dead-letter topic."""
        member = f"serviceAccount:{service_agent}"
        topic = f"projects/{self.project}/topics/{sub.dead_letter_topic}"
        subscription = f"projects/{self.project}/subscriptions/{sub.name}"
        self._grant(self.publisher, topic, "roles/pubsub.publisher", member)
        self._grant(self.subscriber, subscription, "roles/pubsub.subscriber", member)

    def _grant(self, client: Any, resource: str, role: str, member: str) -> None:
        if self.dry_run and resource not in self.plan.unchanged:
            # The resource may not exist yet on a dry run.
            self.plan.change(f"grant {role} on {resource} to {member} (if missing)")
            return
        policy = client.get_iam_policy(request={"resource": resource})
        for binding in policy.bindings:
            if binding.role == role and member in binding.members:
                return
        self.plan.change(f"grant {role} on {resource} to {member}")
        if self.dry_run:
            return
        for binding in policy.bindings:
            if binding.role == role:
                binding.members.append(member)
                break
        else:
            policy.bindings.add(role=role, members=[member])
        client.set_iam_policy(request={"resource": resource, "policy": policy})


def listing(project: str, publisher: Any = None, subscriber: Any = None) -> dict:
    """Every topic and subscription of a project with its managed fields."""
    from google.cloud import pubsub_v1

    publisher = publisher or pubsub_v1.PublisherClient()
    subscriber = subscriber or pubsub_v1.SubscriberClient()
    topics = sorted(
        t.name for t in publisher.list_topics(project=f"projects/{project}")
    )
    subscriptions = {
        s.name: {"topic": s.topic, **view(s, UPDATABLE)}
        for s in subscriber.list_subscriptions(project=f"projects/{project}")
    }
    return {"topics": topics, "subscriptions": dict(sorted(subscriptions.items()))}


def read_push_token(explicit: str | None) -> str:
    token = explicit or os.environ.get("PUSH_TOKEN")
    if token:
        return token
    path = Path(os.environ.get("VAR_DIR", names.REPO_ROOT / "var")) / "push-token"
    if path.is_file():
        return path.read_text().strip()
    raise ProvisionError(
        "the emulator's push endpoints need the shared push token: pass "
        f"--push-token, set PUSH_TOKEN, or start the local stack once to make {path}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--project", help="the Google Cloud project id")
    parser.add_argument("--config", type=Path, default=names.REPO_ROOT / "pubsub.yaml")
    parser.add_argument("--dry-run", action="store_true", help="print, change nothing")
    cloud = parser.add_argument_group("Google Cloud")
    cloud.add_argument("--service-account", help="push OIDC account (default: derived)")
    cloud.add_argument(
        "--endpoint-template",
        default=names.APPSPOT_TEMPLATE,
        help="service URLs, as for stage and deploy (default: %(default)s)",
    )
    cloud.add_argument(
        "--project-number",
        help="grant Pub/Sub's service agent the dead-letter roles it needs",
    )
    local = parser.add_argument_group("emulator")
    local.add_argument(
        "--emulator",
        action="store_true",
        help="provision the emulator at PUBSUB_EMULATOR_HOST (push with ?token=)",
    )
    local.add_argument("--push-token")
    local.add_argument(
        "--base-port", type=int, default=int(os.environ.get("PORT", 8080))
    )
    local.add_argument(
        "--endpoint",
        action="append",
        default=[],
        metavar="SERVICE=URL",
        help="where an App Engine service listens locally (repeatable)",
    )
    options = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    try:
        topology = Topology.load(options.config)
        if options.emulator:
            if not os.environ.get("PUBSUB_EMULATOR_HOST"):
                raise ProvisionError("--emulator needs PUBSUB_EMULATOR_HOST")
            project = options.project or "local"
            overrides = dict(item.split("=", 1) for item in options.endpoint)
            targets = emulator_targets(
                read_push_token(options.push_token), options.base_port, overrides
            )
            agent = None
        else:
            if os.environ.get("PUBSUB_EMULATOR_HOST"):
                raise ProvisionError(
                    "PUBSUB_EMULATOR_HOST is set: pass --emulator, or unset it "
                    "to provision Google Cloud"
                )
            if not options.project:
                raise ProvisionError("--project is required for Google Cloud")
            project = options.project
            targets = cloud_targets(
                project, options.service_account, options.endpoint_template
            )
            agent = (
                names.pubsub_service_agent(options.project_number)
                if options.project_number
                else None
            )
        plan = Provisioner(project, dry_run=options.dry_run).run(
            topology, targets, agent
        )
    except ProvisionError as exc:
        sys.stderr.write(f"provision: {exc}\n")
        return 1
    verb = "would change" if options.dry_run else "changed"
    logger.info(
        "%s %d, unchanged %d (project %s)",
        verb,
        len(plan.changes),
        len(plan.unchanged),
        project,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
