"""Our BlazeFaceStylizer modules: loading from the TFLite graphs, determinism, batching and the traps of #8.

Parity with MediaPipe's own FaceStylizer is in `test_stylizer_parity.py` (it needs MediaPipe's venv).
"""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from scripts.support import samples
from services.worker.engine import align
from services.worker.engine.catalog import Medium
from services.worker.engine.detect import FaceDetector
from services.worker.engine.face_painter import MODEL_FILES
from services.worker.engine.networks.blazestylegan import FaceStylizer
from services.worker.engine.networks.tf_layers import PerImageBatchNorm
from services.worker.engine.tensors import to_uint8_hwc
from services.worker.engine.tflite_weights import GraphMismatch, TfliteGraph
from shared.errors import ModelFilesError


@pytest.fixture(scope="module")
def stylizers(model_dir) -> dict[Medium, FaceStylizer]:
    return {
        medium: FaceStylizer.from_graph(TfliteGraph.from_task(model_dir / name)) for medium, name in MODEL_FILES.items()
    }


@pytest.fixture(scope="module")
def faces(model_dir) -> torch.Tensor:
    """The astronaut and Grace Hopper, aligned like the engine aligns them: 2×3×256×256 in 0..1."""
    detector = FaceDetector(model_dir)
    crops = []
    for path in (samples.astronaut_path(), samples.grace_hopper_path()):
        image = Image.open(path).convert("RGB")
        face = max(detector.detect([to_uint8_hwc(image)])[0], key=lambda f: f.area)
        tensor = torch.from_numpy(np.asarray(image, np.float32) / 255).permute(2, 0, 1)[None]
        crops.append(align.crop_faces(tensor, [align.alignment(face)]))
    return torch.cat(crops)


def test_every_medium_loads_the_published_architecture(stylizers):
    for model in stylizers.values():
        assert 6.9e6 < sum(p.numel() for p in model.parameters()) < 7.1e6  # "~7 M parameters"
        assert model.encoder.slots == [0] * 4 + [1] * 4 + [2] * 4  # coarse, middle, fine heads
        assert len([m for m in model.modules() if isinstance(m, PerImageBatchNorm)]) == 39


def test_the_media_share_one_encoder(stylizers):
    """The reason `FacePainter` encodes a batch once: only the unused running statistics differ."""
    states = [{k: v for k, v in m.encoder.state_dict().items() if "running" not in k} for m in stylizers.values()]
    for other in states[1:]:
        assert states[0].keys() == other.keys()
        assert all(torch.equal(states[0][k], other[k]) for k in states[0])
    generators = [m.generator.state_dict() for m in stylizers.values()]
    assert not all(torch.equal(generators[0][k], generators[1][k]) for k in generators[0])


def test_output_is_deterministic_and_the_same_alone_or_batched(stylizers, faces):
    model = stylizers[Medium.OIL_PAINTING]
    with torch.inference_mode():
        batched = model(faces)
        again = model(faces)
        alone = torch.cat([model(faces[i : i + 1]) for i in range(len(faces))])
    assert torch.equal(batched, again)  # no noise injection
    assert (batched - alone).abs().max() < 1e-4  # per-image statistics, not the batch's
    assert batched.shape == (2, 3, 256, 256) and 0 <= batched.min() and batched.max() <= 1


def test_the_running_statistics_trap(stylizers, faces):
    """With the file's running statistics (is_training ignored) every face collapses to one generic face."""
    model = stylizers[Medium.COLOR_SKETCH]
    with torch.inference_mode():
        right = model(faces)
        for norm in model.modules():
            if isinstance(norm, PerImageBatchNorm):
                norm.use_running_stats = True
        try:
            collapsed = model(faces)
        finally:
            for norm in model.modules():
                if isinstance(norm, PerImageBatchNorm):
                    norm.use_running_stats = False
    # Two different sitters: clearly different paintings, unless the trap is sprung.
    assert (right[0] - right[1]).abs().mean() > 3 * (collapsed[0] - collapsed[1]).abs().mean()
    assert (right - collapsed).abs().mean() > 0.05


def test_a_truncated_task_file_is_a_clear_error(model_dir, tmp_path):
    broken = tmp_path / "face_stylizer_oil_painting.task"
    broken.write_bytes((model_dir / "face_stylizer_oil_painting.task").read_bytes()[:100_000])
    with pytest.raises(ModelFilesError, match="make models"):
        TfliteGraph.from_task(broken)


def test_another_network_in_the_file_is_refused_not_loaded(model_dir, tmp_path):
    # A .task whose face_stylizer.tflite is really the face detector: a valid model of the wrong network.
    with zipfile.ZipFile(model_dir / "face_stylizer_oil_painting.task") as source:
        detector = source.read("face_detector.tflite")
    impostor = tmp_path / "impostor.task"
    with zipfile.ZipFile(impostor, "w") as target:
        target.writestr("face_stylizer.tflite", detector)
    with pytest.raises(GraphMismatch):
        FaceStylizer.from_graph(TfliteGraph.from_task(impostor))
    with pytest.raises(ModelFilesError, match="not a readable TFLite model"):
        TfliteGraph(io.BytesIO(b"not a flatbuffer at all").getvalue())


def test_reduced_precision_and_channels_last_paint_what_fp32_paints(model_dir, faces):
    """The GPU configuration's dtype and layout plumbing (fp16 + channels_last on CUDA), exercised on the CPU
    with bf16 — fp16 convolutions on the CPU are too slow for a test."""
    from services.worker.engine.catalog import CATALOG, GanRecipe
    from services.worker.engine.face_painter import FacePainter
    from services.worker.engine.runtime import Runtime
    from services.worker.engine.weights import verify_model_dir

    paths = verify_model_dir(model_dir)
    recipe = next(style.recipe for style in CATALOG if isinstance(style.recipe, GanRecipe))
    with torch.inference_mode():
        full = FacePainter(paths, Runtime(torch.device("cpu"), torch.float32, channels_last=False))
        half = FacePainter(paths, Runtime(torch.device("cpu"), torch.bfloat16, channels_last=True))
        reference = full.paint(faces, [recipe] * len(faces))
        reduced = half.paint(faces, [recipe] * len(faces))
    assert reduced.dtype == torch.bfloat16 and torch.isfinite(reduced.float()).all()
    assert (reduced.float() - reference).abs().mean() < 0.05  # bf16 moves it ~7 levels of 255 on average
