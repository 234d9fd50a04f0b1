"""One logging set-up for every service: a JSON object a line, with the
fields Cloud Logging reads (``severity``, ``message``, trace), and the task id
where a record carries one."""

from __future__ import annotations

import contextvars
import json
import logging
import os
import re
import sys
import time
from datetime import UTC, datetime

_trace: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "trace", default=None
)

TRACE_FIELD = "logging.googleapis.com/trace"
_STANDARD_FIELDS = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service
        self.project = os.environ.get("GOOGLE_CLOUD_PROJECT")

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "severity": record.levelname,
            "message": record.getMessage(),
            "logger": record.name,
            "service": self.service,
        }
        trace = _trace.get()
        if trace:
            entry[TRACE_FIELD] = (
                f"projects/{self.project}/traces/{trace}" if self.project else trace
            )
        for key, value in record.__dict__.items():
            if key not in _STANDARD_FIELDS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(service: str, level: str = "INFO") -> None:
    """Send every logger's records to stderr as JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "gunicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # The access line comes from TraceMiddleware, with the trace attached;
    # httpx would add one more line per outgoing call (every publish).
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)


def trace_id(scope) -> str | None:
    """The trace id of ``X-Cloud-Trace-Context: TRACE_ID[/SPAN_ID][;o=OPTIONS]``."""
    header = dict(scope.get("headers") or []).get(b"x-cloud-trace-context", b"")
    return re.split(r"[/;]", header.decode("latin-1"), maxsplit=1)[0].strip() or None


class TraceMiddleware:
    """ASGI middleware: binds the request's trace id and logs one line per
    request with its method, path, status and duration."""

    def __init__(self, app) -> None:
        self.app = app
        self.log = logging.getLogger(__name__)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = _trace.set(trace_id(scope))
        started = time.perf_counter()
        status = {"code": 500}

        async def send_with_status(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            self.log.info(
                "%s %s %s",
                scope["method"],
                scope["path"],
                status["code"],
                extra={
                    "httpRequest": {
                        "requestMethod": scope["method"],
                        "requestUrl": scope["path"],
                        "status": status["code"],
                        "latency": f"{time.perf_counter() - started:.6f}s",
                    }
                },
            )
            _trace.reset(token)
