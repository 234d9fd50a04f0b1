import json
import logging

from services.shared.logging import TRACE_FIELD, JsonFormatter, _trace


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
