"""Finish: the detail blend touches only the eyes and mouth; the encoded portrait carries no metadata."""

from __future__ import annotations

import io

import pytest
import torch
from PIL import Image

from services.worker.engine.detect import FaceBox
from services.worker.engine.finish import detail_blend, encode, feature_mask

FACE = FaceBox(
    x1=100, y1=80, x2=200, y2=200, score=0.99, landmarks=((125, 125), (175, 125), (150, 150), (130, 175), (170, 175))
)


def test_mask_covers_eyes_and_mouth_only():
    mask = feature_mask(FACE, 320, 300)
    assert mask[125, 125] > 0.99 and mask[125, 175] > 0.99 and mask[175, 150] > 0.9
    assert mask[10, 10] < 1e-6 and mask[300, 280] < 1e-6  # background and shoulders untouched


def test_detail_blend_moves_features_towards_the_photo():
    torch.manual_seed(0)
    photo = torch.rand(1, 3, 320, 300)
    painted = torch.full((1, 3, 320, 300), 0.5)
    blended = detail_blend(painted, photo, [FACE], [0.5])
    assert torch.equal(blended[..., :40, :40], painted[..., :40, :40])
    eye = (slice(None), slice(None), slice(118, 132), slice(118, 132))
    assert (blended[eye] - photo[eye]).abs().mean() < (painted[eye] - photo[eye]).abs().mean()
    assert torch.equal(detail_blend(painted, photo, [FACE], [0.0]), painted)


@pytest.mark.parametrize("image_format", ["jpeg", "webp"])
def test_encoded_portrait_has_no_metadata(image_format):
    data = encode(torch.rand(3, 64, 48), image_format=image_format, quality=90)
    image = Image.open(io.BytesIO(data))
    assert image.format == image_format.upper()
    assert image.size == (48, 64)
    assert not image.getexif()
    assert not {"exif", "icc_profile", "xmp", "XML:com.adobe.xmp"} & set(image.info)
    assert b"Exif" not in data[:2048]
