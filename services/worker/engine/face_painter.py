"""Paint aligned faces with MediaPipe's three BlazeFaceStylizer media (#8).

The three `.task` files share one face encoder — their encoder weights differ only in batch-norm running
statistics, which this encoder never uses (a test checks it) — and fine-tune one generator per medium. So a
batch is encoded once, and each medium's generator paints its rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from services.worker.engine.catalog import GanRecipe, Medium
from services.worker.engine.networks.blazestylegan import FaceStylizer
from services.worker.engine.runtime import Runtime
from services.worker.engine.tflite_weights import TfliteGraph


MODEL_FILES: dict[Medium, str] = {
    Medium.OIL_PAINTING: "face_stylizer_oil_painting.task",
    Medium.COLOR_INK: "face_stylizer_color_ink.task",
    Medium.COLOR_SKETCH: "face_stylizer_color_sketch.task",
}


class FacePainter:
    """One encoder and the three generators, loaded once."""

    def __init__(self, model_paths: dict[str, Path], runtime: Runtime) -> None:
        self._runtime = runtime
        stylizers = {medium: FaceStylizer.from_graph(TfliteGraph.from_task(model_paths[name]))
                     for medium, name in MODEL_FILES.items()}
        self.encoder = self._prepare(stylizers[Medium.OIL_PAINTING].encoder)
        self.generators = {medium: self._prepare(model.generator) for medium, model in stylizers.items()}

    def _prepare(self, module: torch.nn.Module) -> torch.nn.Module:
        module = module.to(self._runtime.device, self._runtime.dtype).eval()
        return module.to(memory_format=torch.channels_last) if self._runtime.channels_last else module

    def encode(self, faces: torch.Tensor) -> torch.Tensor:
        """Aligned faces N×3×256×256 in 0..1 → W+ N×12×512 on the runtime's device."""
        return self.encoder(self._runtime.to_input(faces) * 2 - 1)

    def paint(self, faces: torch.Tensor, recipes: Sequence[GanRecipe], strengths: Sequence[float]) -> torch.Tensor:
        """faces: N×3×256×256 in 0..1 (aligned) → painted N×3×256×256 in 0..1, on the runtime's device."""
        latents = self.encode(faces)
        painted = torch.empty((len(recipes), 3, *faces.shape[-2:]), dtype=latents.dtype, device=latents.device)
        for medium in dict.fromkeys(r.medium for r in recipes):
            rows = [i for i, r in enumerate(recipes) if r.medium is medium]
            painted[rows] = self.generators[medium](latents[rows])
        return painted
