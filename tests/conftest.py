"""Fixtures shared by every test: the prepared model directory and the public-domain sample photos."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.worker.engine.weights import prepare_model_dir
from shared.settings import get_settings
from tests.support import samples

pytest_plugins = ["tests.support.servers"]


@pytest.fixture(scope="session")
def model_dir() -> Path:
    """The verified model directory (prepared on first use, like `make models`)."""
    path = get_settings().model_dir
    prepare_model_dir(path)
    return path


@pytest.fixture(scope="session")
def engine(model_dir):
    """One engine for the whole session (loading takes seconds), at the smallest portrait size for speed."""
    from services.worker.engine.config import EngineConfig
    from services.worker.engine.pipeline import PortraitEngine

    settings = get_settings().model_copy(update={"output_size": 512, "model_dir": model_dir})
    return PortraitEngine(EngineConfig.from_settings(settings))


@pytest.fixture(scope="session")
def astronaut_path() -> Path:
    return samples.astronaut_path()


@pytest.fixture(scope="session")
def grace_hopper_path() -> Path:
    return samples.grace_hopper_path()
