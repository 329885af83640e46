"""Batched MTCNN face detection (P-Net → R-Net → O-Net) in plain torch.

The algorithm follows Zhang et al. 2016 as packaged by facenet-pytorch (whose weights we load), with these
deliberate differences:

* Coordinates are continuous pixel coordinates: pixel (i, j) covers [j, j+1) × [i, i+1), so a box
  (x1, y1, x2, y2) has width x2 - x1. No MATLAB-style 1-based offsets.
* Pyramid levels are antialiased bilinear shrinks at the exact scale factor, so an image gives the same
  pyramid whether it is detected alone or padded into a larger batch canvas. R-/O-Net crops are exact
  area averages (what OpenCV's INTER_AREA does when shrinking) of fractional boxes, read from a
  summed-area table in one gather for all candidates.
* R-/O-Net crops keep their square shape and treat pixels outside the image as black (original MTCNN
  behaviour) instead of clipping and stretching the crop.

Batching: images of different sizes are padded into one canvas. P-Net runs once per pyramid scale over the
whole canvas batch (windows that reach into padding are dropped); R-Net and O-Net each run over the
candidates of all images at once. NMS is per image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from services.worker.engine import detect_boxes
from services.worker.engine.networks.mtcnn import ONet, PNet, RNet
from shared.errors import ModelFilesError

CPU = torch.device("cpu")

_PNET_WINDOW = 12  # P-Net sees 12×12 windows...
_PNET_STRIDE = 2  # ...every 2 pixels of a pyramid level
_RNET_SIZE = 24
_ONET_SIZE = 48
# Bounds peak memory when a busy photo yields thousands of candidates; results do not depend on it.
_RNET_CHUNK = 4096
_ONET_CHUNK = 1024


@dataclass(frozen=True)
class FaceBox:
    """One detected face in the coordinates of the image passed to `detect`.

    The box may extend past the image border (MTCNN regresses the whole face even when it is cut off).
    `landmarks` are (x, y) points: left eye, right eye, nose, mouth left, mouth right (as seen in the
    image: "left eye" has the smaller x in an upright, frontal face).
    """

    x1: float
    y1: float
    x2: float
    y2: float
    score: float
    landmarks: tuple[tuple[float, float], ...]

    @property
    def width(self) -> float:
        return self.x2 - self.x1

    @property
    def height(self) -> float:
        return self.y2 - self.y1

    @property
    def center(self) -> tuple[float, float]:
        return ((self.x1 + self.x2) / 2, (self.y1 + self.y2) / 2)

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)


@dataclass
class _Candidates:
    """Face candidates of a whole batch, one row each; `image` says which image a row belongs to."""

    boxes: torch.Tensor  # (N, 4) x1, y1, x2, y2 in working (possibly downscaled) coordinates
    scores: torch.Tensor  # (N,)
    image: torch.Tensor  # (N,) int64
    landmarks: torch.Tensor | None = None  # (N, 5, 2), O-Net stage only

    def take(self, index: torch.Tensor) -> _Candidates:
        return _Candidates(
            self.boxes[index],
            self.scores[index],
            self.image[index],
            None if self.landmarks is None else self.landmarks[index],
        )

    def __len__(self) -> int:
        return self.boxes.shape[0]


class FaceDetector:
    """Loads the three MTCNN networks once; `detect` finds faces in batches of RGB uint8 images."""

    WEIGHT_FILES = ("pnet.pt", "rnet.pt", "onet.pt")

    def __init__(
        self,
        model_dir: Path,
        device: torch.device = CPU,
        *,
        min_face_size: int = 20,
        thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
        scale_factor: float = 0.709,
        max_side: int = 1024,
    ) -> None:
        if min_face_size < 1:
            raise ValueError(f"min_face_size must be positive, got {min_face_size}")
        if not 0 < scale_factor < 1:
            raise ValueError(f"scale_factor must be in (0, 1), got {scale_factor}")
        if len(thresholds) != 3 or not all(0 <= t <= 1 for t in thresholds):
            raise ValueError(f"thresholds must be three probabilities, got {thresholds}")
        if max_side < _PNET_WINDOW:
            raise ValueError(f"max_side must be at least {_PNET_WINDOW}, got {max_side}")
        self.device = torch.device(device)
        self.min_face_size = min_face_size
        self.thresholds = tuple(float(t) for t in thresholds)
        self.scale_factor = scale_factor
        self.max_side = max_side
        model_dir = Path(model_dir)
        self.pnet = _load_network(PNet(), model_dir / "pnet.pt", self.device)
        self.rnet = _load_network(RNet(), model_dir / "rnet.pt", self.device)
        self.onet = _load_network(ONet(), model_dir / "onet.pt", self.device)

    @torch.inference_mode()
    def detect(self, images: Sequence[torch.Tensor]) -> list[list[FaceBox]]:
        """Faces per image, each list sorted by score (highest first).

        `images`: uint8 RGB tensors shaped (H, W, 3); sizes may differ. Boxes and landmarks are returned in
        each image's own pixel coordinates, even when it was downscaled to `max_side` for detection.
        """
        if len(images) == 0:
            return []
        working, back_scales = zip(*(self._to_working(image) for image in images))
        sizes = torch.tensor([img.shape[1:] for img in working], device=self.device)  # (B, 2) as (h, w)
        canvas = _pad_to_canvas(working)

        candidates = self._propose(canvas, sizes)
        if len(candidates):
            integral = _integral_image(canvas)  # shared by the R-Net and O-Net crops
            candidates = self._refine(integral, candidates)
            if len(candidates):
                candidates = self._output(integral, candidates)
        return _to_face_boxes(candidates, back_scales, len(images))

    # --- preparation ---------------------------------------------------------------------------------

    def _to_working(self, image: torch.Tensor) -> tuple[torch.Tensor, tuple[float, float]]:
        """(H, W, 3) uint8 → (3, h, w) float32 on the device, downscaled so max(h, w) <= max_side.

        Also returns (sx, sy), the factors that map working coordinates back to the original image.
        """
        _check_image(image)
        height, width = image.shape[:2]
        pixels = image.to(self.device).permute(2, 0, 1)
        longest = max(height, width)
        if longest > self.max_side:
            ratio = self.max_side / longest
            size = (max(1, round(height * ratio)), max(1, round(width * ratio)))
            # Antialiased, so small faces survive; on CPU, uint8 HWC data takes torch's fast SIMD path.
            if pixels.device.type != "cpu":
                pixels = pixels.float()
            pixels = F.interpolate(pixels[None], size=size, mode="bilinear", antialias=True)[0]
        working_h, working_w = pixels.shape[1:]
        return pixels.float(), (width / working_w, height / working_h)

    # --- stage 1: P-Net proposals ---------------------------------------------------------------------

    def _propose(self, canvas: torch.Tensor, sizes: torch.Tensor) -> _Candidates:
        """Run P-Net once per pyramid scale over the batch; NMS per scale, then across scales."""
        smallest_side = int(sizes.min(dim=1).values.max())
        per_scale: list[tuple[_Candidates, torch.Tensor]] = []
        for scale in _pyramid_scales(smallest_side, self.min_face_size, self.scale_factor):
            found = self._propose_at_scale(canvas, sizes, scale)
            if found is None:
                continue
            cands, regression = found
            keep = detect_boxes.batched_nms(cands.boxes, cands.scores, cands.image, 0.5)
            per_scale.append((cands.take(keep), regression[keep]))
        if not per_scale:
            return _empty_candidates(self.device)
        cands = _Candidates(
            torch.cat([c.boxes for c, _ in per_scale]),
            torch.cat([c.scores for c, _ in per_scale]),
            torch.cat([c.image for c, _ in per_scale]),
        )
        regression = torch.cat([r for _, r in per_scale])
        keep = detect_boxes.batched_nms(cands.boxes, cands.scores, cands.image, 0.7)
        cands, regression = cands.take(keep), regression[keep]
        cands.boxes = detect_boxes.square(detect_boxes.apply_regression(cands.boxes, regression))
        return cands

    def _propose_at_scale(
        self, canvas: torch.Tensor, sizes: torch.Tensor, scale: float
    ) -> tuple[_Candidates, torch.Tensor] | None:
        """Windows at one pyramid scale scoring >= threshold, with their box regressions."""
        if min(canvas.shape[2:]) * scale < _PNET_WINDOW:
            return None
        level = _pyramid_level(canvas, scale)
        regression, probs = self.pnet(_network_input(level))

        # Keep a window only if no level pixel in it was filtered from outside its own image: then it is
        # identical whether the image is detected alone or padded into a batch. The antialiasing filter
        # reaches 1/scale source pixels around a level pixel's centre, hence the extra half pixel.
        limit_h = sizes[:, 0].double() * scale - 0.5
        limit_w = sizes[:, 1].double() * scale - 0.5
        starts_y = torch.arange(probs.shape[1], device=self.device) * _PNET_STRIDE
        starts_x = torch.arange(probs.shape[2], device=self.device) * _PNET_STRIDE
        inside = (starts_y[None, :, None] + _PNET_WINDOW <= limit_h[:, None, None]) & (
            starts_x[None, None, :] + _PNET_WINDOW <= limit_w[:, None, None]
        )
        hits = (probs >= self.thresholds[0]) & inside
        image, row, col = hits.nonzero(as_tuple=True)
        if image.numel() == 0:
            return None
        x1 = col.float() * _PNET_STRIDE / scale
        y1 = row.float() * _PNET_STRIDE / scale
        side = _PNET_WINDOW / scale
        boxes = torch.stack([x1, y1, x1 + side, y1 + side], dim=1)
        return (
            _Candidates(boxes, probs[image, row, col], image),
            regression.permute(0, 2, 3, 1)[image, row, col],
        )

    # --- stage 2: R-Net refinement --------------------------------------------------------------------

    def _refine(self, integral: torch.Tensor, cands: _Candidates) -> _Candidates:
        cands = cands.take(detect_boxes.usable(cands.boxes))
        crops = _crop_resize(integral, cands.boxes, cands.image, _RNET_SIZE)
        regression, probs = _run_chunked(self.rnet, _network_input(crops), _RNET_CHUNK)
        keep = probs > self.thresholds[1]
        cands = _Candidates(cands.boxes[keep], probs[keep], cands.image[keep])
        regression = regression[keep]
        keep = detect_boxes.batched_nms(cands.boxes, cands.scores, cands.image, 0.7)
        cands, regression = cands.take(keep), regression[keep]
        cands.boxes = detect_boxes.square(detect_boxes.apply_regression(cands.boxes, regression))
        return cands

    # --- stage 3: O-Net output ------------------------------------------------------------------------

    def _output(self, integral: torch.Tensor, cands: _Candidates) -> _Candidates:
        cands = cands.take(detect_boxes.usable(cands.boxes))
        crops = _crop_resize(integral, cands.boxes, cands.image, _ONET_SIZE)
        regression, points, probs = _run_chunked(self.onet, _network_input(crops), _ONET_CHUNK)
        keep = probs > self.thresholds[2]
        boxes, regression, points = cands.boxes[keep], regression[keep], points[keep]
        # Landmarks are fractions of the box O-Net saw, i.e. before its own regression is applied.
        origin, size = boxes[:, None, :2], (boxes[:, 2:] - boxes[:, :2])[:, None, :]
        fractions = torch.stack([points[:, :5], points[:, 5:]], dim=2)  # (N, 5, 2)
        cands = _Candidates(
            detect_boxes.apply_regression(boxes, regression), probs[keep], cands.image[keep], origin + fractions * size
        )
        # "Min" overlap also removes a small box nested inside a bigger one (e.g. a face within a face).
        keep = detect_boxes.batched_nms(cands.boxes, cands.scores, cands.image, 0.7, mode="min")
        return cands.take(keep)


# --- loading -----------------------------------------------------------------------------------------


def _load_network(network: nn.Module, path: Path, device: torch.device) -> nn.Module:
    if not path.is_file():
        raise ModelFilesError(f"MTCNN weight file {path.name} is missing (looked for {path})")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
        network.load_state_dict(state, strict=True)
    except Exception as exc:  # unpickling or shape errors: report which file, not a torch traceback
        raise ModelFilesError(f"MTCNN weight file {path} could not be loaded: {exc}") from exc
    network.requires_grad_(False)
    return network.to(device).eval()


# --- image helpers -----------------------------------------------------------------------------------


def _check_image(image: torch.Tensor) -> None:
    if not isinstance(image, torch.Tensor) or image.dtype != torch.uint8:
        raise TypeError("images must be uint8 torch tensors")
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"images must be shaped (H, W, 3), got {tuple(image.shape)}")


def _pad_to_canvas(images: Sequence[torch.Tensor]) -> torch.Tensor:
    """(3, h, w) images → (B, 3, H, W), each at the top-left, padded with zeros (black)."""
    height = max(img.shape[1] for img in images)
    width = max(img.shape[2] for img in images)
    canvas = images[0].new_zeros((len(images), 3, height, width))
    for index, img in enumerate(images):
        canvas[index, :, : img.shape[1], : img.shape[2]] = img
    return canvas


def _network_input(pixels: torch.Tensor) -> torch.Tensor:
    """Pixels 0..255 → the (x - 127.5) / 128 scaling the MTCNN weights were trained with.

    channels_last: on CPU it makes these thin convolutions and 3×3 ceil-mode poolings several times faster.
    """
    return ((pixels - 127.5) * 0.0078125).contiguous(memory_format=torch.channels_last)


def _pyramid_scales(smallest_side: int, min_face_size: int, factor: float) -> list[float]:
    """Scales at which a face of min_face_size px, then ever larger ones, fill P-Net's 12 px window."""
    scales = []
    scale = _PNET_WINDOW / min_face_size
    while smallest_side * scale >= _PNET_WINDOW:
        scales.append(scale)
        scale *= factor
    return scales


