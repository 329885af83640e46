"""Dropping a JPEG's metadata without re-encoding it (#11): everything that is not the picture goes, the picture
decodes to the very same pixels, and a stream the walker does not fully understand is refused (None)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from shared.jpeg_metadata import strip_metadata
from tests.support import images


@pytest.fixture(scope="module")
def photo(astronaut_path) -> Image.Image:
    return Image.open(astronaut_path).convert("RGB").resize((256, 256))


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + (len(payload) + 2).to_bytes(2, "big") + payload


def after_soi(data: bytes, *segments: bytes) -> bytes:
    return data[:2] + b"".join(segments) + data[2:]


def markers(data: bytes) -> list[int]:
    """Every segment marker before the first scan, and every one between scans (read independently of the code
    under test: a scan's data ends at the first FF that is not FF00 or a restart)."""
    found, position = [], 2
    while position < len(data):
        assert data[position] == 0xFF
        marker = data[position + 1]
        found.append(marker)
        if marker == 0xD9:
            break
        length = int.from_bytes(data[position + 2 : position + 4], "big")
        position += 2 + length
        if marker == 0xDA:
            while not (data[position] == 0xFF and data[position + 1] not in (0x00, *range(0xD0, 0xD8))):
                position += 1
    return found


def test_exif_gps_xmp_iptc_icc_comments_and_trailers_go(photo):
    sent = images.jpeg_with_gps(photo)  # EXIF with GPS and the camera's make
    sent = after_soi(
        sent,
        segment(0xE1, b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta>Paris</x:xmpmeta>"),
        segment(0xED, b"Photoshop 3.0\x008BIM caption: at home"),
        segment(0xE2, b"ICC_PROFILE\x00\x01\x01not really a profile"),
        segment(0xFE, b"my holiday"),
    )
    sent += b"MPF second picture after the end"
    kept = strip_metadata(sent)
    assert kept is not None
    for secret in (b"PhoneMaker", b"Exif", b"xmpmeta", b"Paris", b"Photoshop", b"ICC_PROFILE", b"holiday", b"MPF"):
        assert secret in sent and secret not in kept
    assert not {marker for marker in markers(kept) if 0xE1 <= marker <= 0xEF or marker == 0xFE}
    assert kept.endswith(b"\xff\xd9")
    assert np.array_equal(pixels(kept), pixels(sent))
    assert not {"exif", "icc_profile", "xmp", "comment", "photoshop"} & set(Image.open(io.BytesIO(kept)).info)


def test_progressive_scans_and_comments_between_them(photo):
    sent = images.encode(photo, "JPEG", progressive=True, quality=85)
    second_scan = sent.index(b"\xff\xda", sent.index(b"\xff\xda") + 2)
    sent = sent[:second_scan] + segment(0xFE, b"between scans") + sent[second_scan:]
    kept = strip_metadata(sent)
    assert kept is not None and b"between scans" not in kept
    assert markers(kept).count(0xDA) == markers(sent).count(0xDA) > 1
    assert np.array_equal(pixels(kept), pixels(sent))


def test_restart_markers_inside_scans_are_data(photo):
    sent = images.encode(photo, "JPEG", quality=90, restart_marker_blocks=4)
    assert b"\xff\xdd" in sent and b"\xff\xd0" in sent  # DRI, and a restart inside the scan
    kept = strip_metadata(sent)
    assert kept is not None and np.array_equal(pixels(kept), pixels(sent))


def test_a_bare_jfif_header_and_adobes_transform_flag_stay(photo):
    adobe = segment(0xEE, b"Adobe\x00\x64\x00\x00\x00\x00\x01")
    sent = images.encode(photo, "JPEG", quality=90)
    assert sent[2:4] == b"\xff\xe0"  # Pillow writes a bare JFIF header
    jfif_end = 4 + int.from_bytes(sent[4:6], "big")
    sent = sent[:jfif_end] + adobe + sent[jfif_end:]
    kept = strip_metadata(sent)
    assert kept is not None and markers(kept)[:2] == [0xE0, 0xEE] and adobe in kept


def test_a_jfif_thumbnail_goes(photo):
    sent = images.encode(photo, "JPEG", quality=90)
    jfif_end = 4 + int.from_bytes(sent[4:6], "big")
    thumbnail = segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x01\x01" + b"\x80\x80\x80")  # 1×1 RGB
    kept = strip_metadata(sent[:2] + thumbnail + sent[jfif_end:])
    assert kept is not None and 0xE0 not in markers(kept)
    assert np.array_equal(pixels(kept), pixels(sent))


@pytest.mark.parametrize(
    ("name", "damage"),
    [
        ("not a jpeg", lambda data: b"\x89PNG" + data),
        ("no end of image", lambda data: data[: len(data) // 2]),
        ("segment past the end", lambda data: data[:2] + b"\xff\xe1\xff\xff" + b"\x00" * 8),
        ("unknown marker", lambda data: after_soi(data, segment(0xF7, b"JPEG-LS"))),
        ("garbage between segments", lambda data: data[:2] + b"\x00" + data[2:]),
    ],
)
def test_a_stream_it_does_not_understand_is_refused(photo, name, damage):
    assert strip_metadata(damage(images.encode(photo, "JPEG", quality=90))) is None
