"""Identity figures: is the face in a painting still the photo's face?

A painted portrait is made in the same aligned 256² frame as the face crop it was painted from, so the two
can be compared landmark for landmark. This module measures, with our MTCNN detector:

* whether the painting still holds a detectable face where the photo's face was, and O-Net's score for it;
* `shape_rms`: the RMS distance between the five landmarks (eyes, nose tip, mouth corners) after the best
  similarity transform (Umeyama: translation, rotation, uniform scale) maps the painting's points onto the
  photo's, in units of the photo's inter-ocular distance (IOD). It measures face *proportions* only —
  eye spacing against eye–mouth height, mouth width, where the nose sits — which is one ingredient of
  identity, not identity itself: two different people in the same pose can score below 0.03 (two of our
  test sitters: 0.027), and a sex or age change that keeps the proportions scores nothing;
* `shift_rms`: the same RMS distance with no transform at all, i.e. how far the face moved or grew in the
  shared frame.

Things that did *not* track apparent sex, age or glasses on our test faces, and so are not here: the
distance between the BlazeFaceStylizer encoder's W+ reading of the photo and of the painting (every painting,
faithful or not, reads about 1.8 between-sitter distances from its photo, and an oil painting that turned a
woman into a man can read closer than a faithful sketch), and an edge-energy "glasses bridge" cue between the
eyes (painted textures and eyebrows swamp it). The face recogniser (`recognizer.py`, #21) is the identity figure;
these landmark figures say where a painting's geometry departs from the photo's.

The pure functions take landmarks or image tensors and are unit-testable without any model; `detect_faces` and
`compare_batch` run the detector over batches.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from services.worker.engine.align import similarity
from services.worker.engine.detect import FaceBox, FaceDetector

# A painting's face counts as "the same face" only if its landmark centroid is within this many of the
# photo's inter-ocular distances of the photo's centroid; farther away it is some other face-like blob.
MAX_CENTROID_OFFSET_IOD = 1.0


@dataclass(frozen=True)
class IdentityFigures:
    """How a painting's face compares with the photo's face (see the module docstring)."""

    face_found: bool  # a face near the photo's face position was detected in the painting
    face_score: float  # O-Net's score for it, 0 when none
    shape_rms: float | None  # similarity-normalised landmark residual, in photo IODs; None if no face
    shift_rms: float | None  # un-normalised landmark displacement in the shared frame, in photo IODs


def _points(landmarks: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    points = np.asarray(landmarks, dtype=np.float64)
    if points.shape != (5, 2) or not np.isfinite(points).all():
        raise ValueError(f"expected five finite (x, y) landmarks, got shape {points.shape}")
    return points


def inter_ocular(landmarks: Sequence[Sequence[float]] | np.ndarray) -> float:
    """Distance between the two eye landmarks (points 0 and 1)."""
    points = _points(landmarks)
    return float(np.hypot(*(points[1] - points[0])))


def similarity_align(reference: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    """`candidate` (N×2) mapped onto `reference` (N×2) by the least-squares similarity transform (Umeyama)."""
    if ((candidate - candidate.mean(axis=0)) ** 2).sum() <= 0:
        raise ValueError("candidate landmarks are all in one place")
    matrix = similarity(candidate, reference)
    aligned: np.ndarray = candidate @ matrix[:, :2].T + matrix[:, 2]
    return aligned


def shape_residual(
    reference: Sequence[Sequence[float]] | np.ndarray, candidate: Sequence[Sequence[float]] | np.ndarray
) -> float:
    """RMS landmark distance after the best similarity transform of `candidate` onto `reference`, in units
    of the reference's inter-ocular distance. 0 for the same proportions at any position, angle and size."""
    ref, cand = _points(reference), _points(candidate)
    iod = inter_ocular(ref)
    if iod <= 0:
        raise ValueError("reference eyes coincide")
    aligned = similarity_align(ref, cand)
    return float(np.sqrt(((aligned - ref) ** 2).sum(axis=1).mean()) / iod)


def shift_residual(
    reference: Sequence[Sequence[float]] | np.ndarray, candidate: Sequence[Sequence[float]] | np.ndarray
) -> float:
    """RMS landmark distance with no alignment (both sets in one frame), in reference IODs."""
    ref, cand = _points(reference), _points(candidate)
    iod = inter_ocular(ref)
    if iod <= 0:
        raise ValueError("reference eyes coincide")
    return float(np.sqrt(((cand - ref) ** 2).sum(axis=1).mean()) / iod)


def match_face(photo_face: FaceBox, painting_faces: Sequence[FaceBox]) -> FaceBox | None:
    """The painting's face whose landmark centroid is nearest the photo face's (both in one frame), if it is
    within `MAX_CENTROID_OFFSET_IOD` photo IODs; else None."""
    ref = _points(photo_face.landmarks)
    iod = inter_ocular(ref)
    best, best_distance = None, math.inf
    for face in painting_faces:
        distance = float(np.hypot(*(_points(face.landmarks).mean(axis=0) - ref.mean(axis=0))))
        if distance < best_distance:
            best, best_distance = face, distance
    return best if best is not None and best_distance <= MAX_CENTROID_OFFSET_IOD * iod else None


def measure(photo_face: FaceBox, painting_faces: Sequence[FaceBox]) -> IdentityFigures:
    """Identity figures of a painting, from the photo crop's face and the faces found in the painting."""
    face = match_face(photo_face, painting_faces)
    if face is None:
        return IdentityFigures(face_found=False, face_score=0.0, shape_rms=None, shift_rms=None)
    return IdentityFigures(
        face_found=True,
        face_score=float(face.score),
        shape_rms=shape_residual(photo_face.landmarks, face.landmarks),
        shift_rms=shift_residual(photo_face.landmarks, face.landmarks),
    )


def to_uint8_image(image: torch.Tensor | np.ndarray) -> torch.Tensor:
    """An H×W×3 uint8 tensor from a uint8 H×W×3 array/tensor or a float 3×H×W / H×W×3 one in 0..1."""
    pixels = torch.from_numpy(np.array(image)) if isinstance(image, np.ndarray) else image.detach().cpu()
    if pixels.ndim == 3 and pixels.shape[0] == 3 and pixels.shape[2] != 3:
        pixels = pixels.permute(1, 2, 0)
    if pixels.dtype != torch.uint8:
        pixels = (pixels.float().clamp(0, 1) * 255 + 0.5).to(torch.uint8)
    return pixels.contiguous()


def detect_faces(detector: FaceDetector, images: Sequence[torch.Tensor | np.ndarray]) -> list[list[FaceBox]]:
    """Faces per image (best score first), in one detector batch; images as for `to_uint8_image`."""
    return detector.detect([to_uint8_image(image) for image in images])


def compare_batch(
    detector: FaceDetector, photo_faces: Sequence[FaceBox], paintings: Sequence[torch.Tensor | np.ndarray]
) -> list[IdentityFigures]:
    """Identity figures of each painting against the face found in its photo crop (same frame)."""
    if len(photo_faces) != len(paintings):
        raise ValueError(f"{len(photo_faces)} photo faces for {len(paintings)} paintings")
    found = detect_faces(detector, paintings)
    return [measure(face, faces) for face, faces in zip(photo_faces, found)]
