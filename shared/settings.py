"""The one place configuration is read: every service builds a `Settings` from the environment.

Every field maps to an environment variable with the `PORTRAITS_` prefix (e.g. `PORTRAITS_DEVICE=cuda`);
the README's settings table is generated from these fields and their descriptions.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PORTRAITS_", extra="ignore", frozen=True)

    # --- engine: models and devices ---
    model_dir: Path = Field(
        PROJECT_ROOT / "var" / "models",
        description="Directory holding the model files and their manifest (prepared by `make models`).",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Where the networks run; `auto` takes CUDA when present, else the CPU."
    )
    precision: Literal["auto", "fp32", "fp16", "bf16"] = Field(
        "auto", description="Generator precision; `auto` is fp16 on CUDA and fp32 on the CPU."
    )
    torch_threads: int = Field(
        0, ge=0, description="CPU threads for torch; 0 leaves torch's default (one per core)."
    )
    generator: str = Field(
        "neural-style",
        description="Registered generator that paints the portrait (see `engine/generate.py`).",
    )

    # --- engine: pipeline behaviour ---
    max_image_pixels: int = Field(
        40_000_000,
        ge=1_000_000,
        description="Photos with more pixels than this are refused (checked on the header, before decoding).",
    )
    min_image_side: int = Field(
        128, ge=32, description="Photos whose short side is below this many pixels are refused."
    )
    output_size: int = Field(
        768, ge=512, le=2048, description="Long side of the finished portrait, in pixels."
    )
    output_format: Literal["jpeg", "webp"] = Field("jpeg", description="Encoding of the portrait.")
    output_quality: int = Field(90, ge=50, le=100, description="JPEG/WebP quality of the portrait.")
    detect_max_side: int = Field(
        1024, ge=256, description="Photos are downscaled to this long side before face detection."
    )
    min_face_score: float = Field(
        0.95, gt=0, le=1, description="A detected face needs at least this confidence to count."
    )
    min_face_size: int = Field(
        64, ge=20, description="Smallest face (px, short side of the box in the photo) we will paint."
    )
    detail_blend: float = Field(
        0.35,
        ge=0,
        le=1,
        description="How much of the photo's fine detail is blended back over eyes and mouth.",
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
