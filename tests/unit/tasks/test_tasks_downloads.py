"""Byte ranges and download names, as the file routes serve them."""

from __future__ import annotations

import pytest

from services.shared.storage import content_disposition
from services.tasks.downloads import parse_range
from services.tasks.errors import RangeNotSatisfiable


@pytest.mark.parametrize(
    ("header", "span"),
    [
        (None, None),
        ("", None),
        ("bytes=0-0", (0, 0)),
        ("bytes=0-99", (0, 99)),
        ("bytes=10-", (10, 99)),
        ("bytes=90-500", (90, 99)),
        ("bytes=-10", (90, 99)),
        ("bytes=-500", (0, 99)),
        (" bytes = 5 - 6 ", (5, 6)),
        ("bytes=0-1,5-6", None),
        ("items=0-5", None),
        ("bytes=9-3", None),
        ("bytes=abc", None),
        ("bytes=-", None),
    ],
)
def test_one_range_is_served_and_anything_else_means_the_whole_file(header, span):
    assert parse_range(header, 100) == span


@pytest.mark.parametrize(
    ("header", "size"), [("bytes=100-", 100), ("bytes=-0", 100), ("bytes=0-", 0)]
)
def test_a_range_outside_the_file_cannot_be_satisfied(header, size):
    with pytest.raises(RangeNotSatisfiable) as raised:
        parse_range(header, size)
    assert raised.value.headers == {"Content-Range": f"bytes */{size}"}


def test_a_download_name_has_an_ascii_fallback_and_the_exact_utf8_name():
    header = content_disposition('Über "lied".ogg')
    assert header == (
        'attachment; filename="_ber _lied_.ogg"; '
        "filename*=UTF-8''%C3%9Cber%20%22lied%22.ogg"
    )