def _pyramid_level(canvas: torch.Tensor, scale: float) -> torch.Tensor:
    """Shrink by exactly `scale` with an antialiased (triangle) filter, like MATLAB's imresize that the
    original MTCNN used. Not recomputing the scale from the output size keeps every pixel's footprint
    independent of the canvas size, so batching does not change the pyramid."""
    return F.interpolate(
        canvas,
        scale_factor=scale,
        mode="bilinear",
        antialias=True,
        align_corners=False,
        recompute_scale_factor=False,
    )


def _integral_image(canvas: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) → (B, 3, H+1, W+1) float64 summed-area table.

    float64 because the sums reach ~3e8 while crops need differences of a few hundred.
    """
    return F.pad(canvas.double().cumsum(3).cumsum(2), (1, 0, 1, 0))


def _crop_resize(integral: torch.Tensor, boxes: torch.Tensor, image: torch.Tensor, size: int) -> torch.Tensor:
    """Area-resample every box to size×size in one gather: (N, 3, size, size) float32.

    Box corners may be fractional or outside the image; outside counts as black, as in original MTCNN.
    The summed-area table is bilinear between integer corners, so sampling it bilinearly is exact.
    """
    _, channels, table_h, table_w = integral.shape
    steps = torch.linspace(0, 1, size + 1, device=boxes.device, dtype=torch.float64)
    boxes = boxes.double()
    xs = (boxes[:, 0:1] + (boxes[:, 2:3] - boxes[:, 0:1]) * steps).clamp(0, table_w - 1)  # (N, size+1)
    ys = (boxes[:, 1:2] + (boxes[:, 3:4] - boxes[:, 1:2]) * steps).clamp(0, table_h - 1)
    x0 = xs.floor().long().clamp(max=table_w - 2)
    y0 = ys.floor().long().clamp(max=table_h - 2)
    fx = (xs - x0)[:, None, None, :]  # broadcasts over (N, C, size+1, size+1)
    fy = (ys - y0)[:, None, :, None]

    # Flat index of (image, channel, y0, x0) for every box, channel and grid corner.
    plane = image[:, None] * channels + torch.arange(channels, device=boxes.device)  # (N, C)
    index = ((plane[:, :, None] * table_h + y0[:, None, :])[..., None] * table_w) + x0[:, None, None, :]
    flat = integral.reshape(-1)

    def corner(dy: int, dx: int) -> torch.Tensor:
        return flat[index + (dy * table_w + dx)]

    top_left, top_right, bottom_left, bottom_right = corner(0, 0), corner(0, 1), corner(1, 0), corner(1, 1)
    top = torch.lerp(top_left, top_right, fx)
    sums = torch.lerp(top, torch.lerp(bottom_left, bottom_right, fx), fy)  # table value at grid corners
    cells = sums[..., 1:, 1:] - sums[..., :-1, 1:] - sums[..., 1:, :-1] + sums[..., :-1, :-1]
    cell_area = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) / size**2)[:, None, None, None]
    return (cells / cell_area).float()


def _run_chunked(network: nn.Module, inputs: torch.Tensor, chunk: int) -> tuple[torch.Tensor, ...]:
    outputs = [network(inputs[start : start + chunk]) for start in range(0, max(len(inputs), 1), chunk)]
    return tuple(torch.cat(parts) for parts in zip(*outputs))


def _empty_candidates(device: torch.device) -> _Candidates:
    return _Candidates(
        torch.empty(0, 4, device=device),
        torch.empty(0, device=device),
        torch.empty(0, dtype=torch.long, device=device),
    )


def _to_face_boxes(cands: _Candidates, back_scales: Sequence[tuple[float, float]], count: int) -> list[list[FaceBox]]:
    """Split candidates per image, map them to original pixels and sort each list by score."""
    faces: list[list[FaceBox]] = [[] for _ in range(count)]
    if len(cands) == 0 or cands.landmarks is None:
        return faces
    boxes, scores = cands.boxes.cpu().tolist(), cands.scores.cpu().tolist()
    landmarks, images = cands.landmarks.cpu().tolist(), cands.image.cpu().tolist()
    for box, score, points, index in zip(boxes, scores, landmarks, images):
        sx, sy = back_scales[index]
        faces[index].append(
            FaceBox(
                x1=box[0] * sx,
                y1=box[1] * sy,
                x2=box[2] * sx,
                y2=box[3] * sy,
                score=score,
                landmarks=tuple((x * sx, y * sy) for x, y in points),
            )
        )
    for per_image in faces:
        per_image.sort(key=lambda face: face.score, reverse=True)
    return faces
