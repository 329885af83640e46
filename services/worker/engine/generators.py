"""The generators by name (`PORTRAITS_GENERATOR`): the registry the pipeline builds its generator from. Apart from
generate.py, so it can import the face GAN's generator, which builds on generate.py (#23: they imported each
other)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from services.worker.engine.gan_generator import GanPortraitGenerator
from services.worker.engine.generate import Generator, GeneratorOptions, NeuralStyleGenerator, StyleEncoder
from services.worker.engine.runtime import Runtime

GeneratorFactory = Callable[[dict[str, Path], Runtime, StyleEncoder, GeneratorOptions], Generator]


def _gan_portrait(
    model_paths: dict[str, Path], runtime: Runtime, encoder: StyleEncoder, options: GeneratorOptions
) -> Generator:
    return GanPortraitGenerator(
        NeuralStyleGenerator(model_paths, runtime, encoder), model_paths, runtime, encoder, options
    )


GENERATORS: dict[str, GeneratorFactory] = {
    NeuralStyleGenerator.name: NeuralStyleGenerator,
    "gan-portrait": _gan_portrait,
}


def create_generator(
    name: str,
    model_paths: dict[str, Path],
    runtime: Runtime,
    encoder: StyleEncoder,
    options: GeneratorOptions | None = None,
) -> Generator:
    try:
        factory = GENERATORS[name]
    except KeyError:
        raise ValueError(f"unknown generator {name!r}; registered: {', '.join(GENERATORS)}") from None
    return factory(model_paths, runtime, encoder, options or GeneratorOptions())
