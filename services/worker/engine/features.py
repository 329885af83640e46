"""Measurable properties of a framed photo, the inputs of automatic style selection.

All values are plain floats in documented ranges; the worker logs them with each job (the reason a person
reads says in words what they decided).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from services.worker.engine.choose_face import centre_offset
from services.worker.engine.detect import FaceBox

# Rec. 601 luma weights, the ones JPEG uses.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@dataclass(frozen=True)
class PhotoFeatures:
    key: float  # mean luminance of the framed portrait, 0 (black) .. 1 (white)
    contrast: float  # standard deviation of that luminance, 0 .. 0.5
    warmth: float  # mean (R − B) over the face, −1 (blue) .. 1 (orange)
    saturation: float  # mean chroma (max − min channel) of the framed portrait, 0 .. 1
    face_fraction: float  # face box area / photo area, 0 .. 1
    face_offset: float  # face centre's distance from the photo centre, in half-diagonals, 0 .. 1


def measure(
    portrait: Image.Image, face_in_portrait: FaceBox, face_in_photo: FaceBox, photo_size: tuple[int, int]
) -> PhotoFeatures:
    pixels = np.asarray(portrait, dtype=np.float32) / 255.0
    luma = pixels @ _LUMA
    chroma = pixels.max(axis=2) - pixels.min(axis=2)
    skin = _inner_face(pixels, face_in_portrait)
    photo_w, photo_h = photo_size
    return PhotoFeatures(
        key=float(luma.mean()),
        contrast=float(luma.std()),
        warmth=float((skin[..., 0] - skin[..., 2]).mean()),
        saturation=float(chroma.mean()),
        face_fraction=float(min(1.0, face_in_photo.area / (photo_w * photo_h))),
        face_offset=centre_offset(face_in_photo, photo_size),
    )


def _inner_face(pixels: np.ndarray, face: FaceBox) -> np.ndarray:
    """The central part of the face box: mostly skin, little hair or background."""
    height, width = pixels.shape[:2]
    inset_x, inset_y = face.width * 0.25, face.height * 0.25
    x1, x2 = int(max(0, face.x1 + inset_x)), int(min(width, face.x2 - inset_x))
    y1, y2 = int(max(0, face.y1 + inset_y)), int(min(height, face.y2 - inset_y))
    if x2 <= x1 or y2 <= y1:
        return pixels
    return pixels[y1:y2, x1:x2]
