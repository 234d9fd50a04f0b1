"""Helpers shared by the services' HTTP edges."""

from __future__ import annotations

from pathlib import Path

from connexion.resolver import Resolver


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
