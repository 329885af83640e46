"""Upscale GAN-painted faces before they go back into the portrait (#8).

The face GAN paints at 256², while a 768 px portrait shows the face crop at about 400 px: resized with plain
bicubic the brushwork turns to mush. Real-ESRGAN's compact network (realesr-animevideov3, our torch port in
`networks/srvgg.py`) doubles it with edges kept. Its body always works at ×4 (the "x2" model file adds a
bicubic halving), so on the CPU it is the most expensive step after the GAN: `PORTRAITS_FACE_UPSCALER` picks
`esrgan`, `bicubic`, or `auto` (Real-ESRGAN on CUDA, bicubic on the CPU — see the README's benchmark).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from services.worker.engine.networks.srvgg import SRVGGNetCompact
from services.worker.engine.runtime import Runtime

SR_FILES = ("realesr-animevideov3-x2.param", "realesr-animevideov3-x2.bin")
SCALE = 2


class FaceUpscaler:
    def __init__(self, model_paths: dict[str, Path], runtime: Runtime, mode: str = "auto") -> None:
        self._runtime = runtime
        self.mode = ("esrgan" if runtime.is_cuda else "bicubic") if mode == "auto" else mode
        self._net: SRVGGNetCompact | None = None
        if self.mode == "esrgan":
            net = SRVGGNetCompact.from_ncnn(model_paths[SR_FILES[0]], model_paths[SR_FILES[1]])
            net = net.to(runtime.device, runtime.dtype).eval()
            self._net = net.to(memory_format=torch.channels_last) if runtime.channels_last else net

    def upscale(self, faces: torch.Tensor) -> torch.Tensor:
        """N×3×256×256 in 0..1 (any device) → N×3×512×512 in 0..1, float32 on the CPU."""
        if self._net is None:
            upscaled = F.interpolate(faces.float(), scale_factor=SCALE, mode="bicubic", align_corners=False)
        else:
            upscaled = self._net(self._runtime.to_input(faces)).float()
        return upscaled.clamp(0, 1).cpu()
