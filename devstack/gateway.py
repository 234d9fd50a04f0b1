"""One public port for the local stack, routed by ``dispatch.yaml``.

The rules are App Engine's: each ``url`` is ``HOST/PATH`` where the host may
be ``*`` or start with ``*.`` and the path may end in ``*`` (a prefix); the
first rule that matches names the service, and a request no rule matches goes
to ``default``. Bodies stream both ways; nothing is buffered whole.

Run it with ``uvicorn --factory devstack.gateway:create_app``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from devstack import settings as env
from devstack.logs import configure_logging

logger = logging.getLogger(__name__)

DEFAULT_SERVICE = "default"

# Headers that belong to one connection and are never forwarded (RFC 9110 7.6.1).
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)

Scope = dict[str, Any]
Message = dict[str, Any]


class DispatchError(ValueError):
    """``dispatch.yaml`` is missing or malformed."""


@dataclass(frozen=True)
class DispatchRule:
    url: str
    service: str

    @property
    def host_pattern(self) -> str:
        host, _, _ = self.url.partition("/")
        return host

    @property
    def path_pattern(self) -> str:
        _, slash, path = self.url.partition("/")
        return slash + path

    def matches(self, host: str, path: str) -> bool:
        return _host_matches(self.host_pattern, host) and _path_matches(
            self.path_pattern, path
        )


def _host_matches(pattern: str, host: str) -> bool:
    host = host.lower()
    pattern = pattern.lower()
    if pattern == "*":
        return True
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return host == pattern


def _path_matches(pattern: str, path: str) -> bool:
    if pattern.endswith("*"):
        return path.startswith(pattern[:-1])
    return path == pattern


def load_rules(path: Path) -> list[DispatchRule]:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise DispatchError(f"cannot read {path}: {exc}") from exc
    entries = document.get("dispatch") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise DispatchError(f"{path}: expected a 'dispatch' list")
    rules = []
    for index, entry in enumerate(entries):
        url = entry.get("url") if isinstance(entry, dict) else None
        service = entry.get("service") if isinstance(entry, dict) else None
        if not isinstance(url, str) or "/" not in url or not isinstance(service, str):
            raise DispatchError(
                f"{path}: entry {index} needs 'url' (HOST/PATH) and 'service'"
            )
        rules.append(DispatchRule(url=url, service=service))
    return rules


def route(rules: Sequence[DispatchRule], host: str, path: str) -> str:
    """The service a request for ``host`` and ``path`` goes to."""
    host = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    for rule in rules:
        if rule.matches(host, path):
            return rule.service
    return DEFAULT_SERVICE


class Gateway:
    """An ASGI reverse proxy to the service each dispatch rule names."""

    def __init__(
        self,
        rules: Sequence[DispatchRule],
        endpoints: Mapping[str, str],
        client: httpx.AsyncClient,
    ) -> None:
        self._rules = list(rules)
        self._endpoints = dict(endpoints)
        self._client = client
        # Forward the caller's headers only: no Accept-Encoding or agent of ours.
        self._client.headers.clear()

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._proxy(scope, receive, send)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._client.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _proxy(self, scope: Scope, receive: Any, send: Any) -> None:
        headers = [(k.decode("latin-1"), v) for k, v in scope["headers"]]
        host = next((v.decode("latin-1") for k, v in headers if k == "host"), "")
        service = route(self._rules, host, scope["path"])
        base = self._endpoints.get(service)
        if base is None:
            await _problem(send, 502, f"service {service!r} is not running")
            return

        url = base + (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
        if scope.get("query_string"):
            url += "?" + scope["query_string"].decode("latin-1")
        upstream_headers = [
            (name, value) for name, value in headers if name not in HOP_BY_HOP
        ]
        client = scope.get("client")
        if client:
            upstream_headers.append(("x-forwarded-for", client[0].encode()))
        upstream_headers.append(("x-forwarded-proto", scope["scheme"].encode()))
        if host:
            upstream_headers.append(("x-forwarded-host", host.encode("latin-1")))

        has_body = any(
            name in ("content-length", "transfer-encoding") for name, _ in headers
        )
        request = self._client.build_request(
            scope["method"],
            url,
            headers=upstream_headers,
            content=_request_body(receive) if has_body else None,
        )
        try:
            response = await self._client.send(request, stream=True)
        except httpx.HTTPError as exc:
            logger.warning("%s %s -> %s failed: %s", scope["method"], url, service, exc)
            await _problem(send, 502, f"service {service!r} did not answer")
            return

        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status_code,
                    "headers": [
                        (name, value)
                        for name, value in response.headers.raw
                        if name.decode("latin-1").lower() not in HOP_BY_HOP
                    ],
                }
            )
            async for chunk in response.aiter_raw():
                await send(
                    {"type": "http.response.body", "body": chunk, "more_body": True}
                )
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await response.aclose()


async def _request_body(receive: Any) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        chunk = message.get("body", b"")
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


async def _problem(send: Any, status: int, detail: str) -> None:
    body = json.dumps(
        {
            "type": "about:blank",
            "title": "Bad Gateway",
            "status": status,
            "detail": detail,
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def create_app(
    endpoints: Mapping[str, str] | None = None,
    dispatch_config: Path | None = None,
    client: httpx.AsyncClient | None = None,
) -> Gateway:
    if endpoints is None:
        configure_logging()
        endpoints = env.read_endpoints(env.environ_or_default(None))
    if dispatch_config is None:
        dispatch_config = env.read_path(
            env.environ_or_default(None),
            "DISPATCH_CONFIG",
            env.REPO_ROOT / "dispatch.yaml",
        )
    rules = load_rules(dispatch_config)
    if client is None:
        client = httpx.AsyncClient(
            timeout=httpx.Timeout(connect=5.0, read=None, write=None, pool=None),
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
        )
    return Gateway(rules, endpoints, client)
