"""Builders for the awkward inputs real users send: every mode, rotation, container and broken file."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pillow_heif
from PIL import Image

EXIF_ORIENTATION = 0x0112
EXIF_GPS_IFD = 0x8825


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def rotated_jpeg(upright: Image.Image, orientation: int = 6) -> bytes:
    """A JPEG stored sideways with an EXIF tag saying how to turn it upright, as phones write them.

    Orientation 6 means "rotate 90° clockwise to display"; so the stored pixels are the upright image turned
    90° counter-clockwise.
    """
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    return encode(stored, "JPEG", exif=exif.tobytes(), quality=95)


def jpeg_with_gps(image: Image.Image) -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make
    gps = exif.get_ifd(EXIF_GPS_IFD)
    gps[1] = "N"
    gps[2] = (48.0, 51.0, 24.0)
    gps[3] = "E"
    gps[4] = (2.0, 21.0, 3.0)
    return encode(image, "JPEG", exif=exif.tobytes(), quality=95)


def grey16_png(image: Image.Image) -> bytes:
    """A 16-bit greyscale PNG (mode I;16) using the full 0..65535 range."""
    grey = np.asarray(image.convert("L"), dtype=np.uint16) * 257
    wide = Image.fromarray(grey)  # uint16 → mode I;16
    assert wide.mode == "I;16"
    return encode(wide, "PNG")


def cmyk_jpeg(image: Image.Image) -> bytes:
    return encode(image.convert("CMYK"), "JPEG", quality=95)


def heic(image: Image.Image) -> bytes:
    """Encoded by pillow-heif, a dev dependency: the services decode with pi-heif, which cannot encode (#22). Not
    registered as Pillow's HEIF plugin here, so every decode in the tests is the services' own."""
    buffer = io.BytesIO()
    pillow_heif.from_pillow(image).save(buffer, quality=90)
    return buffer.getvalue()


def truncated(data: bytes, keep: float = 0.5) -> bytes:
    return data[: int(len(data) * keep)]


def png_bomb(width: int = 30_000, height: int = 30_000) -> bytes:
    """A tiny valid PNG that claims (and decompresses to) a huge greyscale image: 1 bit per pixel of zeros."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
