"""Helpers shared by the services' HTTP edges."""

from __future__ import annotations

import logging
from pathlib import Path

from connexion.resolver import Resolver
from connexion.security import BearerSecurityHandler


def spec_dir() -> Path:
    """The repository's ``openapi/`` folder; staged deployments keep it beside
    ``services/``."""
    return Path(__file__).resolve().parents[2] / "openapi"


def handler_resolver(handlers: object) -> Resolver:
    """Resolve each ``operationId`` to the same-named attribute of
    ``handlers``: handlers are methods of an object the app factory built,
    so no handler reaches for module-level state."""

    def resolve(operation_id: str):
        name = operation_id.rsplit(".", 1)[-1]
        try:
            return getattr(handlers, name)
        except AttributeError:
            raise ValueError(
                f"{type(handlers).__name__} has no handler {name!r}"
            ) from None

    return Resolver(function_resolver=resolve)


class MethodBearerHandler(BearerSecurityHandler):
    """connexion's bearer check, calling a method of the app's handlers
    instead of a function named in the spec. Pass it to ``AsyncApp`` as
    ``security_map={"bearer": functools.partial(MethodBearerHandler, fn)}``."""

    def __init__(self, bearer_info) -> None:
        self._bearer_info = bearer_info

    def _resolve_func(self, security_scheme):
        return self._bearer_info


class _MultipleBodyTypesNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("this operation accepts multiple")


def quiet_multiple_body_types_notice() -> None:
    """Drop connexion's per-request notice that an operation takes several
    body types: sign-up, log-in and re-conversion take JSON and form bodies
    on purpose, for the first version's clients."""
    notices = logging.getLogger("connexion.operations.openapi3")
    if not any(isinstance(f, _MultipleBodyTypesNotice) for f in notices.filters):
        notices.addFilter(_MultipleBodyTypesNotice())
