"""Upload field parsing and the re-encoded source, without servers."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from scripts.support import samples
from services.gateway.errors import ApiError
from services.gateway.uploads import encode_source, parse_strength, parse_style
from shared.imaging import decode
from tests.support import images


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, "auto"),
        ("", "auto"),
        ("  ", "auto"),
        ("auto", "auto"),
        ("OIL", "oil"),
        (" ink ", "ink"),
        ("chiaroscuro", "chiaroscuro"),
        ("sumi-e", "sumi-e"),
    ],
)
def test_style_choices(raw: str | None, expected: str) -> None:
    assert parse_style(raw) == expected


@pytest.mark.parametrize("raw", ["cubism", "oil,ink", "auto ink", "a" * 5000])
def test_unknown_styles(raw: str) -> None:
    with pytest.raises(ApiError) as caught:
        parse_style(raw)
    assert caught.value.code == "unknown_style" and caught.value.status == 400
    assert len(caught.value.message) < 200  # the client's value is echoed, but not all of it


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, None),
        ("", None),
        (" ", None),
        ("0", 0.0),
        ("1", 1.0),
        ("0.35", 0.35),
        (" .5 ", 0.5),
        ("1e-1", 0.1),
    ],
)
def test_strengths(raw: str | None, expected: float | None) -> None:
    assert parse_strength(raw) == expected


@pytest.mark.parametrize("raw", ["-0.0001", "1.0001", "nan", "NaN", "inf", "-inf", "half", "0,5", "1/2"])
def test_invalid_strengths(raw: str) -> None:
    with pytest.raises(ApiError) as caught:
        parse_strength(raw)
    assert caught.value.code == "invalid_strength" and caught.value.status == 400


def test_source_is_metadata_free_444_jpeg() -> None:
    upright = Image.open(samples.astronaut_path()).convert("RGB")
    photo = decode(images.jpeg_with_gps(upright), max_pixels=40_000_000, min_side=128)
    data = encode_source(photo.image)
    stored = Image.open(io.BytesIO(data))
    assert stored.format == "JPEG" and stored.size == upright.size
    assert len(stored.getexif()) == 0 and b"Exif" not in data and b"ICC_PROFILE" not in data
    assert stored.layer[0][1:3] == stored.layer[1][1:3] == (1, 1)  # chroma not subsampled (4:4:4)
