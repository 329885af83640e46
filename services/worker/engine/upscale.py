"""Upscale GAN-painted faces before they go back into the portrait (#8).

The face GAN paints at 256², while a 768 px portrait shows the face crop at about 400 px: resized with plain
bicubic the brushwork turns to mush. `PORTRAITS_FACE_UPSCALER` picks:

* `esrgan` — Real-ESRGAN's compact network (realesr-animevideov3, our port in `networks/srvgg.py`): edges kept,
  a flatter, drawn look that suits paintings. Its body always works at ×4 (the "x2" file adds a bicubic
  halving), about 0.4 s a face on a 2-core CPU: more than the face GAN itself.
* `esrgan-plus` — the photographic RRDBNet (`networks/rrdbnet.py`, 16.7 M parameters), ×4 then an area
  halving: ~40 s a face on the CPU, for GPUs only.
* `bicubic`, and `auto`: `esrgan` on CUDA, `bicubic` on the CPU (docs/performance.md).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from services.worker.engine.networks.rrdbnet import RRDBNet
from services.worker.engine.networks.srvgg import SRVGGNetCompact
from services.worker.engine.runtime import Runtime

COMPACT_FILES = ("realesr-animevideov3-x2.param", "realesr-animevideov3-x2.bin")
PLUS_FILES = ("realesrgan-x4plus.param", "realesrgan-x4plus.bin")
SCALE = 2


class FaceUpscaler:
    def __init__(self, model_paths: dict[str, Path], runtime: Runtime, mode: str = "auto") -> None:
        self._runtime = runtime
        self.mode = ("esrgan" if runtime.is_cuda else "bicubic") if mode == "auto" else mode
        self._net: nn.Module | None = None
        if self.mode in ("esrgan", "esrgan-plus"):
            net: nn.Module
            if self.mode == "esrgan":
                net = SRVGGNetCompact.from_ncnn(model_paths[COMPACT_FILES[0]], model_paths[COMPACT_FILES[1]])
            else:
                net = RRDBNet.from_ncnn(model_paths[PLUS_FILES[0]], model_paths[PLUS_FILES[1]])
            self._net = runtime.prepare(net)

    def upscale(self, faces: torch.Tensor) -> torch.Tensor:
        """N×3×256×256 in 0..1 (any device) → N×3×512×512 in 0..1, float32 on the CPU."""
        if self._net is None:
            upscaled = F.interpolate(faces.float(), scale_factor=SCALE, mode="bicubic", align_corners=False)
        else:
            upscaled = self._net(self._runtime.to_input(faces)).float()
            if upscaled.shape[-1] != faces.shape[-1] * SCALE:  # RRDBNet's ×4
                upscaled = F.interpolate(upscaled, size=(faces.shape[-2] * SCALE, faces.shape[-1] * SCALE), mode="area")
        return upscaled.clamp(0, 1).cpu()
