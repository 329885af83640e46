"""Face alignment: the similarity fit, the batched crop warp, and the inverse warp that pastes faces back."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from services.worker.engine import align
from services.worker.engine.detect import FaceBox


def _face(landmarks: np.ndarray) -> FaceBox:
    xs, ys = landmarks[:, 0], landmarks[:, 1]
    return FaceBox(
        x1=float(xs.min()) - 30,
        y1=float(ys.min()) - 40,
        x2=float(xs.max()) + 30,
        y2=float(ys.max()) + 30,
        score=1.0,
        landmarks=tuple(map(tuple, landmarks.tolist())),
    )


def _similar(points: np.ndarray, scale: float, angle: float, shift: tuple[float, float]) -> np.ndarray:
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return points @ (scale * rotation).T + np.asarray(shift)


def test_similarity_recovers_a_known_transform():
    source = align.TEMPLATE + np.random.default_rng(1).normal(0, 3, align.TEMPLATE.shape)
    target = _similar(source, 0.6, 0.3, (40.0, -12.0))
    matrix = align.similarity(source, target)
    assert np.allclose(matrix[:, :2] @ source.T + matrix[:, 2:], target.T, atol=1e-9)
    assert np.allclose(align.invert(align.invert(matrix)), matrix)


def test_landmarks_land_on_the_template():
    photo_points = _similar(align.TEMPLATE, 1.7, -0.2, (300.0, 220.0))  # a tilted face, 1.7× larger
    matrix = align.alignment(_face(photo_points))
    mapped = photo_points @ matrix[:, :2].T + matrix[:, 2]
    assert np.abs(mapped - align.TEMPLATE).max() < 1e-6


def _textured(height: int, width: int) -> torch.Tensor:
    ys = torch.linspace(0, 1, height).view(-1, 1)
    xs = torch.linspace(0, 1, width).view(1, -1)
    channels = [0.5 + 0.5 * torch.sin(xs * 9 + ys * 4), 0.5 + 0.5 * torch.cos(ys * 11 - xs * 3), xs * ys]
    return torch.stack(channels).unsqueeze(0)


@pytest.mark.parametrize("scale,angle", [(1.0, 0.0), (1.6, 0.25), (0.8, -0.4)])
def test_crop_then_paste_round_trip_puts_the_face_back_where_it_was(scale, angle):
    portrait = _textured(600, 480)
    points = _similar(align.TEMPLATE - 128, scale, angle, (240.0, 280.0))
    matrix = align.alignment(_face(points))
    crop = align.crop_faces(portrait, [matrix])
    back = align.paste(crop, [matrix], (600, 480))
    # Compare inside the face (well within the crop): interpolation error only.
    coverage = align.paste(torch.ones(1, 1, 256, 256), [matrix], (600, 480))
    inside = coverage > 0.999
    centre = torch.zeros_like(inside)
    cy, cx = int(points[:, 1].mean()), int(points[:, 0].mean())
    centre[..., cy - 40 : cy + 40, cx - 40 : cx + 40] = True
    region = (inside & centre).expand_as(portrait)
    assert region.sum() > 3 * 6000
    assert (back - portrait).abs()[region].mean() < 0.01
    # And outside the pasted crop nothing is painted.
    assert back[(coverage == 0).expand_as(portrait)].abs().max() == 0


def test_a_batch_of_faces_warps_in_one_call_each_to_its_own_crop():
    portrait = _textured(400, 320).repeat(2, 1, 1, 1)
    matrices = [align.alignment(_face(_similar(align.TEMPLATE - 128, s, 0.0, (160.0, 200.0)))) for s in (0.9, 1.3)]
    crops = align.crop_faces(portrait, matrices)
    singles = torch.cat([align.crop_faces(portrait[i : i + 1], [m]) for i, m in enumerate(matrices)])
    assert crops.shape == (2, 3, 256, 256)
    assert torch.allclose(crops, singles, atol=1e-6)
    assert (crops[0] - crops[1]).abs().mean() > 0.02  # different scales, different crops


def test_pasting_a_larger_crop_is_the_same_geometry():
    """Super-resolved faces (512²) go back through the same matrices as the 256² crops."""
    portrait = _textured(500, 400)
    matrix = align.alignment(_face(_similar(align.TEMPLATE - 128, 1.5, 0.1, (200.0, 240.0))))
    crop = align.crop_faces(portrait, [matrix])
    big = torch.nn.functional.interpolate(crop, scale_factor=2, mode="bilinear", align_corners=False)
    small_back = align.paste(crop, [matrix], (500, 400))
    big_back = align.paste(big, [matrix], (500, 400))
    inside = align.paste(torch.ones(1, 1, 256, 256), [matrix], (500, 400)) > 0.999
    assert (small_back - big_back).abs()[inside.expand_as(portrait)].mean() < 0.01
