from __future__ import annotations

import pytest

from services.notifier.compose import TemplateComposer, human_duration, human_size
from services.notifier.domain import NotificationKey, Undeliverable

SENDER = "Audiomill <noreply@audiomill.example>"


@pytest.fixture
def composer() -> TemplateComposer:
    return TemplateComposer(SENDER, "https://audiomill.example/")


@pytest.mark.parametrize(
    ("size", "shown"),
    [
        (0, "0 bytes"),
        (1, "1 byte"),
        (999, "999 bytes"),
        (1000, "1.0 kB"),
        (4_200_000, "4.2 MB"),
        (999_999_999, "1.0 GB"),
        (3 * 10**15, "3000.0 TB"),
    ],
)
def test_sizes_read_as_people_read_them(size, shown):
    assert human_size(size) == shown


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0, "0:00"), (4.4, "0:04"), (185.4, "3:05"), (3723, "1:02:03")],
)
def test_durations_read_as_a_player_shows_them(seconds, shown):
    assert human_duration(seconds) == shown


def test_processed_mail_says_what_was_converted_and_links_the_download(
    composer, make_processed
):
    event = make_processed(task_id=7, version=2)
    mail = composer.compose(NotificationKey(7, 2, "processed"), event)

    assert mail.recipient == "ada@example.com"
    assert mail.sender == SENDER
    assert mail.subject == "song.mp3 is ready as ogg"
    link = "https://audiomill.example/api/tasks/7/converted"
    for part in (mail.text, mail.html):
        assert "song.mp3" in part
        assert "mp3" in part and "ogg" in part
        assert "4.2 MB" in part
        assert "3:05" in part
        assert link in part
    assert f'href="{link}"' in mail.html
    assert mail.headers["X-Audiomill-Task"] == "7"
    assert mail.headers["X-Audiomill-Version"] == "2"


def test_failed_mail_gives_the_reason(composer, make_failed):
    mail = composer.compose(NotificationKey(7, 1, "failed"), make_failed())

    assert mail.subject == "song.mp3 could not be converted to ogg"
    for part in (mail.text, mail.html):
        assert "The file is not valid audio." in part
        assert "/api/tasks/" not in part


def test_html_part_escapes_what_the_user_named(composer, make_processed, make_failed):
    hostile = "<script>alert(1)</script>.mp3"
    processed = composer.compose(
        NotificationKey(7, 1, "processed"), make_processed(filename=hostile)
    )
    failed = composer.compose(
        NotificationKey(7, 1, "failed"),
        make_failed(
            filename=hostile, error={"code": "timeout", "message": "<b>too long</b>"}
        ),
    )

    for mail in (processed, failed):
        assert "<script>" not in mail.html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;.mp3" in mail.html
        # The text part is not HTML: it shows the name as it is.
        assert hostile in mail.text
    assert "&lt;b&gt;too long&lt;/b&gt;" in failed.html
    assert "<b>" not in failed.html


def test_subject_stays_on_one_line(composer, make_processed):
    mail = composer.compose(
        NotificationKey(7, 1, "processed"),
        make_processed(filename="a\r\nBcc: victim@example.com.mp3"),
    )
    assert "\n" not in mail.subject and "\r" not in mail.subject


@pytest.mark.parametrize(
    "address", ["ada", "ada@", "@example.com", "ada@example.com\r\nBcc: x@y.z"]
)
def test_an_owner_without_an_address_is_undeliverable(
    composer, make_processed, address
):
    event = make_processed()
    event["owner"]["email"] = address
    with pytest.raises(Undeliverable):
        composer.compose(NotificationKey(7, 1, "processed"), event)
