"""tests/containers run the images `make images` built, on its Docker engine (PORTRAITS_DOCKER_HOST, which
`make images` sets); without one they are skipped, so a plain `pytest` run needs no Docker."""

from __future__ import annotations

import os

import pytest

from scripts.containers.engine import EXTERNAL_ENGINE_ENV, Engine


@pytest.fixture(scope="session")
def engine() -> Engine:
    host = os.environ.get(EXTERNAL_ENGINE_ENV)
    if not host:
        pytest.skip(f"needs the images and the Docker engine of `make images` ({EXTERNAL_ENGINE_ENV})")
    return Engine(host)
