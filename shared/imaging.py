"""Photo decoding and validation, shared by the gateway (before anything is stored) and the engine.

The type is decided by content (Pillow's sniffing), never by a file name or header. The pixel count is checked
on the header, before any pixel is decoded, so a decompression bomb costs nothing.
"""

from __future__ import annotations

import io
import logging
import warnings
from dataclasses import dataclass
from typing import cast

import pi_heif
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from shared.errors import CorruptImage, ImageTooLarge, ImageTooSmall, UnsupportedType

log = logging.getLogger(__name__)

# pi-heif: pillow-heif's decoder-only sibling (same libheif, no x265 encoder: 4 MB instead of 26, #22).
pi_heif.register_heif_opener()

#: Pillow format names we accept (HEIC and HEIF both report "HEIF").
SUPPORTED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "HEIF"})
_SRGB = ImageCms.createProfile("sRGB")
EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class DecodedPhoto:
    image: Image.Image  # mode RGB, EXIF orientation applied, no metadata attached
    format: str  # one of SUPPORTED_FORMATS


def open_checked(data: bytes, *, max_pixels: int) -> Image.Image:
    """Open lazily and check type and size on the header alone (no pixel decoded yet)."""
    if not data:
        raise CorruptImage("the file is empty")
    try:
        with warnings.catch_warnings():
            # Pillow warns (and past 2x errors) on huge images; our own cap below is much lower.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            # Only our formats' parsers ever see user bytes (no TIFF, PSD… header parsing).
            image = Image.open(io.BytesIO(data), formats=sorted(SUPPORTED_FORMATS))
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge("the image has far too many pixels") from exc
    except UnidentifiedImageError as exc:
        raise UnsupportedType("not an image we can read; send a JPEG, PNG, WebP or HEIC photo") from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise _corrupt(HEADER_DAMAGED, exc) from exc
    if image.format not in SUPPORTED_FORMATS:
        raise UnsupportedType(f"{image.format} images are not supported; send a JPEG, PNG, WebP or HEIC photo")
    width, height = image.size
    if width * height > max_pixels:
        raise ImageTooLarge(f"the image is {width}×{height}; at most {max_pixels // 1_000_000} megapixels")
    return image


def decode(data: bytes, *, max_pixels: int, min_side: int) -> DecodedPhoto:
    image = open_checked(data, max_pixels=max_pixels)
    source_format = image.format
    if source_format is None:  # open_checked let only SUPPORTED_FORMATS through; Pillow types it Optional (#12)
        raise UnsupportedType("not an image we can read; send a JPEG, PNG, WebP or HEIC photo")
    try:
        image.load()
        image = ImageOps.exif_transpose(image)
        rgb = _to_srgb(image)
    except _DECODE_ERRORS as exc:
        raise _corrupt(DATA_DAMAGED, exc) from exc
    _check_sides(rgb.size, min_side)
    return DecodedPhoto(image=rgb, format=source_format)


def check_as_encoded(data: bytes, *, max_pixels: int, min_side: int) -> tuple[int, int] | None:
    """For a JPEG whose pixels need no fix — no EXIF rotation, no colour profile, RGB or grey — whose own bytes,
    minus their metadata (shared/jpeg_metadata.py), the gateway stores as sent (#11): check it as `decode` would
    and return its size, without building its pixels at full size. None for any other photo: `decode` that.

    It is decoded at 1/8 scale: every scan's entropy-coded data is still read, so a truncated or damaged file
    fails as in `decode`, but the inverse DCT is mostly skipped and nothing is copied: 0.9 ms against `decode`'s
    2.5–3.0 on the benchmark's 512×600 photo."""
    image = open_checked(data, max_pixels=max_pixels)
    try:
        if not (
            image.format == "JPEG"
            and image.mode in ("RGB", "L")
            and not image.info.get("icc_profile")
            and image.getexif().get(EXIF_ORIENTATION, 1) == 1
        ):
            return None
        size = image.size
        _check_sides(size, min_side)
        image.draft(image.mode, (max(1, size[0] // 8), max(1, size[1] // 8)))
        image.load()
    except _DECODE_ERRORS as exc:
        raise _corrupt(DATA_DAMAGED, exc) from exc
    return size


_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)
#: What a person is told. Pillow's own text names its internals ("PngImagePlugin.MAX_TEXT_CHUNK", "54 bytes not
#: processed"): it goes to the log only (#25).
HEADER_DAMAGED = "the image header is damaged or incomplete"
DATA_DAMAGED = "the image data is truncated or damaged"


def _corrupt(message: str, exc: BaseException) -> CorruptImage:
    log.info("image refused as corrupt: %s: %s", type(exc).__name__, exc)
    return CorruptImage(message)


def _check_sides(size: tuple[int, int], min_side: int) -> None:
    width, height = size
    if min(width, height) < min_side:
        raise ImageTooSmall(f"the image is {width}×{height}; both sides need at least {min_side} px")


def _to_srgb(image: Image.Image) -> Image.Image:
    """Any mode (L, LA, P, RGBA, CMYK, I;16, I, F…) → RGB, honouring an embedded ICC profile."""
    image = _apply_icc_profile(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        image = _wide_grey_to_l(image)
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        # Transparent areas become white paper rather than black.
        rgba = image.convert("RGBA")
        paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(paper, rgba)
    rgb = image.convert("RGB")
    rgb.info = {}  # drop EXIF, ICC, XMP: nothing from the source travels on
    return rgb


def _wide_grey_to_l(image: Image.Image) -> Image.Image:
    """16/32-bit grey → 8-bit by scaling the full range (Pillow's convert would clip at 255). In Pillow alone: the
    gateway's image carries no numpy (#22)."""
    high = cast(float, image.getextrema()[1])  # one band: (min, max)
    top = 65535.0 if image.mode.startswith("I;16") else max(float(high), 1.0)
    scale = 255.0 / top
    return image.convert("F").point(lambda value: value * scale + 0.5).convert("L")


def _apply_icc_profile(image: Image.Image) -> Image.Image:
    icc = image.info.get("icc_profile")
    if not icc or image.mode not in ("RGB", "RGBA", "CMYK", "L"):
        return image
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        output_mode = "RGBA" if image.mode == "RGBA" else "RGB"
        converted = ImageCms.profileToProfile(image, source, _SRGB, outputMode=output_mode)
    except (ImageCms.PyCMSError, OSError) as exc:
        # A broken profile only costs colour accuracy; say so rather than fail the portrait.
        log.warning("ignoring unusable ICC profile: %s", exc)
        return image
    if converted is None:  # Pillow answers None only for inPlace=True, which is not asked for here (#12)
        raise RuntimeError("ImageCms.profileToProfile returned no image")
    return converted
