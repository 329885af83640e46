"""The engine's own configuration: the fields of the service `Settings` it reads, and nothing else (#12).

A frozen dataclass of exactly the fields the engine reads says what it depends on, lets the benchmarks and tests
build an engine without a service configuration, and keeps `shared.settings` out of the engine: this module's
`EngineConfig.from_settings` is the one place in the package that knows about it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

from shared.engine_options import Device, FaceUpscaler, Precision
from shared.output_format import OutputFormat

if TYPE_CHECKING:  # the builder only reads attributes, so the engine never imports the settings module
    from shared.settings import Settings


@dataclass(frozen=True)
class RuntimeConfig:
    """Where the networks run (see `runtime.resolve_runtime`); a benchmark may build one on its own."""

    device: Device
    precision: Precision
    torch_threads: int  # 0: torch's own choice


@dataclass(frozen=True)
class EngineConfig:
    """Everything the engine reads from the service configuration; see `Settings` for each field's meaning.

    No defaults: `Settings` holds them, and a second copy here could drift from it.
    """

    model_dir: Path
    runtime: RuntimeConfig
    generator: str
    face_upscaler: FaceUpscaler
    # decode
    max_image_pixels: int
    min_image_side: int
    # detect and frame
    detect_max_side: int
    min_face_score: float
    min_face_size: int
    # finish
    output_size: int
    output_format: OutputFormat
    output_quality: int
    detail_blend: float
    # the likeness check (#21)
    likeness_max_distance: float

    @classmethod
    def from_settings(cls, settings: Settings) -> EngineConfig:
        """The engine's view of the service configuration (the only reader of `Settings` in the engine): every
        field but `runtime` is the setting of the same name (#23: they were copied one by one)."""
        runtime = RuntimeConfig(**{f.name: getattr(settings, f.name) for f in fields(RuntimeConfig)})
        copied = {f.name: getattr(settings, f.name) for f in fields(cls) if f.name != "runtime"}
        return cls(runtime=runtime, **copied)


def load_engine_config() -> EngineConfig:
    """The engine's config from the environment, as the services read it (for entry points such as `make models`)."""
    from shared.settings import get_settings  # here and in `from_settings` only: the engine's one reader of them

    return EngineConfig.from_settings(get_settings())
