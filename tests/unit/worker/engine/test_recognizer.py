"""Face descriptors: our port of dlib's face recognition ResNet against dlib itself (dlib-bin), and our alignment.

Measured (CPU, float32): on the same dlib face chip our network's descriptor is within 3e-7 of dlib's (max abs
over the 128 values). Our whole path (MTCNN, `CHIP_TEMPLATE`, our warp) lands 0.13 from dlib's whole path
(HOG detector, 5-point shape predictor, get_face_chip) on the astronaut and on Grace Hopper — other landmarks,
other resampling — against 0.69 between the two women (dlib: 0.70).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from scripts.support import dlib_reference, samples
from services.worker.engine import align
from services.worker.engine.detect import FaceBox, FaceDetector
from services.worker.engine.recognizer import MODEL_FILE, SAME_PERSON, FaceRecognizer, distances
from services.worker.engine.runtime import Runtime
from services.worker.engine.weights import verify_model_dir

try:
    import dlib
except ImportError:  # dlib-bin is a dev dependency; without it there is nothing to compare with
    dlib = None

needs_dlib = pytest.mark.skipif(dlib is None, reason="dlib-bin is not installed: no dlib reference to compare with")

PHOTOS = {"astronaut": samples.astronaut_path, "hopper": samples.grace_hopper_path}


@pytest.fixture(scope="module")
def dlib_landmarks() -> Path:
    try:
        return dlib_reference.shape_predictor_path()
    except dlib_reference.ReferenceUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def recognizer(model_dir) -> FaceRecognizer:
    return FaceRecognizer(verify_model_dir(model_dir), Runtime(torch.device("cpu"), torch.float32, channels_last=False))


@pytest.fixture(scope="module")
def detector(model_dir) -> FaceDetector:
    return FaceDetector(model_dir)


def _photo(name: str) -> np.ndarray:
    return np.asarray(Image.open(PHOTOS[name]()).convert("RGB"))


def _batch(*photos: np.ndarray) -> torch.Tensor:
    return torch.stack([torch.from_numpy(photo.copy()).permute(2, 0, 1) for photo in photos]).float() / 255


def _face(detector: FaceDetector, photo: np.ndarray) -> FaceBox:
    return max(detector.detect([torch.from_numpy(photo.copy())])[0], key=lambda face: face.area)


def _dlib_shape(landmarks: Path, photo: np.ndarray):
    detections = dlib.get_frontal_face_detector()(photo, 1)
    assert len(detections) >= 1
    return dlib.shape_predictor(str(landmarks))(photo, max(detections, key=lambda d: d.area()))


@needs_dlib
@pytest.mark.parametrize("name", list(PHOTOS))
def test_our_network_describes_dlibs_chip_as_dlib_does(model_dir, dlib_landmarks, recognizer, name):
    photo = _photo(name)
    chip = dlib.get_face_chip(photo, _dlib_shape(dlib_landmarks, photo), size=150, padding=0.25)
    reference = np.array(dlib.face_recognition_model_v1(str(model_dir / MODEL_FILE)).compute_face_descriptor(chip))
    with torch.inference_mode():
        ours = recognizer.describe_chips(_batch(chip))[0].numpy()
    assert np.abs(ours - reference).max() < 1e-5


@needs_dlib
@pytest.mark.parametrize("name", list(PHOTOS))
def test_our_whole_path_lands_near_dlibs(model_dir, dlib_landmarks, recognizer, detector, name):
    photo = _photo(name)
    model = dlib.face_recognition_model_v1(str(model_dir / MODEL_FILE))
    reference = np.array(model.compute_face_descriptor(photo, _dlib_shape(dlib_landmarks, photo)))
    with torch.inference_mode():
        ours = recognizer.describe(_batch(photo), [_face(detector, photo)])
    assert distances(ours, torch.tensor(reference, dtype=torch.float32)[None]).item() < 0.25


def test_two_people_are_told_apart_and_one_person_is_not(recognizer, detector):
    astronaut, hopper = _photo("astronaut"), _photo("hopper")
    # the astronaut again, smaller, turned 15° and off-centre on a grey canvas
    smaller = Image.fromarray(astronaut).resize((360, 360), Image.Resampling.LANCZOS).rotate(15, fillcolor=(128,) * 3)
    canvas = Image.new("RGB", (640, 480), (128, 128, 128))
    canvas.paste(smaller, (250, 90))
    moved = np.asarray(canvas)
    with torch.inference_mode():
        descriptors = [recognizer.describe(_batch(photo), [_face(detector, photo)]) for photo in (astronaut, hopper)]
        again = recognizer.describe(_batch(moved), [_face(detector, moved)])
    assert distances(*descriptors).item() > SAME_PERSON
    assert distances(descriptors[0], again).item() < 0.25


def test_aligned_crops_describe_like_their_photo(recognizer, detector):
    """A face in the stylizer's 256² frame goes straight to the chip, without a second detection."""
    photos = [_photo("astronaut"), _photo("hopper")]
    with torch.inference_mode():
        for photo in photos:
            face, image = _face(detector, photo), _batch(photo)
            crops = align.crop_faces(image, [align.alignment(face)])
            assert distances(recognizer.describe_crops(crops), recognizer.describe(image, [face])).item() < 0.1


def test_a_batch_describes_each_face_as_alone(recognizer, detector):
    astronaut = _photo("astronaut")
    flipped = np.ascontiguousarray(astronaut[:, ::-1])
    faces = [_face(detector, astronaut), _face(detector, flipped)]
    with torch.inference_mode():
        batch = recognizer.describe(_batch(astronaut, flipped), faces)
        alone = torch.cat([recognizer.describe(_batch(p), [f]) for p, f in zip((astronaut, flipped), faces)])
    assert batch.shape == (2, 128)
    assert torch.allclose(batch, alone, atol=1e-5)
    with pytest.raises(ValueError, match="2 images but 1 faces"):
        recognizer.describe(_batch(astronaut, flipped), faces[:1])


def test_distances_are_euclidean_per_row():
    a, b = torch.zeros(3, 128), torch.zeros(3, 128)
    b[1, 0], b[2, :4] = 3.0, 1.0
    assert distances(a, b).tolist() == [0.0, 3.0, 2.0]
