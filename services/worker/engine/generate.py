"""Stage 5 — generate: paint a batch of framed portraits.

The pipeline talks to a `Generator` only through `paint`, and picks the implementation by name from
`GENERATORS` (setting `PORTRAITS_GENERATOR`), so another network — say an adversarially trained portrait
generator — can be added by registering a factory here, without touching the stages around it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

import torch
import torch.nn.functional as F

from services.worker.engine.catalog import BuiltinBlend, Style, TextureStyle
from services.worker.engine.detect import FaceBox
from services.worker.engine.networks.arbitrary import StylePredictor, StyleTransformer
from services.worker.engine.networks.multistyle import MultiStyleNet
from services.worker.engine.runtime import Runtime
from services.worker.engine.tensors import to_tensor
from services.worker.engine.textures import TEXTURES

ENCODER_SIDE = 256  # the style predictor's training resolution

_Recipe = TypeVar("_Recipe")


@dataclass(frozen=True)
class PaintJob:
    style: Style
    strength: float  # 0 keeps the photo, 1 is the full style
    photo_vector: torch.Tensor  # the photo's own 100-d style vector (float32, CPU)
    face: FaceBox | None = None  # the face in portrait pixels (face GANs align on its landmarks)


@dataclass(frozen=True)
class GeneratorOptions:
    """The settings a generator reads (it is not handed the whole service configuration)."""

    face_upscaler: str = "auto"  # see `upscale.py`


class Generator(Protocol):
    name: str

    def supports(self, style: Style) -> bool:
        """Whether `paint` can paint this catalog style (selection only picks styles it can)."""
        ...

    def paint(self, portraits: torch.Tensor, jobs: Sequence[PaintJob]) -> torch.Tensor:
        """portraits: N×3×H×W float32 in 0..1 on the CPU → painted N×3×H×W float32 in 0..1 on the CPU."""
        ...


class StyleEncoder:
    """The arbitrary network's style predictor: any picture → its 100-d style vector."""

    def __init__(self, predictor: StylePredictor, runtime: Runtime) -> None:
        # Kept in float32 even on GPU: it is small and its vectors feed selection, which must be stable.
        self._predictor = predictor.to(runtime.device).eval()
        self._device = runtime.device

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """N×3×H×W in 0..1 → N×100 (float32, CPU). Images are resized so their short side is 256."""
        height, width = images.shape[-2:]
        scale = ENCODER_SIDE / min(height, width)
        size = (max(ENCODER_SIDE, round(height * scale)), max(ENCODER_SIDE, round(width * scale)))
        resized = F.interpolate(
            images.to(self._device), size=size, mode="bilinear", antialias=True, align_corners=False
        )
        vectors: torch.Tensor = self._predictor(resized.clamp(0, 1))
        return vectors.float().cpu()


class NeuralStyleGenerator:
    """The 26-style network for built-in blends and the arbitrary network for texture styles."""

    name = "neural-style"

    def __init__(
        self,
        model_paths: dict[str, Path],
        runtime: Runtime,
        encoder: StyleEncoder,
        options: GeneratorOptions | None = None,
    ) -> None:
        self._runtime = runtime
        self._multistyle = runtime.prepare(MultiStyleNet.from_onnx(model_paths["multistyle26.onnx"]))
        self._transformer = runtime.prepare(StyleTransformer.from_onnx(model_paths["arbitrary_transform.onnx"]))
        self._texture_vectors = {
            name: encoder.encode(to_tensor(make()).unsqueeze(0))[0] for name, make in TEXTURES.items()
        }

    def supports(self, style: Style) -> bool:
        return isinstance(style.recipe, (BuiltinBlend, TextureStyle))

    def paint(self, portraits: torch.Tensor, jobs: Sequence[PaintJob]) -> torch.Tensor:
        painted = torch.empty_like(portraits)
        builtin = [i for i, job in enumerate(jobs) if isinstance(job.style.recipe, BuiltinBlend)]
        textured = [i for i, job in enumerate(jobs) if isinstance(job.style.recipe, TextureStyle)]
        if builtin:
            painted[builtin] = self._paint_builtin(portraits[builtin], [jobs[i] for i in builtin])
        if textured:
            painted[textured] = self._paint_textured(portraits[textured], [jobs[i] for i in textured])
        return painted

    def _paint_builtin(self, portraits: torch.Tensor, jobs: list[PaintJob]) -> torch.Tensor:
        weights = torch.tensor([_recipe(job, BuiltinBlend).vector() for job in jobs], dtype=torch.float32)
        stylized: torch.Tensor = self._multistyle(
            self._runtime.to_input(portraits), weights.to(self._runtime.device, self._runtime.dtype)
        )
        stylized = stylized.float().cpu()
        # The 26 styles have no "identity" style to interpolate towards, so strength mixes pixels.
        strength = torch.tensor([job.strength for job in jobs]).view(-1, 1, 1, 1)
        return strength * stylized + (1 - strength) * portraits

    def _paint_textured(self, portraits: torch.Tensor, jobs: list[PaintJob]) -> torch.Tensor:
        # Strength walks from the photo's own style vector to the texture's, as the arbitrary network was
        # trained to do: a weak style keeps the photo's palette instead of ghosting two images over each other.
        vectors = torch.stack(
            [
                job.strength * self._texture_vectors[_recipe(job, TextureStyle).texture]
                + (1 - job.strength) * job.photo_vector
                for job in jobs
            ]
        )
        return self.transform(portraits, vectors)

    def transform(self, portraits: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
        """The arbitrary-style network: portraits N×3×H×W, style vectors N×100 → N×3×H×W (float32, CPU)."""
        stylized: torch.Tensor = self._transformer(
            self._runtime.to_input(portraits), vectors.to(self._runtime.device, self._runtime.dtype)
        )
        return stylized.float().cpu()


def _recipe(job: PaintJob, kind: type[_Recipe]) -> _Recipe:
    """The job's recipe as the kind `paint` routed it by (a job on the wrong path is a bug, said loudly)."""
    recipe = job.style.recipe
    if not isinstance(recipe, kind):
        raise TypeError(f"style {job.style.name} is not a {kind.__name__}")
    return recipe
