"""`portraits` CLI: prints the choice, reason and timings; errors are one clear line and a non-zero exit."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest
from PIL import Image

from scripts.support import samples
from services import cli
from services.worker.engine.catalog import CATALOG


@pytest.fixture
def session_engine(engine, monkeypatch):
    monkeypatch.setattr(cli, "_engine", lambda size: engine)


def test_render_writes_a_portrait_and_explains_it(session_engine, astronaut_path, tmp_path, capsys):
    output = tmp_path / "portrait.jpg"
    assert cli.main(["render", str(astronaut_path), "-o", str(output), "--style", "ink"]) == 0
    printed = capsys.readouterr().out
    assert "style:" in printed and "reason:" in printed and "detect" in printed and "generate" in printed
    assert Image.open(io.BytesIO(output.read_bytes())).format == "JPEG"


@pytest.mark.parametrize(
    ("photo", "expected"),
    [(samples.coffee_path(), "[no_face]"), ("/no/such/photo.jpg", "No such file")],
)
def test_errors_are_one_line(session_engine, tmp_path, capsys, photo, expected):
    assert cli.main(["render", str(photo), "-o", str(tmp_path / "out.jpg")]) == 1
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1


def test_unknown_style_is_refused(session_engine, astronaut_path, tmp_path, capsys):
    assert cli.main(["render", str(astronaut_path), "-o", str(tmp_path / "o.jpg"), "--style", "cubism"]) == 1
    assert "[unknown_style]" in capsys.readouterr().err


def test_styles_lists_the_catalog_without_loading_models():
    result = subprocess.run(
        [sys.executable, "-m", "services.cli", "styles"], capture_output=True, text=True, check=True, timeout=60
    )
    for style in CATALOG:
        assert style.name in result.stdout


def test_bad_style_is_refused_before_looking_for_a_face(session_engine, tmp_path, capsys):
    photo = str(samples.coffee_path())
    assert cli.main(["render", photo, "-o", str(tmp_path / "o.jpg"), "--style", "cubism"]) == 1
    assert "[unknown_style]" in capsys.readouterr().err
