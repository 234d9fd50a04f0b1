"""Rendering a task event into a mail: subject, text and HTML from the
templates beside this module, the HTML autoescaped."""

from __future__ import annotations

import re
from email.utils import parseaddr
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from services.notifier.domain import NotificationKey, OutgoingMail, Undeliverable

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"

_SIZE_UNITS = ("kB", "MB", "GB", "TB")


def human_size(size_bytes: int) -> str:
    """A byte count as people read it: ``532 bytes``, ``4.2 MB`` (powers of
    1000, as file managers show them)."""
    if size_bytes < 1000:
        return "1 byte" if size_bytes == 1 else f"{size_bytes} bytes"
    value = float(size_bytes)
    for unit in _SIZE_UNITS:
        value /= 1000
        if value < 999.95 or unit == _SIZE_UNITS[-1]:
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")


def human_duration(seconds: float) -> str:
    """A length as a player shows it: ``0:07``, ``3:05``, ``1:02:03``."""
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{minutes}:{secs:02d}"


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def make_environment() -> Environment:
    environment = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=select_autoescape(enabled_extensions=("html",), default=False),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )
    environment.filters["filesize"] = human_size
    environment.filters["duration"] = human_duration
    return environment


class TemplateComposer:
    def __init__(self, sender: str, public_base_url: str) -> None:
        self._sender = sender
        self._base_url = public_base_url.rstrip("/")
        self._environment = make_environment()

    def compose(self, key: NotificationKey, event: dict[str, Any]) -> OutgoingMail:
        owner = event["owner"]
        recipient = _address(owner["email"])
        context = {
            "event": event,
            "owner": owner,
            "filename": event["filename"],
            "original_format": event["original_format"],
            "new_format": event["new_format"],
        }
        if key.kind == "processed":
            context["download_url"] = self._base_url + event["download_path"]

        def render(part: str) -> str:
            return self._environment.get_template(f"task_{key.kind}.{part}").render(
                context
            )

        return OutgoingMail(
            key=key,
            sender=self._sender,
            recipient=recipient,
            subject=_one_line(render("subject.txt")),
            text=render("txt"),
            html=render("html"),
            headers={
                "X-Audiomill-Task": str(key.task_id),
                "X-Audiomill-Version": str(key.version),
                "X-Audiomill-Kind": key.kind,
            },
        )


def _address(raw: str) -> str:
    if "\r" in raw or "\n" in raw:
        raise Undeliverable("the owner's address contains a line break")
    _name, address = parseaddr(raw)
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or address != raw.strip():
        raise Undeliverable(f"{raw!r} is not an email address")
    return address
