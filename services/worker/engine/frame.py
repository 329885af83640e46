"""Stage 3 — frame: a head-and-shoulders crop at a fixed 4:5 portrait ratio, placed from the face's landmarks.

Painters put the eyes about two fifths from the top and leave room for the shoulders; we do the same and shrink
the crop (never distort it) when the photo is too tight to allow the ideal margins.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

from services.worker.engine.detect import FaceBox
from shared.errors import FaceTooSmall

ASPECT = 4 / 5  # width / height
EYE_LINE = 0.40  # eyes this far down the crop
CROP_HEIGHT_PER_FACE = 2.7  # crop height as a multiple of the face box height (room for shoulders)


@dataclass(frozen=True)
class Framing:
    crop: tuple[int, int, int, int]  # x1, y1, x2, y2 in photo pixels
    portrait: Image.Image  # the crop resized to the generation size
    face_in_portrait: FaceBox  # the face box and landmarks in portrait pixels


def portrait_size(long_side: int) -> tuple[int, int]:
    """(width, height) of a 4:5 portrait; both sides multiples of 4, as the style networks need."""
    height = max(4, round(long_side / 4) * 4)
    width = max(4, round(height * ASPECT / 4) * 4)
    return width, height


def frame(photo: Image.Image, face: FaceBox, *, long_side: int, min_face_size: int) -> Framing:
    if min(face.width, face.height) < min_face_size:
        raise FaceTooSmall(
            f"the face is about {round(min(face.width, face.height))} px across; "
            f"we need at least {min_face_size} px — move closer or use a larger photo"
        )
    crop = _crop_box(photo.size, face)
    out_w, out_h = portrait_size(long_side)
    portrait = photo.resize((out_w, out_h), Image.Resampling.LANCZOS, box=crop)
    scale_x, scale_y = out_w / (crop[2] - crop[0]), out_h / (crop[3] - crop[1])
    return Framing(crop=crop, portrait=portrait, face_in_portrait=_map_face(face, crop, scale_x, scale_y))


def _crop_box(photo_size: tuple[int, int], face: FaceBox) -> tuple[int, int, int, int]:
    photo_w, photo_h = photo_size
    (left_eye, right_eye) = face.landmarks[0], face.landmarks[1]
    eye_x = (left_eye[0] + right_eye[0]) / 2
    eye_y = (left_eye[1] + right_eye[1]) / 2
    height = face.height * CROP_HEIGHT_PER_FACE
    # Too tight a photo: shrink the crop until it fits rather than padding with invented pixels.
    height = min(height, photo_h, photo_w / ASPECT)
    width = height * ASPECT
    left = _clamp(eye_x - width / 2, 0, photo_w - width)
    top = _clamp(eye_y - EYE_LINE * height, 0, photo_h - height)
    return round(left), round(top), round(left + width), round(top + height)


def _clamp(value: float, low: float, high: float) -> float:
    return max(low, min(value, high))


def _map_face(face: FaceBox, crop: tuple[int, int, int, int], sx: float, sy: float) -> FaceBox:
    def point(x: float, y: float) -> tuple[float, float]:
        return (x - crop[0]) * sx, (y - crop[1]) * sy

    (x1, y1), (x2, y2) = point(face.x1, face.y1), point(face.x2, face.y2)
    return FaceBox(
        x1=x1,
        y1=y1,
        x2=x2,
        y2=y2,
        score=face.score,
        landmarks=tuple(point(x, y) for x, y in face.landmarks),
    )
