"""The engine's option vocabularies, defined once for the setting that reads them (shared/settings.py) and the
engine that obeys them (services/worker/engine/config.py) (#23: they were two copies of each)."""

from __future__ import annotations

from typing import Literal

Device = Literal["auto", "cpu", "cuda"]
Precision = Literal["auto", "fp32", "fp16", "bf16"]
FaceUpscaler = Literal["auto", "esrgan", "esrgan-plus", "bicubic"]
