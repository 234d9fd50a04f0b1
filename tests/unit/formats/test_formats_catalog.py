"""The format catalog: names, aliases and encoder settings."""

import dataclasses

import pytest

from services.shared import formats


def test_catalog_order_and_names() -> None:
    assert formats.names() == ("mp3", "wav", "ogg", "flac", "m4a", "opus", "wma")
    assert [f.name for f in formats.FORMATS] == list(formats.names())


@pytest.mark.parametrize(
    ("name", "codec", "muxer"),
    [
        ("mp3", "libmp3lame", "mp3"),
        ("wav", "pcm_s16le", "wav"),
        ("ogg", "libvorbis", "ogg"),
        ("flac", "flac", "flac"),
        ("m4a", "aac", "ipod"),
        ("opus", "libopus", "opus"),
        ("wma", "wmav2", "asf"),
    ],
)
def test_encoders(name: str, codec: str, muxer: str) -> None:
    fmt = formats.get(name)
    assert (fmt.codec, fmt.muxer) == (codec, muxer)
    assert fmt.extension == name
    assert fmt.media_type.startswith("audio/")
    assert isinstance(fmt.encoder_args, tuple)


def test_every_format_is_source_and_target() -> None:
    assert formats.sources() == formats.FORMATS
    assert formats.targets() == formats.FORMATS


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("MP3", "mp3"),
        ("Flac", "flac"),
        ("aac", "m4a"),
        ("AAC", "m4a"),
        (" ogg ", "ogg"),
    ],
)
def test_get_is_case_insensitive_and_knows_aliases(given: str, expected: str) -> None:
    assert formats.get(given).name == expected


@pytest.mark.parametrize("given", ["", "mp4", "mpeg", ".mp3", "vorbis", "wave"])
def test_unknown_names(given: str) -> None:
    with pytest.raises(formats.UnknownFormat) as caught:
        formats.get(given)
    assert isinstance(caught.value, ValueError)
    assert "supported: mp3, wav, ogg, flac, m4a, opus, wma" in str(caught.value)


def test_get_rejects_non_strings() -> None:
    with pytest.raises(formats.UnknownFormat):
        formats.get(None)  # type: ignore[arg-type]


def test_formats_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        formats.get("mp3").codec = "mp2"  # type: ignore[misc]
