"""Composition of a GAN-painted face into its portrait: the head mask, the paper cut-out and the palette pull."""

from __future__ import annotations

import numpy as np
import torch

from services.worker.engine import align, compose


def _paper_with_head(highlight: bool = True) -> torch.Tensor:
    """White paper, a dark round head in the middle, and (inside it) a white highlight like a lit forehead."""
    ys = torch.arange(256).view(-1, 1) + 0.5
    xs = torch.arange(256).view(1, -1) + 0.5
    head = ((xs - 128) ** 2 + (ys - 135) ** 2) < 80**2
    image = torch.ones(1, 3, 256, 256)
    image[:, :, head] = torch.tensor([0.55, 0.4, 0.3]).view(1, 3, 1)
    if highlight:
        image[:, :, 110:130, 115:140] = 1.0
    return image


def test_the_head_ellipse_is_solid_inside_and_fades_out():
    mask = compose.head_ellipse()[0, 0]
    assert mask[135, 128] > 0.99 and mask[0, 0] < 0.01 and mask[255, 255] < 0.01
    row = mask[135]
    assert torch.all(row[128:].diff() <= 1e-6) and torch.all(row[:128].diff() >= -1e-6)  # no steps, no rings
    assert 0.2 < row[128 + 90] < 0.8  # the feathered edge sits on the ellipse


def test_paper_is_cut_away_but_white_inside_the_head_is_kept():
    paper = compose.paper_around_head(_paper_with_head())[0, 0]
    assert paper[5, 5] > 0.95 and paper[250, 128] > 0.95  # around the head
    assert paper[135, 128] < 0.05  # the head
    assert paper[120, 127] < 0.05  # a white highlight enclosed by the head is not paper


def test_head_masks_only_cut_paper_for_media_that_paint_on_paper():
    painted = _paper_with_head().repeat(2, 1, 1, 1)
    masks = compose.head_masks(painted, [False, True])
    assert torch.allclose(masks[0], compose.head_ellipse()[0])
    # The ellipse reaches past the round head into the paper: only the paper medium trims it there.
    assert masks[0, 0, 135, 128 + 85] > 0.5 and masks[1, 0, 135, 128 + 85] < 0.1


def test_the_palette_moves_towards_the_painted_head():
    background = torch.rand(1, 3, 64, 48) * 0.2 + torch.tensor([0.1, 0.6, 0.2]).view(1, 3, 1, 1)
    painted = _paper_with_head(highlight=False)
    masks = compose.head_masks(painted, [True])
    matched = compose.match_palette(background, painted, masks, amount=1.0)
    head_mean = (painted * masks).sum((2, 3)) / masks.sum((2, 3))
    assert torch.allclose(matched.mean((2, 3)), head_mean, atol=0.02)
    halfway = compose.match_palette(background, painted, masks, amount=0.5)
    assert torch.allclose(halfway.mean((2, 3)), (background.mean((2, 3)) + head_mean) / 2, atol=0.02)


def test_composite_puts_the_face_inside_the_mask_and_keeps_the_rest():
    background = torch.zeros(1, 3, 300, 240)
    face = torch.ones(1, 3, 512, 512)
    masks = compose.head_ellipse().clone()
    points = align.TEMPLATE * 0.8 + np.array([20.0, 40.0])
    matrix = align.similarity(points, align.TEMPLATE)
    out, _ = compose.composite(background, face, masks, [matrix])
    centre = points.mean(0).round().astype(int)
    assert out[0, :, centre[1], centre[0]].min() > 0.99
    assert out[0, :, 5, 5].max() == 0 and out[0, :, 295, 235].max() == 0


def test_the_old_master_grade_warms_the_palette_and_darkens_the_corners():
    grey = torch.full((1, 3, 100, 80), 0.6)
    cool = grey * torch.tensor([0.7, 0.9, 1.2]).view(1, 3, 1, 1)
    graded = compose.old_master_grade(torch.cat([grey, cool]))
    centre, corner = graded[..., 45, 40], graded[..., 2, 2]
    assert (centre[:, 0] > centre[:, 2] + 0.1).all()  # umber: red well above blue, even for a cool input
    assert (corner.sum(1) < 0.7 * centre.sum(1)).all()


def test_the_old_master_grade_only_warms_the_sitters_face():
    """On the face the ramp moves the colour a quarter of the way, not three quarters (#21): a dark, reddish skin
    keeps its hue under the umber light."""
    skin = torch.tensor([0.45, 0.28, 0.2]).view(1, 3, 1, 1).expand(1, 3, 100, 80).clone()
    face = torch.zeros(1, 1, 100, 80)
    face[..., 30:60, 25:55] = 1
    graded = compose.old_master_grade(skin, face)
    everywhere = compose.old_master_grade(skin)
    on_face = (graded[..., 45, 40] - skin[..., 45, 40]).abs().sum()
    assert on_face < 0.5 * (everywhere[..., 45, 40] - skin[..., 45, 40]).abs().sum()
    assert torch.allclose(graded[..., 5, 40], everywhere[..., 5, 40])  # off the face, the full grade
