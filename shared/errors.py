"""Errors a photo can meet on its way to a portrait, each with a stable machine-readable code.

The codes travel unchanged to the job record and the HTTP API, so they are part of the public contract.
"""

from __future__ import annotations


class PortraitError(Exception):
    """Base class: `code` is machine-readable, the message is for people."""

    code = "engine_error"
    #: Permanent errors fail a job at once; retrying the same photo cannot help.
    permanent = True

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class CorruptImage(PortraitError):
    code = "corrupt_image"


class UnsupportedType(PortraitError):
    code = "unsupported_type"


class ImageTooSmall(PortraitError):
    code = "image_too_small"


class ImageTooLarge(PortraitError):
    code = "image_too_large"


class NoFace(PortraitError):
    code = "no_face"


class FaceTooSmall(PortraitError):
    code = "face_too_small"


class UnknownStyle(PortraitError):
    code = "unknown_style"


class InvalidStrength(PortraitError):
    code = "invalid_strength"


class ModelFilesError(PortraitError):
    """Model files missing, corrupt or not prepared: an operator problem, not the user's."""

    code = "models_unavailable"
