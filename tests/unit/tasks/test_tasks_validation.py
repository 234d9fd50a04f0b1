"""The request checks that replace connexion's: the upload size cap at the
edge, and parameter messages that name the parameter."""

from __future__ import annotations

import asyncio

import pytest

from services.tasks.errors import UploadTooLarge
from services.tasks.validation import (
    FRAMING_BYTES,
    ConciseParameterValidator,
    upload_validator,
)

CHUNK = 64 * 1024


def scope(headers: dict[str, str]) -> dict:
    return {
        "type": "http",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }


class FakeReceive:
    """An endless request body, counting how much of it was asked for."""

    def __init__(self) -> None:
        self.messages = 0

    async def __call__(self) -> dict:
        self.messages += 1
        return {"type": "http.request", "body": bytes(CHUNK), "more_body": True}


def validator(limit: int):
    cls = upload_validator(limit)
    return cls(schema={}, encoding="utf-8", strict_validation=False)


def test_a_declared_length_over_the_cap_is_refused_before_any_read():
    receive = FakeReceive()
    limit = 1024 * 1024
    headers = {"content-length": str(limit + FRAMING_BYTES + 1)}
    with pytest.raises(UploadTooLarge):
        asyncio.run(validator(limit).wrap_receive(receive, scope=scope(headers)))
    assert receive.messages == 0


def test_an_undeclared_body_is_read_only_up_to_the_cap():
    receive = FakeReceive()
    limit = 1024 * 1024

    async def drain() -> None:
        wrapped, _ = await validator(limit).wrap_receive(receive, scope=scope({}))
        while True:
            await wrapped()

    with pytest.raises(UploadTooLarge):
        asyncio.run(drain())
    assert receive.messages * CHUNK <= limit + FRAMING_BYTES + CHUNK


def test_a_body_within_the_cap_passes_untouched():
    receive = FakeReceive()

    async def read_some() -> list[dict]:
        wrapped, _ = await validator(1024 * 1024).wrap_receive(
            receive, scope=scope({"content-length": "131072"})
        )
        return [await wrapped(), await wrapped()]

    messages = asyncio.run(read_some())
    assert [len(m["body"]) for m in messages] == [CHUNK, CHUNK]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (-1, "The query parameter 'max': -1 is less than the minimum of 1."),
        (None, None),
        (5, None),
    ],
)
def test_parameter_messages_name_the_parameter(value, expected):
    param = {"name": "max", "in": "query", "schema": {"type": "integer", "minimum": 1}}
    assert (
        ConciseParameterValidator.validate_parameter("query", value, param) == expected
    )


def test_a_missing_required_parameter_is_named():
    param = {"name": "id", "in": "path", "required": True, "schema": {}}
    message = ConciseParameterValidator.validate_parameter("path", None, param)
    assert message == "The path parameter 'id' is required."
