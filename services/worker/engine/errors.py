"""Errors the engine raises, each with a stable machine-readable code.

The codes travel unchanged to the job record and the HTTP API, so they are part of the public contract.
"""

from __future__ import annotations


class EngineError(Exception):
    """Base class: `code` is machine-readable, the message is for people."""

    code = "engine_error"
    #: Permanent errors fail a job at once; retrying the same photo cannot help.
    permanent = True

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class CorruptImage(EngineError):
    code = "corrupt_image"


class UnsupportedType(EngineError):
    code = "unsupported_type"


class ImageTooSmall(EngineError):
    code = "image_too_small"


class ImageTooLarge(EngineError):
    code = "image_too_large"


class NoFace(EngineError):
    code = "no_face"


class FaceTooSmall(EngineError):
    code = "face_too_small"


class UnknownStyle(EngineError):
    code = "unknown_style"


class InvalidStrength(EngineError):
    code = "invalid_strength"


class ModelFilesError(EngineError):
    """Model files missing, corrupt or not prepared: an operator problem, not the user's."""

    code = "models_unavailable"
