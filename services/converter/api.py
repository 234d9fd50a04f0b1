"""The converter's HTTP edge: push deliveries in, statuses out."""

from __future__ import annotations

import logging
from typing import Any

from connexion import request
from connexion.lifecycle import ConnexionResponse

from services.converter.conversion import Converter
from services.shared.events import InvalidEvent, decode_push
from services.shared.pushauth import PushVerifier

log = logging.getLogger(__name__)


class Handlers:
    """The operations of ``openapi/converter.yaml``, by operationId."""

    def __init__(self, converter: Converter, verifier: PushVerifier) -> None:
        self.converter = converter
        self.verifier = verifier

    def receive_conversion_request(self, body: Any) -> ConnexionResponse:
        self.verifier.verify(request.headers, request.query_params)
        try:
            message = decode_push(body)
        except InvalidEvent as error:
            # It can never succeed: ack it so it is not delivered again.
            log.warning("dropping an invalid conversion request: %s", error)
            return ConnexionResponse(status_code=204)
        if message.event["type"] != "conversion.requested":
            log.warning(
                "dropping a %s pushed to conversion-requests", message.event["type"]
            )
            return ConnexionResponse(status_code=204)
        self.converter.handle(message.event)
        return ConnexionResponse(status_code=204)

    def healthz(self) -> dict[str, str]:
        return {"status": "ok"}
