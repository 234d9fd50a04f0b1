"""The HTTP edge: push auth, decoding, one call into the domain."""

from __future__ import annotations

import logging
from typing import Any

from connexion import request

from services.notifier.domain import Notifier
from services.notifier.notification_log import SqlNotificationLog
from services.shared.events import InvalidEvent, decode_push
from services.shared.pushauth import PushVerifier

log = logging.getLogger(__name__)


class NotifierApi:
    def __init__(
        self,
        notifier: Notifier,
        verifier: PushVerifier,
        notifications: SqlNotificationLog,
    ) -> None:
        self._notifier = notifier
        self._verifier = verifier
        self._notifications = notifications

    def receive_task_event(self, body: dict[str, Any], token: str | None = None):
        self._verifier.verify(request.headers, request.query_params)
        try:
            push = decode_push(body)
        except InvalidEvent as error:
            log.warning("acknowledging an event that can never be handled: %s", error)
            return None, 204

        self._notifier.notify(push.event)
        return None, 204

    def healthz(self):
        self._notifications.check()
        return {"status": "ok"}, 200, {"Content-Type": "application/json"}
