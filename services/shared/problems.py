"""Errors as ``application/problem+json`` (RFC 9457), for every service."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from http import HTTPStatus

from connexion import AsyncApp
from connexion.lifecycle import ConnexionRequest, ConnexionResponse

log = logging.getLogger(__name__)
PROBLEM_JSON = "application/problem+json"


def problem(
    status: int,
    detail: str,
    title: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> ConnexionResponse:
    body = {
        "type": "about:blank",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    return ConnexionResponse(
        status_code=status,
        mimetype=PROBLEM_JSON,
        content_type=PROBLEM_JSON,
        body=json.dumps(body),
        headers=dict(headers or {}),
    )


def add_problem_handlers(
    app: AsyncApp,
    mapping: Mapping[type[Exception], int],
    headers_of: Callable[[Exception], Mapping[str, str]] | None = None,
) -> None:
    """Answer each mapped exception with its status and its message as
    ``detail``; anything unexpected becomes a 500 that says nothing of the
    cause to the client, while the log keeps the traceback."""

    def known(_request: ConnexionRequest, error: Exception) -> ConnexionResponse:
        status = next(code for kind, code in mapping.items() if isinstance(error, kind))
        headers = headers_of(error) if headers_of else None
        return problem(status, str(error), headers=headers)

    def unexpected(_request: ConnexionRequest, error: Exception) -> ConnexionResponse:
        log.error("unhandled error", exc_info=error)
        return problem(500, "The server failed to handle this request; try again.")

    for kind in mapping:
        app.add_error_handler(kind, known)
    app.add_error_handler(500, unexpected)
    app.add_error_handler(Exception, unexpected)


def no_route_handler(
    ui_path: str,
) -> Callable[[ConnexionRequest, Exception], ConnexionResponse]:
    """A 404/405 handler whose detail names the path and where the API is
    described, instead of starlette's bare "Not Found"."""

    def no_route(request: ConnexionRequest, error: Exception) -> ConnexionResponse:
        status = getattr(error, "status_code", 404)
        path = request.url.path
        refusal = (
            f"{path} is not a route of this service"
            if status == 404
            else f"{path} does not take {request.method}"
        )
        return problem(status, f"{refusal}; the API is described at {ui_path}.")

    return no_route
