"""Frame: a 4:5 head-and-shoulders crop placed from the eyes, shrunk (never stretched) when the photo is tight."""

from __future__ import annotations

import pytest
from PIL import Image

from services.worker.engine.detect import FaceBox
from services.worker.engine.frame import ASPECT, EYE_LINE, frame, portrait_size
from shared.errors import FaceTooSmall


def face_at(cx: float, cy: float, size: float) -> FaceBox:
    half = size / 2
    eye_y = cy - size * 0.1
    return FaceBox(
        x1=cx - half,
        y1=cy - half,
        x2=cx + half,
        y2=cy + half,
        score=0.99,
        landmarks=(
            (cx - size * 0.2, eye_y),
            (cx + size * 0.2, eye_y),
            (cx, cy),
            (cx - size * 0.15, cy + size * 0.25),
            (cx + size * 0.15, cy + size * 0.25),
        ),
    )


@pytest.mark.parametrize("long_side", [512, 768, 1000, 1026])
def test_portrait_size_is_four_by_five_in_multiples_of_four(long_side):
    width, height = portrait_size(long_side)
    assert width % 4 == 0 and height % 4 == 0
    assert abs(width / height - ASPECT) < 0.01
    assert abs(height - long_side) <= 2


def test_roomy_photo_puts_the_eyes_on_the_eye_line():
    photo = Image.new("RGB", (2000, 2000))
    face = face_at(1000, 900, 300)
    framing = frame(photo, face, long_side=768, min_face_size=64)
    x1, y1, x2, y2 = framing.crop
    assert abs((x2 - x1) / (y2 - y1) - ASPECT) < 0.01
    eye_y = face.landmarks[0][1]
    assert abs((eye_y - y1) / (y2 - y1) - EYE_LINE) < 0.01
    assert abs((x1 + x2) / 2 - 1000) <= 1  # centred on the eyes
    assert framing.portrait.size == portrait_size(768)
    # The face is mapped into portrait pixels consistently with the crop.
    mapped_eye = framing.face_in_portrait.landmarks[0]
    assert abs(mapped_eye[1] / framing.portrait.height - EYE_LINE) < 0.01


def test_face_near_the_edge_keeps_the_crop_inside_the_photo():
    photo = Image.new("RGB", (1200, 900))
    framing = frame(photo, face_at(80, 120, 200), long_side=512, min_face_size=64)
    x1, y1, x2, y2 = framing.crop
    assert x1 >= 0 and y1 >= 0 and x2 <= 1200 and y2 <= 900
    assert abs((x2 - x1) / (y2 - y1) - ASPECT) < 0.01


def test_tight_close_up_shrinks_the_crop_instead_of_distorting():
    photo = Image.new("RGB", (600, 600))
    framing = frame(photo, face_at(300, 300, 500), long_side=512, min_face_size=64)
    x1, y1, x2, y2 = framing.crop
    assert y2 - y1 <= 600 and x2 - x1 <= 600
    assert abs((x2 - x1) / (y2 - y1) - ASPECT) < 0.01


def test_small_face_is_refused():
    with pytest.raises(FaceTooSmall) as raised:
        frame(Image.new("RGB", (2000, 2000)), face_at(1000, 1000, 40), long_side=512, min_face_size=64)
    assert raised.value.code == "face_too_small"
