"""Decode: every mode and container a phone or editor produces comes out as upright 8-bit RGB, nothing else."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from shared.errors import CorruptImage, ImageTooLarge, ImageTooSmall, UnsupportedType
from shared.imaging import check_as_encoded, decode
from tests.support import images

LIMITS = {"max_pixels": 40_000_000, "min_side": 128}


@pytest.fixture(scope="module")
def photo(astronaut_path) -> Image.Image:
    return Image.open(astronaut_path).convert("RGB").resize((256, 256))


def mean_abs_diff(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(np.asarray(a, dtype=np.float32) - np.asarray(b, dtype=np.float32)).mean())


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "RGB"])
def test_png_modes_become_rgb(photo, mode):
    decoded = decode(images.encode(photo.convert(mode), "PNG"), **LIMITS)
    assert decoded.image.mode == "RGB" and decoded.image.size == photo.size
    assert decoded.format == "PNG"
    reference = photo.convert(mode).convert("RGB")
    assert mean_abs_diff(decoded.image, reference) < 1.0


def test_transparent_areas_become_white_paper(photo):
    rgba = photo.convert("RGBA")
    rgba.putalpha(0)
    decoded = decode(images.encode(rgba, "PNG"), **LIMITS)
    assert np.asarray(decoded.image).min() == 255


def test_cmyk_jpeg(photo):
    decoded = decode(images.cmyk_jpeg(photo), **LIMITS)
    assert decoded.image.mode == "RGB"
    assert mean_abs_diff(decoded.image, photo) < 12.0


def test_sixteen_bit_grey_keeps_its_tones(photo):
    decoded = decode(images.grey16_png(photo), **LIMITS)
    grey = np.asarray(decoded.image, dtype=np.float32)
    expected = np.asarray(photo.convert("L"), dtype=np.float32)
    # Pillow's own convert clips 16-bit values at 255 (a white image); ours scales them.
    assert np.abs(grey[..., 0] - expected).mean() < 1.0
    assert grey.std() > 20


def test_heic(photo):
    decoded = decode(images.heic(photo), **LIMITS)
    assert decoded.format == "HEIF" and decoded.image.size == photo.size
    assert mean_abs_diff(decoded.image, photo) < 8.0


def test_exif_orientation_is_applied(photo):
    decoded = decode(images.rotated_jpeg(photo, orientation=6), **LIMITS)
    assert decoded.image.size == photo.size
    assert mean_abs_diff(decoded.image, photo) < 6.0  # upright again, not sideways
    assert mean_abs_diff(decoded.image, photo.transpose(Image.Transpose.ROTATE_90)) > 20


def test_metadata_is_dropped(photo):
    decoded = decode(images.jpeg_with_gps(photo), **LIMITS)
    assert not decoded.image.info
    assert not decoded.image.getexif()


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", CorruptImage),
        (b"hello, I am a text file named selfie.jpg\n" * 20, UnsupportedType),
    ],
)
def test_non_images(data, error):
    with pytest.raises(error):
        decode(data, **LIMITS)


def test_gif_is_unsupported(photo):
    with pytest.raises(UnsupportedType) as raised:
        decode(images.encode(photo, "GIF"), **LIMITS)
    assert raised.value.code == "unsupported_type"


def test_truncated_jpeg_is_corrupt(photo):
    with pytest.raises(CorruptImage) as raised:
        decode(images.truncated(images.encode(photo, "JPEG", quality=95)), **LIMITS)
    assert raised.value.code == "corrupt_image"


def test_bomb_is_refused_on_the_header():
    with pytest.raises(ImageTooLarge) as raised:
        decode(images.png_bomb(), **LIMITS)
    assert raised.value.code == "image_too_large"


def test_tiny_image_is_refused(photo):
    with pytest.raises(ImageTooSmall):
        decode(images.encode(photo.resize((10, 10)), "PNG"), **LIMITS)


@pytest.mark.parametrize(
    ("name", "build", "as_encoded"),
    [
        ("plain JPEG with GPS", images.jpeg_with_gps, True),
        ("grey JPEG", lambda photo: images.encode(photo.convert("L"), "JPEG"), True),
        ("EXIF-rotated JPEG", images.rotated_jpeg, False),
        ("CMYK JPEG", images.cmyk_jpeg, False),
        ("JPEG with a colour profile", lambda photo: images.encode(photo, "JPEG", icc_profile=_srgb_icc()), False),
        ("PNG", lambda photo: images.encode(photo, "PNG"), False),
    ],
)
def test_only_a_jpeg_whose_pixels_needed_no_fix_can_be_kept_as_sent(photo, name, build, as_encoded):
    """#11: the gateway keeps such a JPEG's own bytes (minus metadata) instead of re-encoding `image`; it gets
    the photo's own size, not the 1/8-scale check's."""
    assert check_as_encoded(build(photo), **LIMITS) == (photo.size if as_encoded else None)


def test_the_check_without_full_decode_refuses_what_decode_refuses(photo):
    """The 1/8-scale check still reads every scan: a truncated file is corrupt, a small one too small, as in
    `decode` (this JPEG qualifies: the refusals come from the check itself, not from a later decode)."""
    jpeg = images.encode(photo, "JPEG", quality=95)
    assert check_as_encoded(jpeg, **LIMITS) == photo.size
    with pytest.raises(CorruptImage):
        check_as_encoded(images.truncated(jpeg), **LIMITS)
    with pytest.raises(ImageTooSmall):
        check_as_encoded(images.encode(photo.resize((100, 300)), "JPEG"), **LIMITS)
    with pytest.raises(ImageTooLarge):
        check_as_encoded(jpeg, max_pixels=1000, min_side=16)


def _srgb_icc() -> bytes:
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
