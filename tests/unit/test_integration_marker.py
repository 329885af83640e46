"""Every test that starts servers is marked `integration` (tests/conftest.py, #12): `pytest -m "not integration"`
collects none, so it runs without Redis, SeaweedFS, Celery, gunicorn or chromium.

Checked on a real collection of the whole tree in a child pytest (about 10 s: it imports every test module), with a
list of its own rather than the conftest's, so that a rule that forgets a directory or a fixture fails here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from shared.settings import PROJECT_ROOT

SERVER_DIRECTORIES = ("tests/integration/", "tests/e2e/", "tests/browser/", "tests/chaos/", "tests/containers/")
SERVER_FIXTURES = {"redis_server", "s3_server", "weed", "stack"}

# Records what `-m "not integration"` keeps and what it drops, with each test's fixture closure.
_COLLECT = """
import json, sys
import pytest

class Record:
    def __init__(self):
        self.kept, self.dropped = [], []
    def pytest_deselected(self, items):
        self.dropped += [[item.nodeid, sorted(getattr(item, "fixturenames", ()))] for item in items]
    def pytest_collection_finish(self, session):
        self.kept += [[item.nodeid, sorted(getattr(item, "fixturenames", ()))] for item in session.items]

record = Record()
code = pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider", "-m", "not integration", "tests"], [record])
with open(sys.argv[1], "w") as out:
    json.dump({"code": int(code), "kept": record.kept, "dropped": record.dropped}, out)
"""


def test_no_test_that_starts_servers_runs_without_the_marker(tmp_path: Path) -> None:
    result_path = tmp_path / "collected.json"
    child = subprocess.run(
        [sys.executable, "-c", _COLLECT, str(result_path)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    collected = json.loads(result_path.read_text())
    assert collected["code"] == 0, f"collection failed:\n{child.stdout[-3000:]}{child.stderr[-2000:]}"

    kept = {nodeid: set(fixtures) for nodeid, fixtures in collected["kept"]}
    dropped = {nodeid: set(fixtures) for nodeid, fixtures in collected["dropped"]}
    assert kept, "nothing left to run without servers"
    for nodeid, fixtures in kept.items():
        assert not nodeid.startswith(SERVER_DIRECTORIES), f"{nodeid} runs against servers but is not marked"
        assert not fixtures & SERVER_FIXTURES, f"{nodeid} starts {fixtures & SERVER_FIXTURES} but is not marked"
    # The lists above still name real things: every directory and every server fixture is among the dropped.
    for directory in SERVER_DIRECTORIES:
        assert any(nodeid.startswith(directory) for nodeid in dropped), f"no marked test under {directory}"
    used = set().union(*dropped.values())
    assert SERVER_FIXTURES <= used, f"no marked test uses {SERVER_FIXTURES - used}"
