"""The whole engine on real photos: a face is found where it is, a painted portrait comes out, non-faces fail."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from scripts.support import samples
from services.worker.engine.frame import portrait_size
from services.worker.engine.pipeline import STAGES, Portrait, RenderRequest
from shared.errors import NoFace
from tests.support import images


@pytest.fixture(scope="session")
def astronaut_portrait(engine, astronaut_path) -> Portrait:
    return engine.render(astronaut_path.read_bytes())


def luma(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("L"), dtype=np.float32)


def test_astronaut_becomes_a_painted_portrait(engine, astronaut_portrait, astronaut_path):
    portrait = astronaut_portrait
    image = Image.open(io.BytesIO(portrait.data))
    assert image.format == "JPEG" and portrait.content_type == "image/jpeg"
    assert image.size == portrait_size(512) == (portrait.width, portrait.height)
    assert not image.getexif() and "exif" not in image.info
    # The face is where it is in the photo: Eileen Collins' face is in the upper middle-left of the frame.
    face = portrait.face
    assert 150 < face.center[0] < 260 and 60 < face.center[1] < 180
    assert set(portrait.timings) == set(STAGES) and all(t > 0 for t in portrait.timings.values())
    assert portrait.reason and portrait.style and portrait.family in {"oil", "watercolor", "ink"}

    # Painted, not copied: far from the framed photo pixel by pixel, yet the same picture in its broad shapes.
    photo = engine.render(astronaut_path.read_bytes(), style=portrait.style, strength=0.0)
    painted, framed = luma(portrait.data), luma(photo.data)
    assert np.abs(painted - framed).mean() > 8
    assert np.corrcoef(painted.ravel(), framed.ravel())[0, 1] > 0.5


@pytest.mark.parametrize("path", [samples.coffee_path(), samples.chelsea_path()], ids=["coffee", "cat"])
def test_non_faces_fail_with_no_face(engine, path):
    with pytest.raises(NoFace) as raised:
        engine.render(path.read_bytes())
    assert raised.value.code == "no_face"


def test_batch_keeps_going_past_a_failure(engine, astronaut_path, grace_hopper_path):
    requests = [
        RenderRequest(astronaut_path.read_bytes(), style="sepia-brush"),
        RenderRequest(samples.coffee_path().read_bytes()),
        RenderRequest(grace_hopper_path.read_bytes(), style="pen-and-ink"),
    ]
    first, second, third = engine.render_batch(requests)
    assert isinstance(first, Portrait) and first.style == "sepia-brush"
    assert isinstance(second, NoFace)
    assert isinstance(third, Portrait) and third.style == "pen-and-ink"


def test_selection_is_deterministic_and_differs_between_photos(
    engine, astronaut_portrait, astronaut_path, grace_hopper_path
):
    again = engine.render(astronaut_path.read_bytes())
    assert (again.style, again.reason) == (astronaut_portrait.style, astronaut_portrait.reason)
    grey = images.encode(Image.open(astronaut_path).convert("L"), "PNG")
    others = {engine.render(data).style for data in (grace_hopper_path.read_bytes(), grey)}
    assert others - {astronaut_portrait.style}


def test_rotated_upload_finds_the_same_face(engine, astronaut_portrait, astronaut_path):
    rotated = images.rotated_jpeg(Image.open(astronaut_path).convert("RGB"))
    face = engine.render(rotated, style=astronaut_portrait.style).face
    assert abs(face.center[0] - astronaut_portrait.face.center[0]) < 8
    assert abs(face.center[1] - astronaut_portrait.face.center[1]) < 8


def test_a_batch_mixing_face_gan_and_style_transfer_paints_each_as_if_alone(engine, astronaut_path, grace_hopper_path):
    """One batch goes through the face GAN and the style networks together; nothing leaks between photos."""
    requests = [
        RenderRequest(astronaut_path.read_bytes(), style="oil-portrait"),
        RenderRequest(grace_hopper_path.read_bytes(), style="chiaroscuro"),
        RenderRequest(grace_hopper_path.read_bytes(), style="pencil-portrait"),
    ]
    batched = engine.render_batch(requests)
    for request, together in zip(requests, batched):
        alone = engine.render(request.data, style=request.style)
        assert isinstance(together, Portrait) and together.style == request.style
        assert np.abs(luma(together.data) - luma(alone.data)).mean() < 1.0  # JPEG and float summation only


def test_a_face_gan_portrait_is_painted_and_strength_zero_keeps_the_photo(engine, grace_hopper_path):
    data = grace_hopper_path.read_bytes()
    painted = engine.render(data, style="watercolor-portrait")
    photo = engine.render(data, style="watercolor-portrait", strength=0.0)
    framed = engine.render(data, style="chiaroscuro", strength=0.0)
    assert np.abs(luma(photo.data) - luma(framed.data)).mean() < 1.0
    assert np.abs(luma(painted.data) - luma(photo.data)).mean() > 8
