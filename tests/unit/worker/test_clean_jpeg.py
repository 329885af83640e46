"""The gallery copy is a fresh JPEG of the pixels alone (#10): whatever metadata the finished portrait carried —
EXIF, ICC profile, XMP, a comment — none of it survives the re-encoding."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from services.worker.gallery_copy import clean_jpeg

# JPEG markers that carry metadata: APP1 (EXIF, XMP), APP2 (ICC), APP13 (IPTC/Photoshop), COM.
_METADATA_MARKERS = {0xE1, 0xE2, 0xED, 0xFE}


def segments(data: bytes) -> list[int]:
    """The marker bytes of every segment before the image data (SOS)."""
    assert data[:2] == b"\xff\xd8"
    found, offset = [], 2
    while offset < len(data):
        assert data[offset] == 0xFF
        marker = data[offset + 1]
        found.append(marker)
        if marker == 0xDA:  # start of scan: headers end here
            return found
        length = int.from_bytes(data[offset + 2 : offset + 4], "big")
        offset += 2 + length
    return found


def loaded_portrait() -> bytes:
    """A JPEG with EXIF (camera, GPS-ish tag), an ICC profile, XMP and a comment."""
    rng = np.random.default_rng(10)
    image = Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x010F] = "Camera Maker"  # Make
    exif[0x0131] = "secret-software"  # Software
    icc = b"\x00\x00\x02\x0cfake-icc-profile" + b"\x00" * 100
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:Description author="Jane Doe"/></x:xmpmeta>'
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif, icc_profile=icc, comment=b"taken at home", xmp=xmp)
    return buffer.getvalue()


def test_every_metadata_segment_is_gone_and_the_pixels_stay():
    source = loaded_portrait()
    assert _METADATA_MARKERS & set(segments(source)) == {0xE1, 0xE2, 0xFE}  # the fixture really carries them
    copy = clean_jpeg(source, quality=90)
    assert not _METADATA_MARKERS & set(segments(copy))
    for needle in (
        b"Exif",
        b"Camera Maker",
        b"secret-software",
        b"fake-icc",
        b"xmpmeta",
        b"Jane Doe",
        b"taken at home",
    ):
        assert needle not in copy
    with Image.open(io.BytesIO(copy)) as opened:
        assert opened.format == "JPEG" and opened.size == (128, 96) and opened.mode == "RGB"
        assert not {"exif", "icc_profile", "xmp", "comment"} & set(opened.info)
        original = np.asarray(Image.open(io.BytesIO(source)).convert("RGB"), dtype=np.int16)
        assert np.abs(np.asarray(opened, dtype=np.int16) - original).mean() < 12  # same picture


def test_a_webp_portrait_becomes_a_jpeg():
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 10, 10)).save(buffer, format="WEBP", exif=Image.Exif())
    with Image.open(io.BytesIO(clean_jpeg(buffer.getvalue(), quality=90))) as opened:
        assert opened.format == "JPEG" and opened.size == (64, 48)
