"""Which face to paint when a photo has several: the largest, most central confident one."""

from __future__ import annotations

import math
from collections.abc import Sequence

from services.worker.engine.detect import FaceBox
from shared.errors import NoFace


def centre_offset(face: FaceBox, photo_size: tuple[int, int]) -> float:
    """Distance of the face's centre from the photo's, in half-diagonals: 0 centred, 1 in a corner."""
    width, height = photo_size
    centre_x, centre_y = face.center
    return min(1.0, math.hypot(centre_x - width / 2, centre_y - height / 2) / (math.hypot(width, height) / 2))


def prominence(face: FaceBox, photo_size: tuple[int, int]) -> float:
    """Face area, discounted by up to half as the face moves from the centre to a corner."""
    return face.area * (1.0 - 0.5 * centre_offset(face, photo_size))


def choose_face(faces: Sequence[FaceBox], photo_size: tuple[int, int], *, min_score: float) -> FaceBox:
    confident = [face for face in faces if face.score >= min_score]
    if not confident:
        raise NoFace("no face found in the photo; use a well-lit photo with the face clearly visible")
    return max(confident, key=lambda face: prominence(face, photo_size))
