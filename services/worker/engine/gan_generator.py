"""The default generator: faces painted by a GAN, the frame around them painted to match (#8).

For a GAN style, one batch goes: align every face (one warp) → the face GAN paints the 256² crops → the
arbitrary-style network paints each whole portrait with its own painted face as the style image → the
background's palette is pulled towards the face's → the faces are upscaled (Real-ESRGAN, our torch port) and
put back through the inverse warp under feathered head masks (`compose.py`). Styles of the style-transfer
networks go to `NeuralStyleGenerator` unchanged, so one batch can mix both.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from services.worker.engine import align, compose, likeness
from services.worker.engine.catalog import GanRecipe, Style
from services.worker.engine.detect import FaceBox
from services.worker.engine.face_painter import FacePainter
from services.worker.engine.generate import GeneratorOptions, NeuralStyleGenerator, PaintJob, StyleEncoder
from services.worker.engine.runtime import Runtime
from services.worker.engine.upscale import FaceUpscaler

# The background is painted at this long side and resized to the portrait's: it is brushwork and colour, and
# painting it at 768 px cost more than the face GAN itself.
BACKGROUND_SIDE = 512
# How far the background's palette moves to the painted head's. The paper media repaint hair in their own
# colours (the ink GAN turns brown hair lilac): a stronger pull keeps the hair outside the head mask from
# reading as another painting. Chosen on contact sheets.
PAINT_PALETTE, PAPER_PALETTE = 0.5, 0.8


class GanPortraitGenerator:
    name = "gan-portrait"

    def __init__(
        self,
        neural: NeuralStyleGenerator,
        model_paths: dict[str, Path],
        runtime: Runtime,
        encoder: StyleEncoder,
        options: GeneratorOptions,
    ) -> None:
        self._neural = neural
        self._faces = FacePainter(model_paths, runtime)
        self._upscaler = FaceUpscaler(model_paths, runtime, options.face_upscaler)
        self._encoder = encoder
        self._runtime = runtime

    def supports(self, style: Style) -> bool:
        return isinstance(style.recipe, GanRecipe) or self._neural.supports(style)

    def paint(self, portraits: torch.Tensor, jobs: Sequence[PaintJob]) -> torch.Tensor:
        painted = torch.empty_like(portraits)
        gan = [i for i, job in enumerate(jobs) if isinstance(job.style.recipe, GanRecipe)]
        others = [i for i in range(len(jobs)) if i not in gan]
        if others:
            painted[others] = self._neural.paint(portraits[others], [jobs[i] for i in others])
        if gan:
            painted[gan] = self._paint_gan(portraits[gan], [jobs[i] for i in gan])
        return painted

    def _paint_gan(self, portraits: torch.Tensor, jobs: Sequence[PaintJob]) -> torch.Tensor:
        recipes = [_recipe(job) for job in jobs]
        matrices = [align.alignment(_face(job)) for job in jobs]
        crops = align.crop_faces(portraits, matrices)
        # The GAN paints from a latent that has lost much of the sitter: the sitter's shape and colour go back
        # into the painted face before the frame's palette is matched to it (#21).
        faces = self._faces.paint(crops, recipes).float()
        settings = [likeness.WASH if r.wash else likeness.DEFAULT for r in recipes]
        for setting in dict.fromkeys(settings):
            rows = [i for i, s in enumerate(settings) if s == setting]
            faces[rows] = likeness.bring_to_sitter(faces[rows], crops[rows], [recipes[i].paper for i in rows], setting)
        masks = compose.head_masks(faces, [r.paper for r in recipes]).float().cpu()
        background = self._paint_background(portraits, self._encoder.encode(faces.float()))
        background = compose.match_palette(
            background, faces.float().cpu(), masks, [PAPER_PALETTE if r.paper else PAINT_PALETTE for r in recipes]
        )
        painted, pasted = compose.composite(background, self._upscaler.upscale(faces), masks, matrices)
        graded = [i for i, r in enumerate(recipes) if r.old_master]
        if graded:
            painted[graded] = compose.old_master_grade(painted[graded], pasted[graded])
        # Strength below 1 lets the photo show through, as for the built-in styles: 0 keeps the photo.
        strength = torch.tensor([job.strength for job in jobs], dtype=painted.dtype).view(-1, 1, 1, 1)
        return strength * painted + (1 - strength) * portraits

    def _paint_background(self, portraits: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
        height, width = portraits.shape[-2:]
        scale = min(1.0, BACKGROUND_SIDE / max(height, width))
        small = portraits
        if scale < 1:
            size = (max(4, round(height * scale / 4) * 4), max(4, round(width * scale / 4) * 4))
            small = F.interpolate(portraits, size=size, mode="bilinear", antialias=True, align_corners=False)
        painted = self._neural.transform(small, vectors)
        if scale < 1:
            painted = F.interpolate(painted, size=(height, width), mode="bicubic", align_corners=False)
        return painted.clamp(0, 1)


def _recipe(job: PaintJob) -> GanRecipe:
    if not isinstance(job.style.recipe, GanRecipe):
        raise ValueError(f"{job.style.name} is not painted by the face GAN")
    return job.style.recipe


def _face(job: PaintJob) -> FaceBox:
    if job.face is None:
        raise ValueError("a face-GAN style needs the face's landmarks (PaintJob.face)")
    return job.face
