"""Request checks that replace connexion's defaults for this service.

Parameters: the same JSON-schema check, with a message that names the
parameter and leaves out the schema dump.

Multipart bodies: connexion's own multipart validator keeps every message of the body in
memory to replay it to the handler. This one replaces it for the tasks API:
it refuses a body whose declared length is over the limit before reading
any of it, and counts the bytes as they arrive, stopping at the limit.
starlette's form parser then spools the file part to a temporary file past
1 MiB, and the handler streams that to storage in chunks; the form fields
are checked by the domain rules, which give the more useful messages.

Note: on App Engine standard, temporary files live in the instance's
memory, so an upload occupies up to its size (32 MiB at most) there until
the request ends.
"""

from __future__ import annotations

import copy

from connexion.validators import AbstractRequestBodyValidator, ParameterValidator
from jsonschema import Draft4Validator, ValidationError
from starlette.datastructures import Headers
from starlette.types import Message, Receive, Scope

from services.tasks.errors import UploadTooLarge

# Room for the multipart framing and the form fields around the file itself;
# the file's own size is checked exactly while it is stored.
FRAMING_BYTES = 64 * 1024


def upload_validator(max_upload_bytes: int) -> type[AbstractRequestBodyValidator]:
    """A multipart body validator class that enforces ``max_upload_bytes``."""
    limit = max_upload_bytes + FRAMING_BYTES

    class UploadBodyValidator(AbstractRequestBodyValidator):
        async def wrap_receive(
            self, receive: Receive, *, scope: Scope
        ) -> tuple[Receive, Scope]:
            declared = Headers(scope=scope).get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                raise UploadTooLarge(max_upload_bytes)
            received = 0

            async def limited() -> Message:
                nonlocal received
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > limit:
                        raise UploadTooLarge(max_upload_bytes)
                return message

            return limited, scope

    return UploadBodyValidator


class ConciseParameterValidator(ParameterValidator):
    @staticmethod
    def validate_parameter(parameter_type, value, param, param_name=None):
        name = param.get("name", param_name)
        if value is None:
            if param.get("required"):
                return f"The {parameter_type} parameter {name!r} is required."
            return None
        schema = copy.deepcopy(param.get("schema", param))
        try:
            Draft4Validator(
                schema, format_checker=Draft4Validator.FORMAT_CHECKER
            ).validate(value)
        except ValidationError as error:
            return f"The {parameter_type} parameter {name!r}: {error.message}."
        return None
