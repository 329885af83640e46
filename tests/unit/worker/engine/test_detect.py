"""MTCNN face detection on real public-domain photos (read from installed packages, never committed).

Reference positions were read off the photos by eye: Eileen Collins' eyes in `astronaut.png` (512×512) sit
at about (204, 101) and (247, 104), her face spans x≈180-265, y≈65-175; Grace Hopper's eyes in
`grace_hopper.jpg` (512 wide, 600 high) at about (221, 190) and (308, 187), face x≈180-360, y≈115-340.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from scripts.support import samples
from services.worker.engine import detect as detect_module
from services.worker.engine import detect_boxes
from services.worker.engine.detect import FaceBox, FaceDetector
from shared.errors import ModelFilesError

FACE_SCORE = 0.95  # the pipeline's default `min_face_score`


def _load(path: Path) -> torch.Tensor:
    return torch.from_numpy(np.array(Image.open(path).convert("RGB")))


@pytest.fixture(scope="module")
def detector(model_dir: Path) -> FaceDetector:
    return FaceDetector(model_dir)


@pytest.fixture(scope="module")
def astronaut(astronaut_path: Path) -> torch.Tensor:
    return _load(astronaut_path)


@pytest.fixture(scope="module")
def grace_hopper(grace_hopper_path: Path) -> torch.Tensor:
    return _load(grace_hopper_path)


@pytest.fixture(scope="module")
def coffee() -> torch.Tensor:
    return _load(samples.coffee_path())


@pytest.fixture(scope="module")
def chelsea() -> torch.Tensor:
    return _load(samples.chelsea_path())


def _confident(faces: list[FaceBox]) -> list[FaceBox]:
    return [face for face in faces if face.score >= FACE_SCORE]


def _contains(face: FaceBox, x1: float, y1: float, x2: float, y2: float) -> bool:
    return face.x1 <= x1 and face.y1 <= y1 and face.x2 >= x2 and face.y2 >= y2


def _inside(face: FaceBox, point: tuple[float, float]) -> bool:
    return face.x1 <= point[0] <= face.x2 and face.y1 <= point[1] <= face.y2


def _near(point: tuple[float, float], expected: tuple[float, float], tolerance: float) -> bool:
    return abs(point[0] - expected[0]) <= tolerance and abs(point[1] - expected[1]) <= tolerance


def _assert_face(
    face: FaceBox,
    *,
    core: tuple[float, float, float, float],
    size: tuple[float, float],
    eyes: tuple[tuple[float, float], tuple[float, float]],
    eye_tolerance: float,
) -> None:
    """The box holds the eyes-to-mouth core, has a plausible size, and the landmarks sit on the face."""
    assert face.score > 0.99
    assert _contains(face, *core), face
    assert size[0] <= face.width <= size[1] and size[0] <= face.height <= size[1], face
    left_eye, right_eye, nose, mouth_left, mouth_right = face.landmarks
    assert all(_inside(face, point) for point in face.landmarks), face
    assert _near(left_eye, eyes[0], eye_tolerance), left_eye
    assert _near(right_eye, eyes[1], eye_tolerance), right_eye
    assert left_eye[0] < nose[0] < right_eye[0]
    assert mouth_left[0] < mouth_right[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])


def test_astronaut_face_and_landmarks(detector: FaceDetector, astronaut: torch.Tensor) -> None:
    faces = _confident(detector.detect([astronaut])[0])
    assert len(faces) == 1
    _assert_face(faces[0], core=(195, 90, 255, 150), size=(70, 130), eyes=((204, 101), (247, 104)), eye_tolerance=8)


def test_grace_hopper_face_and_landmarks(detector: FaceDetector, grace_hopper: torch.Tensor) -> None:
    faces = _confident(detector.detect([grace_hopper])[0])
    assert len(faces) == 1
    _assert_face(faces[0], core=(200, 170, 330, 300), size=(150, 260), eyes=((221, 190), (308, 187)), eye_tolerance=12)


@pytest.mark.parametrize("name", ["coffee", "chelsea"])
def test_no_face_in_coffee_or_cat(detector: FaceDetector, name: str, request: pytest.FixtureRequest) -> None:
    faces = detector.detect([request.getfixturevalue(name)])[0]
    assert all(face.score < FACE_SCORE for face in faces), faces


def test_batch_matches_single_images(
    detector: FaceDetector, astronaut: torch.Tensor, grace_hopper: torch.Tensor, coffee: torch.Tensor
) -> None:
    images = [astronaut, grace_hopper, coffee]  # 512×512, 600×512, 400×600: padded to one canvas
    batched = detector.detect(images)
    alone = [detector.detect([image])[0] for image in images]
    assert [len(faces) for faces in batched] == [len(faces) for faces in alone]
    assert len(batched[0]) >= 1 and len(batched[1]) >= 1 and not _confident(batched[2])
    for batch_faces, single_faces in zip(batched, alone):
        for got, want in zip(batch_faces, single_faces):
            assert got.score == pytest.approx(want.score, abs=1e-3)
            for a, b in zip((got.x1, got.y1, got.x2, got.y2), (want.x1, want.y1, want.x2, want.y2)):
                assert a == pytest.approx(b, abs=1.5)
            for (ax, ay), (bx, by) in zip(got.landmarks, want.landmarks):
                assert (ax, ay) == pytest.approx((bx, by), abs=1.5)


def test_two_faces_in_one_photo_sorted_by_score(
    detector: FaceDetector, astronaut: torch.Tensor, grace_hopper: torch.Tensor
) -> None:
    side_by_side = torch.cat([astronaut, grace_hopper[:512]], dim=1)  # 512×1024
    faces = _confident(detector.detect([side_by_side])[0])
    assert len(faces) == 2
    assert faces[0].score >= faces[1].score
    astronaut_face, hopper_face = sorted(faces, key=lambda face: face.x1)
    assert _contains(astronaut_face, 195, 90, 255, 150)
    assert _contains(hopper_face, 512 + 200, 170, 512 + 330, 300)


def test_large_photo_is_downscaled_and_mapped_back(model_dir: Path, astronaut: torch.Tensor) -> None:
    detector = FaceDetector(model_dir, max_side=512)
    big = F.interpolate(astronaut.permute(2, 0, 1)[None], size=(1536, 2048), mode="bilinear", antialias=True)
    big = big[0].permute(1, 2, 0).contiguous()  # uint8, 3× taller and 4× wider than the original
    faces = _confident(detector.detect([big])[0])
    assert len(faces) == 1
    face = faces[0]
    assert _contains(face, 195 * 4, 90 * 3, 255 * 4, 150 * 3), face
    assert _near(face.landmarks[0], (204 * 4, 101 * 3), 40)
    assert _near(face.landmarks[1], (247 * 4, 104 * 3), 40)


def test_empty_and_tiny_inputs(detector: FaceDetector) -> None:
    assert detector.detect([]) == []
    tiny = torch.zeros(8, 8, 3, dtype=torch.uint8)
    blank = torch.full((120, 200, 3), 128, dtype=torch.uint8)
    assert detector.detect([tiny, blank]) == [[], []]


def test_rejects_wrong_image_types(detector: FaceDetector) -> None:
    with pytest.raises(TypeError):
        detector.detect([torch.zeros(32, 32, 3)])  # float, not uint8
    with pytest.raises(ValueError):
        detector.detect([torch.zeros(3, 32, 32, dtype=torch.uint8)])  # CHW, not HWC


def test_missing_weight_file_is_named(model_dir: Path, tmp_path: Path) -> None:
    for name in ("pnet.pt", "rnet.pt"):
        shutil.copy(model_dir / name, tmp_path / name)
    with pytest.raises(ModelFilesError, match="onet.pt"):
        FaceDetector(tmp_path)


def test_unreadable_weight_file_is_named(model_dir: Path, tmp_path: Path) -> None:
    for name in FaceDetector.WEIGHT_FILES:
        shutil.copy(model_dir / name, tmp_path / name)
    (tmp_path / "rnet.pt").write_bytes(b"not a state dict")
    with pytest.raises(ModelFilesError, match="rnet.pt"):
        FaceDetector(tmp_path)


def test_face_box_helpers() -> None:
    face = FaceBox(x1=10, y1=20, x2=50, y2=100, score=0.9, landmarks=((0.0, 0.0),) * 5)
    assert (face.width, face.height, face.area) == (40, 80, 3200)
    assert face.center == (30, 60)


def _reference_nms(boxes: list[list[float]], scores: list[float], threshold: float) -> list[int]:
    """Textbook greedy NMS, one box at a time."""

    def iou(a: list[float], b: list[float]) -> float:
        w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = w * h
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
        return inter / union

    kept: list[int] = []
    for index in sorted(range(len(boxes)), key=lambda i: -scores[i]):
        if all(iou(boxes[index], boxes[k]) <= threshold for k in kept):
            kept.append(index)
    return kept


def test_nms_matches_greedy_reference() -> None:
    rng = random.Random(7)
    boxes = []
    for _ in range(300):
        x, y, size = rng.uniform(0, 200), rng.uniform(0, 200), rng.uniform(10, 60)
        boxes.append([x, y, x + size, y + size * rng.uniform(0.8, 1.2)])
    scores = [rng.random() for _ in boxes]
    for threshold in (0.3, 0.5, 0.7):
        kept = detect_boxes.nms(torch.tensor(boxes), torch.tensor(scores), threshold)
        assert kept.tolist() == _reference_nms(boxes, scores, threshold)


def test_crops_are_exact_area_averages_with_black_outside() -> None:
    pixels = torch.randint(0, 256, (2, 3, 40, 60), generator=torch.Generator().manual_seed(3)).float()
    integral = detect_module._integral_image(pixels)
    # Image 1, a fractional box on a 0.1 px grid; image 0, a box hanging 6 px over the top-left corner.
    boxes = torch.tensor([[3.3, 7.7, 27.3, 31.7], [-6.0, -6.0, 18.0, 18.0]])
    crops = detect_module._crop_resize(integral, boxes, torch.tensor([1, 0]), 8)

    tenfold = pixels[1:2].repeat_interleave(10, dim=2).repeat_interleave(10, dim=3)
    expected = F.avg_pool2d(tenfold[:, :, 77:317, 33:273], 30)[0]
    assert torch.allclose(crops[0], expected, atol=1e-3)
    padded = F.pad(pixels[0:1], (6, 0, 6, 0))  # black beyond the image, as original MTCNN pads
    assert torch.allclose(crops[1], F.avg_pool2d(padded[:, :, :24, :24], 3)[0], atol=1e-3)
