"""Echo servers, one per service name, in one process on 127.0.0.1.

    python tests/e2e/echo_servers.py auth=8081 default=8082 ...

Each answers any request with JSON naming its service, the path and query it
got and the size of the body.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import uvicorn


def echo_app(service: str) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        size = 0
        while True:
            message = await receive()
            size += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = json.dumps(
            {
                "service": service,
                "method": scope["method"],
                "path": scope["path"],
                "query": scope["query_string"].decode(),
                "size": size,
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return app


async def serve(services: dict[str, int]) -> None:
    servers = [
        uvicorn.Server(
            uvicorn.Config(
                echo_app(name),
                host="127.0.0.1",
                port=port,
                lifespan="off",
                log_level="warning",
            )
        )
        for name, port in services.items()
    ]
    await asyncio.gather(*(server.serve() for server in servers))


if __name__ == "__main__":
    pairs = dict(arg.split("=", 1) for arg in sys.argv[1:])
    asyncio.run(serve({name: int(port) for name, port in pairs.items()}))
