"""The tasks service's errors: one base, each kind mapped to an HTTP status
here and nowhere else. A message is the problem's ``detail``, written for
the person who has to change the request."""

from __future__ import annotations

from collections.abc import Mapping


class TasksError(Exception):
    """Base of every error the tasks service answers to a client."""

    headers: Mapping[str, str] = {}


class InvalidRequest(TasksError):
    """The request breaks a rule; the message says which."""


class Unauthenticated(TasksError):
    """No valid access token came with the request."""

    headers = {"WWW-Authenticate": 'Bearer realm="audiomill"'}


class PushUnauthenticated(TasksError):
    """A push request that did not prove it comes from our subscription."""

    def __init__(self, message: str, challenge: str) -> None:
        super().__init__(message)
        self.headers = {"WWW-Authenticate": challenge}


class Forbidden(TasksError):
    """The route is not for this caller."""


class TaskNotFound(TasksError):
    """No task of the caller's with this id (another user's included)."""

    def __init__(self, task_id: int) -> None:
        super().__init__(
            f"You have no task {task_id}; GET /api/tasks lists the ones you have."
        )


class FileNotReady(TasksError):
    """The task exists but has no converted file (yet)."""


class UploadTooLarge(TasksError):
    def __init__(self, limit: int) -> None:
        super().__init__(
            f"The file is larger than the upload limit of {limit} bytes "
            f"({limit / (1024 * 1024):g} MiB); send a smaller or shorter file."
        )


class UnsupportedMedia(TasksError):
    """The upload is not audio in a format we read."""


class RangeNotSatisfiable(TasksError):
    def __init__(self, size: int) -> None:
        super().__init__(
            f"The requested range lies outside the file, which is {size} bytes "
            "long; ask for bytes=0- or a range within it."
        )
        self.headers = {"Content-Range": f"bytes */{size}"}


class Unavailable(TasksError):
    """The database or storage cannot be reached: worth trying again."""

    headers = {"Retry-After": "5"}


STATUS_OF: dict[type[Exception], int] = {
    InvalidRequest: 400,
    Unauthenticated: 401,
    PushUnauthenticated: 401,
    Forbidden: 403,
    TaskNotFound: 404,
    FileNotReady: 404,
    UploadTooLarge: 413,
    UnsupportedMedia: 415,
    RangeNotSatisfiable: 416,
    Unavailable: 503,
}


def headers_of(error: Exception) -> Mapping[str, str]:
    return getattr(error, "headers", {}) if isinstance(error, TasksError) else {}
