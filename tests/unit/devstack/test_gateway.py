"""The gateway's dispatch rules and its proxying, against fake upstreams."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from devstack.gateway import DispatchRule, create_app, load_rules, route
from devstack.settings import REPO_ROOT

SERVICES = ("default", "auth", "converter", "notifier")
ENDPOINTS = {name: f"http://{name}.internal:9000" for name in SERVICES}


class FakeUpstreams(httpx.AsyncBaseTransport):
    """Every service behind the gateway: echoes what reached which service."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, httpx.Request, bytes]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        service = request.url.host.removesuffix(".internal")
        body = await request.aread()
        self.requests.append((service, request, body))
        if request.url.path == "/ranged":
            return httpx.Response(
                206,
                headers={"content-range": "bytes 2-4/10", "connection": "close"},
                stream=httpx.ByteStream(b"234"),
            )
        if request.url.path == "/stream":
            return httpx.Response(200, content=_chunks(b"x" * 65536, 16))
        echo = {
            "service": service,
            "path": request.url.path,
            "query": request.url.query.decode(),
            "size": len(body),
        }
        return httpx.Response(
            201,
            headers={"x-service": service, "set-cookie": "a=b"},
            stream=httpx.ByteStream(json.dumps(echo).encode()),
        )


async def _chunks(chunk: bytes, count: int):
    for _ in range(count):
        yield chunk


def through_gateway(upstreams: FakeUpstreams, *requests: dict) -> list[httpx.Response]:
    async def send_all() -> list[httpx.Response]:
        gateway = create_app(
            endpoints=ENDPOINTS,
            dispatch_config=REPO_ROOT / "dispatch.yaml",
            client=httpx.AsyncClient(transport=upstreams),
        )
        transport = httpx.ASGITransport(app=gateway)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://127.0.0.1:8080"
        ) as client:
            return [await client.request(**request) for request in requests]

    return asyncio.run(send_all())


@pytest.mark.parametrize(
    ("url", "host", "path", "expected"),
    [
        ("*/api/auth/*", "127.0.0.1", "/api/auth/login", True),
        ("*/api/auth/*", "example.com", "/api/auth/", True),
        ("*/api/auth/*", "127.0.0.1", "/api/auth", False),
        ("*/api/auth/*", "127.0.0.1", "/api/authors", False),
        ("*/api/auth/*", "127.0.0.1", "/api/tasks", False),
        ("*/healthz", "127.0.0.1", "/healthz", True),
        ("*/healthz", "127.0.0.1", "/healthz/more", False),
        ("*.example.com/*", "api.example.com", "/x", True),
        ("*.example.com/*", "example.org", "/x", False),
        ("api.example.com/*", "API.example.com", "/x", True),
        ("api.example.com/*", "www.example.com", "/x", False),
    ],
)
def test_a_rule_matches_like_app_engine_dispatch(url, host, path, expected):
    assert DispatchRule(url=url, service="s").matches(host, path) is expected


def test_the_first_matching_rule_wins_and_the_rest_goes_to_default():
    rules = [
        DispatchRule("*/api/auth/*", "auth"),
        DispatchRule("*/api/*", "default"),
        DispatchRule("*/api/auth/special", "never"),
    ]

    assert route(rules, "127.0.0.1:8080", "/api/auth/special") == "auth"
    assert route(rules, "127.0.0.1:8080", "/api/tasks/1") == "default"
    assert route(rules, "127.0.0.1:8080", "/favicon.ico") == "default"


def _sample_path(rule: DispatchRule) -> str:
    pattern = rule.path_pattern
    return pattern[:-1] + "probe" if pattern.endswith("*") else pattern


def test_every_rule_in_dispatch_yaml_reaches_its_service():
    rules = load_rules(REPO_ROOT / "dispatch.yaml")
    assert rules, "dispatch.yaml has no rules"
    upstreams = FakeUpstreams()

    answers = through_gateway(
        upstreams, *({"method": "GET", "url": _sample_path(r)} for r in rules)
    )

    for rule, answer in zip(rules, answers, strict=True):
        assert answer.status_code == 201, rule
        assert answer.json()["service"] == rule.service, rule
        assert answer.json()["path"] == _sample_path(rule)


def test_an_unmatched_path_goes_to_default():
    [answer] = through_gateway(FakeUpstreams(), {"method": "GET", "url": "/healthz"})

    assert answer.json()["service"] == "default"


