"""Every error a job can end with, in one closed vocabulary: code → HTTP status → permanent or not → message.

The codes travel unchanged to the job record, the HTTP API, webhooks and the page, so they are part of the public
contract. `JobErrorCode` is the list and `JOB_ERRORS` the one table: the worker, the janitor and the gateway's
OpenAPI document all read it, a `PortraitError` subclass with a code outside it fails on import, and
tests/unit/gateway/test_job_errors.py holds the document to it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Any, ClassVar


class JobErrorCode(StrEnum):
    """Every code a failed job can carry."""

    # The photo itself, judged by the gateway on upload (with an HTTP status) or the engine on render.
    CORRUPT_IMAGE = "corrupt_image"
    UNSUPPORTED_TYPE = "unsupported_type"
    IMAGE_TOO_SMALL = "image_too_small"
    IMAGE_TOO_LARGE = "image_too_large"
    NO_FACE = "no_face"
    FACE_TOO_SMALL = "face_too_small"
    # The request's options.
    UNKNOWN_STYLE = "unknown_style"
    INVALID_STRENGTH = "invalid_strength"
    # The engine and the deployment.
    ENGINE_ERROR = "engine_error"
    MODELS_UNAVAILABLE = "models_unavailable"
    DEVICE_UNAVAILABLE = "device_unavailable"
    # The worker around the engine: the stored photo, storage, time and processes.
    SOURCE_EXPIRED = "source_expired"
    SOURCE_UNREADABLE = "source_unreadable"
    UNAVAILABLE = "unavailable"
    TIMEOUT = "timeout"
    WORKER_LOST = "worker_lost"

    @property
    def info(self) -> JobError:
        return JOB_ERRORS[self]

    @property
    def message(self) -> str:
        """The default human message, recorded when nothing more specific is known."""
        return JOB_ERRORS[self].message

    @property
    def failure(self) -> JobFailure:
        """What a job failed with this code and its default message records."""
        return JobFailure(self, JOB_ERRORS[self].message)


@dataclass(frozen=True)
class JobError:
    """One row of the vocabulary.

    `status`: the HTTP status the gateway answers an upload with when it refuses it with this code itself; None
    for codes only a job carries (a job's status is always 200, its error in the body).
    `permanent`: True when the same photo would fail the same way again (try another photo); False when the cause
    lies outside the photo (storage, workers, the deployment), so uploading it again later may well succeed. Either
    way the job itself fails at once: the worker's own retries happen before, and never change the code.
    """

    code: JobErrorCode
    status: int | None
    permanent: bool
    message: str


def _table(*rows: JobError) -> Mapping[JobErrorCode, JobError]:
    table = {row.code: row for row in rows}
    missing = set(JobErrorCode) - set(table)
    if missing or len(table) != len(rows):
        raise RuntimeError(f"the job error table must have one row per code (missing: {sorted(missing)})")
    return MappingProxyType(table)


_C = JobErrorCode  # short, for the table
JOB_ERRORS: Mapping[JobErrorCode, JobError] = _table(
    JobError(_C.CORRUPT_IMAGE, 422, True, "the image is truncated or damaged"),
    JobError(_C.UNSUPPORTED_TYPE, 415, True, "not a JPEG, PNG, WebP or HEIC/HEIF image"),
    JobError(_C.IMAGE_TOO_SMALL, 422, True, "the image is too small to paint"),
    JobError(_C.IMAGE_TOO_LARGE, 413, True, "the image has too many pixels"),
    JobError(_C.NO_FACE, None, True, "no face was found in the photo; please try another photo"),
    JobError(_C.FACE_TOO_SMALL, None, True, "the face is too small in the photo; please try a closer one"),
    JobError(_C.UNKNOWN_STYLE, 400, True, "unknown style; see /v1/styles for the choices"),
    JobError(_C.INVALID_STRENGTH, 400, True, "strength must be a number between 0 and 1"),
    JobError(_C.ENGINE_ERROR, None, True, "the painter could not finish this portrait; please try another photo"),
    JobError(_C.MODELS_UNAVAILABLE, None, False, "the painter's model files are not ready; please try again later"),
    JobError(_C.DEVICE_UNAVAILABLE, None, False, "the painter's device is not available; please try again later"),
    # One message for an expired source, whoever notices: the runner (key or object gone) or the janitor (the
    # photo reached its maximum age).
    JobError(_C.SOURCE_EXPIRED, None, False, "the photo was deleted before it could be painted; please upload again"),
    JobError(_C.SOURCE_UNREADABLE, None, False, "the stored photo could not be read; please upload again"),
    # 503: the gateway's own answer when Redis or storage is down (services/gateway/errors.py).
    JobError(_C.UNAVAILABLE, 503, False, "storage stayed unavailable; please upload again"),
    JobError(_C.TIMEOUT, None, True, "painting took too long and was stopped; please try another photo"),
    JobError(
        _C.WORKER_LOST, None, True, "painting this photo stopped its worker several times; please try another photo"
    ),
)


# Codes whose cause is the service, not the photo: the person gets the table's message, never the exception's.
SERVICE_SIDE_CODES = frozenset(
    {_C.ENGINE_ERROR, _C.MODELS_UNAVAILABLE, _C.DEVICE_UNAVAILABLE, _C.SOURCE_UNREADABLE, _C.UNAVAILABLE}
)


@dataclass(frozen=True)
class JobFailure:
    """What a failed job records: its code and the message for people (the default or a more specific one)."""

    code: JobErrorCode
    message: str


class PortraitError(Exception):
    """Base class of the errors the engine and the image checks raise: `code` is machine-readable and must be in
    `JobErrorCode` (checked when a subclass is defined), the message is for people."""

    code: ClassVar[JobErrorCode] = JobErrorCode.ENGINE_ERROR

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # A subclass that writes its code as a plain string (as a plugin or a test might) gets the member,
        # and a code outside the vocabulary is a ValueError on import rather than a code nobody documented.
        cls.code = JobErrorCode(cls.code)

    def __init__(self, message: str | None = None) -> None:
        text = JOB_ERRORS[self.code].message if message is None else message
        super().__init__(text)
        self.message = text

    @property
    def permanent(self) -> bool:
        """True: retrying the same photo cannot help (see `JobError.permanent`)."""
        return JOB_ERRORS[self.code].permanent

    @property
    def failure(self) -> JobFailure:
        """What the job records. A code about our machinery, not the photo, records its default message: the
        specific text names model files, paths and library errors (#25), which belong in the log only."""
        if self.code in SERVICE_SIDE_CODES:
            return self.code.failure
        return JobFailure(self.code, self.message)


class CorruptImage(PortraitError):
    code = JobErrorCode.CORRUPT_IMAGE


class UnsupportedType(PortraitError):
    code = JobErrorCode.UNSUPPORTED_TYPE


class ImageTooSmall(PortraitError):
    code = JobErrorCode.IMAGE_TOO_SMALL


class ImageTooLarge(PortraitError):
    code = JobErrorCode.IMAGE_TOO_LARGE


class NoFace(PortraitError):
    code = JobErrorCode.NO_FACE


class FaceTooSmall(PortraitError):
    code = JobErrorCode.FACE_TOO_SMALL


class UnknownStyle(PortraitError):
    code = JobErrorCode.UNKNOWN_STYLE


class InvalidStrength(PortraitError):
    code = JobErrorCode.INVALID_STRENGTH


class ModelFilesError(PortraitError):
    """Model files missing, corrupt or not prepared: an operator problem, not the user's."""

    code = JobErrorCode.MODELS_UNAVAILABLE


def job_error_codes() -> list[str]:
    """Every code a failed job can carry, sorted: what the OpenAPI document and the page list."""
    return sorted(code.value for code in JobErrorCode)
