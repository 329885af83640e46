"""Upload validation: a multipart request in, a clean photo out, or an `ApiError` before anything is stored.

The photo is judged by its content (shared.imaging: type sniffed, pixel cap checked on the header, EXIF
orientation applied, metadata dropped) and re-encoded, so nothing the client sent besides pixels (GPS, camera
serials, ICC, XMP, trailing bytes) is ever stored.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

from flask import Request
from PIL import Image

from services.gateway import metrics
from services.gateway.errors import ApiError, format_traceback, from_portrait_error
from services.worker.engine.catalog import is_known_choice
from shared.errors import PortraitError
from shared.imaging import decode
from shared.logging import get_logger
from shared.settings import Settings

log = get_logger(__name__)

IMAGE_FIELD = "image"
STYLE_FIELD = "style"
STRENGTH_FIELD = "strength"
DEFAULT_STYLE = "auto"

# The cleaned source is what the worker paints from: keep it close to lossless, with full-resolution chroma.
SOURCE_JPEG_QUALITY = 95
SOURCE_JPEG_SUBSAMPLING = 0  # 4:4:4


@dataclass(frozen=True)
class CleanUpload:
    jpeg: bytes  # upright, RGB, no metadata
    width: int
    height: int
    source_format: str  # what the client sent (JPEG, PNG, WEBP, HEIF), for logs
    received_bytes: int
    style: str
    strength: float | None  # None: the style's own default


def read_upload(request: Request, settings: Settings) -> CleanUpload:
    """Validate the request's fields, cheapest checks first; decoding comes last."""
    # Touching `files` parses the form: Werkzeug raises 413 here for bodies over MAX_CONTENT_LENGTH or text
    # parts over MAX_FORM_MEMORY_SIZE.
    upload = request.files.get(IMAGE_FIELD)
    if upload is None:
        raise ApiError("missing_image", f"send the photo as a multipart file part named {IMAGE_FIELD!r}")
    # The body cap includes multipart overhead, so the file part itself is checked too.
    data = upload.stream.read(settings.max_upload_bytes + 1)
    metrics.UPLOAD_BYTES.observe(len(data))
    if not data:
        raise ApiError("empty_upload", "the uploaded file is empty")
    if len(data) > settings.max_upload_bytes:
        raise ApiError("too_large", f"the photo is over {settings.max_upload_bytes} bytes")
    style = parse_style(request.form.get(STYLE_FIELD))
    strength = parse_strength(request.form.get(STRENGTH_FIELD))
    try:
        photo = decode(data, max_pixels=settings.max_image_pixels, min_side=settings.min_image_side)
    except PortraitError as exc:
        error = from_portrait_error(exc)
        if error is None:
            raise
        raise error from exc
    except Exception as exc:  # a decoder crashing on user bytes is still a bad image, not a 500
        log.warning("decoder failed on an upload", error_type=type(exc).__name__, traceback=format_traceback(exc))
        raise ApiError("corrupt_image", "the image could not be decoded") from exc
    return CleanUpload(
        jpeg=encode_source(photo.image), width=photo.image.width, height=photo.image.height,
        source_format=photo.format, received_bytes=len(data), style=style, strength=strength,
    )


def parse_style(raw: str | None) -> str:
    """'auto', a family or a catalog style name; an absent or blank field means 'auto'."""
    value = (raw or "").strip().lower()
    if not value:
        return DEFAULT_STYLE
    if not is_known_choice(value):
        raise ApiError("unknown_style", f"unknown style {value[:64]!r}; see /v1/styles for the choices")
    return value


def parse_strength(raw: str | None) -> float | None:
    """A number in [0, 1]; an absent or blank field means the style's default (None)."""
    if raw is None or not raw.strip():
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ApiError("invalid_strength", "strength must be a number between 0 and 1") from None
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise ApiError("invalid_strength", "strength must be a number between 0 and 1")
    return value


def encode_source(image: Image.Image) -> bytes:
    """JPEG with no EXIF, ICC, XMP or comment: `decode` already emptied `image.info`, and we pass none."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=SOURCE_JPEG_QUALITY, subsampling=SOURCE_JPEG_SUBSAMPLING)
    return buffer.getvalue()