def test_the_request_arrives_whole_with_its_headers_and_query():
    upstreams = FakeUpstreams()
    body = bytes(range(256)) * 4096

    [answer] = through_gateway(
        upstreams,
        {
            "method": "POST",
            "url": "/api/tasks?max=2&order=1",
            "content": body,
            "headers": {"authorization": "Bearer t", "range": "bytes=0-9"},
        },
    )

    [(service, request, received)] = upstreams.requests
    assert service == "default"
    assert received == body
    assert answer.json()["query"] == "max=2&order=1"
    assert request.headers["authorization"] == "Bearer t"
    assert request.headers["range"] == "bytes=0-9"
    assert request.headers["host"] == "127.0.0.1:8080"
    assert request.headers["x-forwarded-proto"] == "http"
    assert "connection" not in request.headers


def test_the_response_keeps_its_status_and_headers_and_drops_hop_by_hop():
    [ranged, created] = through_gateway(
        FakeUpstreams(),
        {"method": "GET", "url": "/ranged"},
        {"method": "GET", "url": "/api/auth/login"},
    )

    assert ranged.status_code == 206
    assert ranged.headers["content-range"] == "bytes 2-4/10"
    assert ranged.content == b"234"
    assert "connection" not in ranged.headers
    assert created.status_code == 201
    assert created.headers["x-service"] == "auth"
    assert created.headers["set-cookie"] == "a=b"


def test_a_streamed_response_arrives_whole():
    [answer] = through_gateway(FakeUpstreams(), {"method": "GET", "url": "/stream"})

    assert answer.content == b"x" * 65536 * 16


def test_a_service_that_is_not_running_is_a_502_problem():
    async def send() -> httpx.Response:
        gateway = create_app(
            endpoints={"default": "http://default.internal:9000"},
            dispatch_config=REPO_ROOT / "dispatch.yaml",
            client=httpx.AsyncClient(transport=FakeUpstreams()),
        )
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=gateway), base_url="http://gw"
        ) as client:
            return await client.get("/api/auth/login")

    answer = asyncio.run(send())

    assert answer.status_code == 502
    assert answer.headers["content-type"] == "application/problem+json"
    assert "auth" in json.loads(answer.content)["detail"]


class HeldBack(httpx.AsyncBaseTransport):
    """An upstream that reads the request body chunk by chunk and answers with
    a first chunk, then holds the rest back until ``release`` is set."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.first_request_chunk = asyncio.Event()
        self.request_body = b""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/upload":
            async for chunk in request.stream:
                self.request_body += chunk
                self.first_request_chunk.set()
            return httpx.Response(204, stream=httpx.ByteStream(b""))

        async def body():
            yield b"first"
            await self.release.wait()
            yield b"rest"

        return httpx.Response(200, content=body())


def _scope(method: str, path: str, headers: list[tuple[bytes, bytes]]) -> dict:
    return {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1:8080"), *headers],
        "scheme": "http",
        "client": ("127.0.0.1", 50000),
    }


def test_a_response_is_passed_on_as_it_comes_not_once_complete():
    async def scenario() -> bytes:
        upstream = HeldBack()
        gateway = create_app(
            endpoints=ENDPOINTS,
            dispatch_config=REPO_ROOT / "dispatch.yaml",
            client=httpx.AsyncClient(transport=upstream),
        )
        sent: list[dict] = []
        first_chunk = asyncio.Event()

        async def send(message: dict) -> None:
            sent.append(message)
            if message["type"] == "http.response.body" and message.get("body"):
                first_chunk.set()

        async def receive() -> dict:
            return {"type": "http.request", "body": b"", "more_body": False}

        proxying = asyncio.create_task(gateway(_scope("GET", "/x", []), receive, send))
        # The upstream still holds back the rest: the first chunk is out anyway.
        await asyncio.wait_for(first_chunk.wait(), 5)
        assert not proxying.done()
        upstream.release.set()
        await asyncio.wait_for(proxying, 5)
        return b"".join(m.get("body", b"") for m in sent if "body" in m)

    assert asyncio.run(scenario()) == b"firstrest"


def test_a_request_body_reaches_the_service_as_it_comes_not_once_complete():
    async def scenario() -> bytes:
        upstream = HeldBack()
        gateway = create_app(
            endpoints=ENDPOINTS,
            dispatch_config=REPO_ROOT / "dispatch.yaml",
            client=httpx.AsyncClient(transport=upstream),
        )
        parts = [
            {"type": "http.request", "body": b"a" * 1000, "more_body": True},
            {"type": "http.request", "body": b"b" * 1000, "more_body": False},
        ]

        async def receive() -> dict:
            if len(parts) == 1:
                # The client sends the rest only once the service has the start.
                await upstream.first_request_chunk.wait()
            return parts.pop(0)

        async def send(message: dict) -> None:
            pass

        scope = _scope("POST", "/upload", [(b"content-length", b"2000")])
        await asyncio.wait_for(gateway(scope, receive, send), 5)
        return upstream.request_body

    assert asyncio.run(scenario()) == b"a" * 1000 + b"b" * 1000
