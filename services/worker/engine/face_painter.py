"""Paint aligned faces with MediaPipe's three BlazeFaceStylizer media (#8).

The three `.task` files share one face encoder — their encoder weights differ only in batch-norm running
statistics, which this encoder never uses (a test checks it) — and fine-tune one generator per medium. So a
batch is encoded once, and each recipe's generator paints its rows. Recipes may swap another medium's coarse
stages into a generator (built once, at load).

What the latent lost of the sitter is put back afterwards, in `likeness.py` (#21).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path

import torch

from services.worker.engine.catalog import CATALOG, GanRecipe, Medium
from services.worker.engine.networks.blazestylegan import FaceStylizer, StyleGenerator
from services.worker.engine.runtime import Runtime
from services.worker.engine.tflite_weights import TfliteGraph

MODEL_FILES: dict[Medium, str] = {
    Medium.OIL_PAINTING: "face_stylizer_oil_painting.task",
    Medium.COLOR_INK: "face_stylizer_color_ink.task",
    Medium.COLOR_SKETCH: "face_stylizer_color_sketch.task",
}


# Generator stages up to and including the 64² styled convs (constant, then 8², 16², 32², 64²).
STRUCTURE_STAGES = 13


def swap_structure(medium: StyleGenerator, donor: StyleGenerator) -> StyleGenerator:
    """The donor's constant and stages up to 64², the medium's stages above."""
    swapped = copy.deepcopy(medium)
    swapped.constant = donor.constant.clone()
    for index in range(STRUCTURE_STAGES):
        swapped.stages[index] = copy.deepcopy(donor.stages[index])
    return swapped


def _generator_key(recipe: GanRecipe) -> tuple[Medium, Medium | None]:
    return recipe.medium, recipe.structure


class FacePainter:
    """One encoder and the three generators, loaded once."""

    def __init__(self, model_paths: dict[str, Path], runtime: Runtime) -> None:
        self._runtime = runtime
        stylizers = {
            medium: FaceStylizer.from_graph(TfliteGraph.from_task(model_paths[name]))
            for medium, name in MODEL_FILES.items()
        }
        self.encoder = self._runtime.prepare(stylizers[Medium.OIL_PAINTING].encoder)
        generators = {medium: model.generator for medium, model in stylizers.items()}
        # One generator per (medium, structure donor) in the catalog, whatever else the recipes vary.
        self.generators: dict[tuple[Medium, Medium | None], torch.nn.Module] = {}
        for style in CATALOG:
            recipe = style.recipe
            if isinstance(recipe, GanRecipe) and _generator_key(recipe) not in self.generators:
                generator = generators[recipe.medium]
                if recipe.structure is not None:
                    generator = swap_structure(generator, generators[recipe.structure])
                self.generators[_generator_key(recipe)] = self._runtime.prepare(generator)

    def encode(self, faces: torch.Tensor) -> torch.Tensor:
        """Aligned faces N×3×256×256 in 0..1 → W+ N×12×512 on the runtime's device."""
        latents: torch.Tensor = self.encoder(self._runtime.to_input(faces) * 2 - 1)
        return latents

    def paint(self, faces: torch.Tensor, recipes: Sequence[GanRecipe]) -> torch.Tensor:
        """faces: N×3×256×256 in 0..1 (aligned) → painted N×3×256×256 in 0..1, on the runtime's device."""
        latents = self.encode(faces)
        painted = torch.empty((len(recipes), 3, *faces.shape[-2:]), dtype=latents.dtype, device=latents.device)
        keys = [_generator_key(recipe) for recipe in recipes]
        for key in dict.fromkeys(keys):
            rows = [i for i, k in enumerate(keys) if k == key]
            painted[rows] = self.generators[key](latents[rows])
        return painted
