import json
import logging

import pytest

from services.shared.logging import TRACE_FIELD, JsonFormatter, _trace, trace_id


def test_records_are_json_with_severity_trace_and_task_id():
    record = logging.LogRecord(
        "tasks.api", logging.WARNING, "f", 1, "hi %s", ("x",), None
    )
    record.task_id = 12
    token = _trace.set("abc123")
    try:
        line = JsonFormatter("tasks").format(record)
    finally:
        _trace.reset(token)

    entry = json.loads(line)
    assert entry["severity"] == "WARNING"
    assert entry["message"] == "hi x"
    assert entry["task_id"] == 12
    assert entry["logger"] == "tasks.api"
    assert entry[TRACE_FIELD].endswith("abc123")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (b"105445aa7843bc8bf206b12000100000/1;o=1", "105445aa7843bc8bf206b12000100000"),
        (b"105445aa7843bc8bf206b12000100000;o=1", "105445aa7843bc8bf206b12000100000"),
        (b"105445aa7843bc8bf206b12000100000", "105445aa7843bc8bf206b12000100000"),
        (b"", None),
        (None, None),
    ],
)
def test_the_trace_id_is_read_from_the_cloud_trace_header(header, expected):
    headers = [(b"x-cloud-trace-context", header)] if header is not None else []
    assert trace_id({"type": "http", "headers": headers}) == expected
