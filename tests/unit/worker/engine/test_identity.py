"""Identity figures: landmark geometry of a painting against its photo."""

from __future__ import annotations

import math

import numpy as np
import pytest

from services.worker.engine import identity
from services.worker.engine.align import TEMPLATE
from services.worker.engine.detect import FaceBox


def _moved(points: np.ndarray, scale: float, angle: float, shift: tuple[float, float]) -> np.ndarray:
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return points @ (scale * rotation).T + np.asarray(shift)


def test_shape_ignores_position_angle_and_size_but_not_proportions():
    assert identity.shape_residual(TEMPLATE, _moved(TEMPLATE, 1.4, 0.3, (20.0, -7.0))) < 1e-9
    wider_mouth = TEMPLATE.copy()
    wider_mouth[3, 0] -= 10
    wider_mouth[4, 0] += 10
    assert identity.shape_residual(TEMPLATE, wider_mouth) > 0.05
    # the shift measure does see a face that moved
    assert identity.shift_residual(TEMPLATE, TEMPLATE + [6.8, 0.0]) == pytest.approx(0.1, abs=1e-3)


def test_a_face_elsewhere_in_the_painting_is_not_the_sitter():
    def face(points: np.ndarray) -> FaceBox:
        return FaceBox(x1=0, y1=0, x2=1, y2=1, score=0.99, landmarks=tuple(map(tuple, points.tolist())))

    photo = face(TEMPLATE)
    assert identity.match_face(photo, [face(TEMPLATE + 200)]) is None
    figures = identity.measure(photo, [face(TEMPLATE + 200), face(TEMPLATE + 2)])
    assert figures.face_found and figures.shape_rms is not None and figures.shape_rms < 1e-6
    assert not identity.measure(photo, []).face_found
