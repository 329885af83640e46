"""The painted face brought into the sitter's shape and colour (#21): the colour space, each step on its own, and
the whole engine on a dark-skinned sitter and on a portrait its likeness check refuses."""

from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from scripts.support import samples
from services.worker.engine import align, likeness
from services.worker.engine.catalog import CATALOG, GanRecipe
from services.worker.engine.colour import lab_to_srgb, srgb_to_lab
from services.worker.engine.pipeline import PortraitEngine

GAN_STYLES = [style.name for style in CATALOG if isinstance(style.recipe, GanRecipe)]


def test_lab_matches_the_standard_and_round_trips():
    swatches = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]).view(3, 3, 1, 1)
    lab = srgb_to_lab(swatches)[:, :, 0, 0]
    expected = torch.tensor([[100.0, 0.0, 0.0], [53.24, 80.09, 67.20], [0.0, 0.0, 0.0]])
    assert torch.allclose(lab, expected, atol=0.05)
    pixels = torch.rand(2, 3, 8, 8)
    assert torch.allclose(lab_to_srgb(srgb_to_lab(pixels)), pixels, atol=1e-4)


def _smooth_face(seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    noise = torch.rand(1, 3, 6, 6, generator=generator)
    smooth = torch.nn.functional.interpolate(noise, size=(256, 256), mode="bicubic", align_corners=False)
    return (0.3 + 0.4 * smooth).clamp(0, 1)  # inside the gamut, so no colour is clipped on the way back


def test_colour_comes_from_the_photo_and_strokes_from_the_painting():
    photo, painting = _smooth_face(1), _smooth_face(2)
    strokes = (torch.arange(256).view(1, 1, 1, -1) % 4 < 2).float() * 0.08  # 2-px stripes: "brushwork"
    carried = likeness.carry_colour((painting + strokes).clamp(0, 1), likeness.Sitter.of(photo), sigma=8.0)
    low = lambda x: align.gaussian_blur(srgb_to_lab(x), 16.0)  # noqa: E731  (well below the carrying scale)
    assert (low(carried) - low(photo)).abs().mean() < 0.3 * (low(painting) - low(photo)).abs().mean()
    stripes = carried[..., 100:156, 100:156] - align.gaussian_blur(carried, 1.0)[..., 100:156, 100:156]
    assert stripes.abs().mean() > 0.01  # the strokes are still there


def _detailed_face(seed: int) -> torch.Tensor:
    """A smooth face with features a few pixels across, which a warp has to line up (colour alone cannot)."""
    generator = torch.Generator().manual_seed(seed)
    blobs = torch.nn.functional.interpolate(
        torch.rand(1, 1, 48, 48, generator=generator), size=(256, 256), mode="bicubic"
    )
    return (_smooth_face(seed) + 0.25 * (blobs - 0.5)).clamp(0, 1)


def test_the_flow_finds_where_the_painting_drew_each_feature_and_the_warp_puts_it_back():
    photo = _detailed_face(3)
    painting = torch.roll(photo, shifts=(4, -3), dims=(2, 3))  # the same face drawn a few pixels off
    sitter = likeness.Sitter.of(photo, replace(likeness.DEFAULT, flow_sigma=1.0))
    flow = likeness.flow_to_sitter(painting, sitter, painting, sigma=1.0)
    centre = (..., slice(96, 176), slice(96, 176))
    assert torch.allclose(flow[0][centre[1:]].median(0).values.median(0).values, torch.tensor([-3.0, 4.0]), atol=0.5)
    before = (painting - photo)[centre].abs().mean()
    assert (likeness.warp(painting, flow) - photo)[centre].abs().mean() < 0.2 * before


def test_the_whole_step_warps_before_it_carries_colour():
    photo = _detailed_face(4)
    painting = torch.roll(photo, shifts=(4, -3), dims=(2, 3))
    unwarped = replace(likeness.DEFAULT, flow_passes=0, structure_weight=0.0)
    centre = (..., slice(96, 176), slice(96, 176))
    without = (likeness.bring_to_sitter(painting, photo, [False], unwarped) - photo)[centre].abs().mean()
    warped = replace(likeness.DEFAULT, structure_weight=0.0)
    assert (likeness.bring_to_sitter(painting, photo, [False], warped) - photo)[centre].abs().mean() < 0.5 * without


def test_the_wash_keeps_some_of_the_paintings_own_hue():
    photo, painting = _smooth_face(5), _smooth_face(6)
    hue = lambda x: align.gaussian_blur(srgb_to_lab(x), 16.0)[:, 1:]  # noqa: E731
    sitter = likeness.Sitter.of(photo)
    full = (hue(likeness.carry_colour(painting, sitter, 8.0)) - hue(photo)).abs().mean()
    washed = (hue(likeness.carry_colour(painting, sitter, 8.0, palette_keep=0.3)) - hue(photo)).abs().mean()
    assert washed > full + 0.1 * (hue(painting) - hue(photo)).abs().mean()


def test_paper_around_the_head_stays_paper():
    photo = torch.full((1, 3, 256, 256), 0.25)  # a dark backdrop in the photo
    painting = torch.ones(1, 3, 256, 256)
    painting[..., 60:200, 70:190] = 0.6  # a head on white paper
    brought = likeness.bring_to_sitter(painting, photo, [True])
    assert brought[..., :20, :20].min() > 0.95  # the corner is still white paper, not the photo's backdrop
    assert likeness.bring_to_sitter(painting, photo, [False])[..., :20, :20].max() < 0.5


def _cheeks(engine: PortraitEngine, data: bytes, framed: bytes) -> tuple[torch.Tensor, torch.Tensor]:
    """The cheek colour (L*a*b*) of a portrait and of its framed photo, both read in the aligned face crop."""
    as_tensor = [
        torch.from_numpy(np.asarray(Image.open(io.BytesIO(d)).convert("RGB"), np.float32) / 255).permute(2, 0, 1)
        for d in (data, framed)
    ]
    face = max(engine.detector.detect([(as_tensor[1].permute(1, 2, 0) * 255).to(torch.uint8)])[0], key=lambda f: f.area)
    crops = align.crop_faces(torch.stack(as_tensor), [align.alignment(face)] * 2)
    painted, photo = likeness.cheek_lab(crops)
    return painted, photo


@pytest.fixture(scope="module")
def dark_sitter(astronaut_path) -> bytes:
    return samples.darkened(astronaut_path)


@pytest.mark.parametrize("style", GAN_STYLES)
def test_a_dark_skinned_sitters_cheeks_keep_their_tone_in_every_gan_style(engine, dark_sitter, style):
    framed = engine.render(dark_sitter, style=style, strength=0.0).data
    painted, photo = _cheeks(engine, engine.render(dark_sitter, style=style).data, framed)
    assert photo[0] < 40  # the sitter is dark-skinned: cheek lightness L* below 40
    assert abs(painted[0] - photo[0]) <= 8  # lightness within ±8 L*
    assert torch.dist(painted, photo) <= 12  # ΔE to the sitter's cheek
    assert painted[1] >= photo[1] - 6  # no shift towards green


def test_the_raw_gan_face_would_fail_that_test(engine, dark_sitter):
    """Why the steps exist: the face GAN alone whitens this sitter and turns the cheek green-yellow."""
    framed = engine.render(dark_sitter, style="oil-portrait", strength=0.0).data
    photo = torch.from_numpy(np.asarray(Image.open(io.BytesIO(framed)).convert("RGB"), np.float32) / 255)
    face = max(engine.detector.detect([(photo * 255).to(torch.uint8)])[0], key=lambda f: f.area)
    crop = align.crop_faces(photo.permute(2, 0, 1)[None], [align.alignment(face)])
    recipe = replace_style("oil-portrait").recipe
    raw = engine.generator._faces.paint(crop, [recipe])  # the face GAN alone, before likeness.py
    (raw_cheek,), (photo_cheek,) = likeness.cheek_lab(raw.float()), likeness.cheek_lab(crop)
    assert torch.dist(raw_cheek, photo_cheek) > 12


def test_auto_falls_back_when_the_portrait_is_unlike_the_sitter(engine, astronaut_path, monkeypatch):
    data = astronaut_path.read_bytes()
    trusting = engine.render(data)
    assert isinstance(replace_style(trusting.style).recipe, GanRecipe)
    assert trusting.identity_distance is not None and trusting.identity_distance < 0.6
    monkeypatch.setattr(engine, "config", replace(engine.config, likeness_max_distance=0.01))
    for requested in ("auto", trusting.family):
        refused = engine.render(data, style=requested)
        assert not isinstance(replace_style(refused.style).recipe, GanRecipe)
        assert refused.family == trusting.family
        assert "did not look enough like you" in refused.reason
        assert not any(ch.isdigit() for ch in refused.reason)
        assert refused.identity_distance is not None
    named = engine.render(data, style=trusting.style)  # a GAN style asked for by name is painted as asked
    assert named.style == trusting.style and "did not look enough" not in named.reason


def replace_style(name: str):
    return next(style for style in CATALOG if style.name == name)
