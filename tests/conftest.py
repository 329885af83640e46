"""Fixtures shared by every test (the prepared model directory, the public-domain sample photos) and the one
rule that marks every test that starts servers `integration`, so `pytest -m "not integration"` runs without any."""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts.support import samples
from services.worker.engine.weights import prepare_model_dir
from shared.settings import get_settings

pytest_plugins = ["tests.support.servers"]

# Every test under these directories runs against real servers: Redis and SeaweedFS, and in e2e/, browser/ and
# chaos/ also Celery workers, the gateway under gunicorn and chromium (scripts/chaos/stack.py); in containers/,
# the images on a Docker engine (`make images`).
SERVER_DIRECTORIES = frozenset({"integration", "e2e", "browser", "chaos", "containers"})
# Fixtures that start a server wherever a test asks for one: the session's Redis and SeaweedFS
# (tests/support/servers.py) and the real weed binary of tests/deploy/test_seaweedfs_scripts.py. A fixture built
# on one of them (the gateway's settings, a test's backends) puts it in the test's closure, so it counts too.
SERVER_FIXTURES = frozenset({"redis_server", "s3_server", "weed"})


def starts_servers(item: pytest.Item) -> bool:
    parts = item.path.relative_to(item.config.rootpath).parts
    in_server_directory = len(parts) > 2 and parts[0] == "tests" and parts[1] in SERVER_DIRECTORIES
    return in_server_directory or not SERVER_FIXTURES.isdisjoint(getattr(item, "fixturenames", ()))


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects: the marker must be there when it looks (#12)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # One rule instead of a `pytestmark` per file: only some files had one (#12), and a new test that asks for
    # a server fixture is marked without anyone remembering to. tests/unit/test_integration_marker.py checks it.
    for item in items:
        if starts_servers(item) and item.get_closest_marker("integration") is None:
            item.add_marker(pytest.mark.integration)


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
