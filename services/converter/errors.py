"""The converter's exceptions, under one base.

``ConversionFailed`` and its subclasses can never succeed on a retry: they
become a ``conversion.failed`` event and the message is acked. Their
``message`` is written for the owner of the file, never ffmpeg's own words.
``Unavailable`` is a fault worth retrying: the push is answered 503 so it
comes again.
"""

from __future__ import annotations


class ConverterError(Exception):
    """Base of everything the converter raises on purpose."""


class ConversionFailed(ConverterError):
    """A request that cannot be converted, whatever the number of attempts."""

    code = "conversion_failed"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class CorruptInput(ConversionFailed):
    code = "corrupt_input"


class TranscodeTimeout(ConversionFailed):
    code = "timeout"


class Unsupported(ConversionFailed):
    code = "unsupported"


class Unavailable(ConverterError):
    """Storage, the bus or the machine failed: try the request again."""
