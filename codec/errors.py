"""Exceptions raised by the codec.  Every failure caused by bad input is a CodecError."""
from __future__ import annotations


class CodecError(Exception):
    """Bad input: an unreadable image, a malformed or foreign .lic file, bad options."""


class CorruptFileError(CodecError, ValueError):
    """The data is not a valid .lic file (wrong signature, bad CRC, truncated, malformed)."""


class WeightsMismatchError(CodecError):
    """The file was made with other model weights than the ones loaded."""


class WeightsError(CodecError):
    """The weights file is missing, corrupt, or does not match its recorded hash."""


class DamagedTilesWarning(UserWarning):
    """A partial decode met damaged tiles and painted them gray (the message lists them)."""


def first_line(exc: BaseException, default: str = "") -> str:
    """The first line of an exception's message (runtimes raise pages of it), ``default`` if empty."""
    return (str(exc).strip().splitlines() or [default])[0]
