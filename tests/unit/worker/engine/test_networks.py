"""Our torch re-implementations of the three style-transfer ONNX graphs, checked against onnxruntime.

Tolerances are on outputs in 0..1 (style vectors: raw values, norm about 9):

* multistyle26 is a float graph: we must match it to float32 rounding.
* The arbitrary-style graphs are int8 QDQ: we use the same (dequantized) weights but keep activations in
  float32, so against onnxruntime's int8 execution we only match up to the activation quantization noise
  (steps of up to 0.5 inside the transformer). To still check the architecture exactly, the graphs are also
  run with their activation Quantize/DequantizeLinear pairs removed (`strip_activation_qdq`): that float
  reference must match to float32 rounding, at 384 px and at other sizes.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper
from skimage import data, transform

from services.worker.engine.networks.arbitrary import StylePredictor, StyleTransformer
from services.worker.engine.networks.multistyle import MultiStyleNet
from services.worker.engine.networks.nhwc import conv_reflect_nhwc
from services.worker.engine.onnx_weights import OnnxGraph, dequantize, free_input_dims, strip_activation_qdq

# float graph vs our float32 modules (measured: max 7e-6, mean 5e-7)
FLOAT_MAX, FLOAT_MEAN = 1e-4, 1e-5
# int8 QDQ predictor vs our float predictor (measured: max 0.034, cosine 0.99989)
QDQ_VECTOR_MAX, QDQ_VECTOR_COSINE = 0.1, 0.999
# int8 QDQ transformer vs our float transformer (measured: max 0.22, mean 0.018)
QDQ_IMAGE_MAX, QDQ_IMAGE_MEAN = 0.35, 0.03
# ours at 384x512 vs onnxruntime at its fixed 384, fitted, padded, then resized up (measured mean 0.054;
# a different style or the unstyled photo are at 0.17-0.27)
RESIZED_MEAN = 0.09


def _image(height: int, width: int, source: np.ndarray | None = None) -> np.ndarray:
    """A real photo as float32 HxWx3 in 0..1 (the astronaut unless told otherwise)."""
    photo = data.astronaut() if source is None else source
    return transform.resize(photo, (height, width), anti_aliasing=True).astype(np.float32)


def _nchw(hwc: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(hwc.transpose(2, 0, 1)[None]))


def _hwc(nchw: torch.Tensor) -> np.ndarray:
    return nchw[0].permute(1, 2, 0).float().numpy()


def _session(model: str | Path | onnx.ModelProto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def _float_session(path: Path) -> ort.InferenceSession:
    """The QDQ graph computed in float32 (weights still int8-rounded), at any height and width."""
    return _session(free_input_dims(strip_activation_qdq(onnx.load(str(path))), {1: "h", 2: "w"}))


def _diff(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    assert a.shape == b.shape
    d = np.abs(a.astype(np.float64) - b.astype(np.float64))
    return float(d.max()), float(d.mean())


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def _one_hot(index: int) -> np.ndarray:
    w = np.zeros(26, np.float32)
    w[index] = 1.0
    return w


# -- onnx_weights ------------------------------------------------------------------


def test_dequantize_matches_onnxruntime_per_tensor_and_per_axis() -> None:
    rng = np.random.default_rng(0)
    q = rng.integers(-128, 128, size=(4, 3, 2, 2), dtype=np.int8)
    cases = [
        (np.float32(0.05), np.int8(-3), 1),
        (rng.random(4, dtype=np.float32) + 0.01, rng.integers(-5, 5, 4).astype(np.int8), 0),
        (rng.random(3, dtype=np.float32) + 0.01, rng.integers(-5, 5, 3).astype(np.int8), 1),
    ]
    for scale, zero_point, axis in cases:
        node = helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], axis=axis)
        graph = helper.make_graph(
            [node],
            "dq",
            [
                helper.make_tensor_value_info("q", TensorProto.INT8, q.shape),
                helper.make_tensor_value_info("s", TensorProto.FLOAT, np.shape(scale)),
                helper.make_tensor_value_info("z", TensorProto.INT8, np.shape(zero_point)),
            ],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, q.shape)],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
        expected = _session(model).run(None, {"q": q, "s": np.asarray(scale), "z": np.asarray(zero_point)})[0]
        np.testing.assert_array_equal(dequantize(q, scale, zero_point, axis), expected)


def test_graph_reads_initializers_constants_and_folded_weights(model_dir: Path) -> None:
    multistyle = OnnxGraph.load(model_dir / "multistyle26.onnx")
    assert tuple(multistyle.tensor("contract.0.w").shape) == (32, 3, 9, 9)
    assert tuple(multistyle.tensor("expand.2.norm.gamma").shape) == (26, 3)
    # Constant nodes (e.g. the instance-norm epsilon) are read as constants too
    eps = [n.output[0] for n in multistyle.find("Constant") if n.output[0].endswith("norm/Constant_4_output_0")]
    assert eps and float(multistyle.array(eps[0])) == pytest.approx(1e-5)

    predictor = OnnxGraph.load(model_dir / "arbitrary_predict.onnx")
    stem = predictor.conv("MobilenetV2/Conv")
    assert stem.weight.dtype == torch.float32 and tuple(stem.weight.shape) == (32, 3, 3, 3)
    assert stem.stride == (2, 2) and stem.pads == (0, 0, 1, 1)
    # a folded int8 weight equals (q - zero_point) * scale of its DequantizeLinear inputs
    node = predictor.producer(next(predictor.find("Conv")).input[1])
    assert node is not None and node.op_type == "DequantizeLinear"
    raw = dequantize(*(predictor.array(name) for name in node.input), axis=OnnxGraph.attrs(node).get("axis", 1))
    np.testing.assert_array_equal(predictor.array(node.output[0]), raw)
    with pytest.raises(KeyError):
        predictor.conv("MobilenetV2/no_such_layer")


def test_conv_reflect_nhwc_equals_padded_conv() -> None:
    torch.manual_seed(0)
    for height, width, kernel, stride in [
        (16, 16, 3, 1),
        (16, 16, 3, 2),
        (15, 17, 3, 2),
        (20, 12, 9, 1),
        (9, 11, 5, 2),
    ]:
        x = torch.randn(2, height, width, 5)
        weight, bias = torch.randn(4, 5, kernel, kernel), torch.randn(4)
        padded = F.pad(x.permute(0, 3, 1, 2), (kernel // 2,) * 4, mode="reflect")
        expected = F.conv2d(padded, weight, bias, stride=stride).permute(0, 2, 3, 1)
        torch.testing.assert_close(conv_reflect_nhwc(x, weight, bias, stride), expected, atol=1e-5, rtol=1e-5)


# -- the 26-style network --------------------------------------------------------------


@pytest.fixture(scope="module")
def multistyle(model_dir: Path) -> MultiStyleNet:
    return MultiStyleNet.from_onnx(model_dir / "multistyle26.onnx")


@pytest.fixture(scope="module")
def multistyle_ort(model_dir: Path) -> ort.InferenceSession:
    return _session(model_dir / "multistyle26.onnx")


def _multistyle_reference(session: ort.InferenceSession, hwc: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """onnxruntime with the original wrapper's convention: reflect-pad to a multiple of 4, crop back."""
    h, w = hwc.shape[:2]
    padded = np.pad(hwc, ((0, -h % 4), (0, -w % 4), (0, 0)), mode="reflect")
    out = session.run(None, {"image": padded.transpose(2, 0, 1)[None].copy(), "style_weights": weights})[0]
    return out[0].transpose(1, 2, 0)[:h, :w]


BLEND = np.zeros(26, np.float32)
BLEND[[3, 12, 20]] = [0.5, 0.3, 0.2]


@pytest.mark.parametrize("size", [(256, 256), (200, 320), (203, 317)], ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("weights", [_one_hot(7), BLEND], ids=["style7", "blend"])
def test_multistyle_matches_onnxruntime(multistyle, multistyle_ort, size, weights) -> None:
    photo = _image(*size)
    expected = _multistyle_reference(multistyle_ort, photo, weights)
    ours = _hwc(multistyle(_nchw(photo), torch.from_numpy(weights)))
    max_diff, mean_diff = _diff(ours, expected)
    assert max_diff < FLOAT_MAX and mean_diff < FLOAT_MEAN, (max_diff, mean_diff)
    # the tolerance is far below what a different style changes: the comparison can fail
    other = _multistyle_reference(multistyle_ort, photo, _one_hot(8))
    assert _diff(ours, other)[1] > 100 * FLOAT_MEAN


def test_multistyle_batch_has_one_blend_per_image(multistyle, multistyle_ort) -> None:
    photos = [_image(96, 128), _image(96, 128, data.chelsea())]
    blends = [_one_hot(1), BLEND]
    batch = torch.cat([_nchw(p) for p in photos])
    out = multistyle(batch, torch.from_numpy(np.stack(blends)))
    assert out.shape == (2, 3, 96, 128)
    for i in range(2):
        max_diff, mean_diff = _diff(_hwc(out[i : i + 1]), _multistyle_reference(multistyle_ort, photos[i], blends[i]))
        assert max_diff < FLOAT_MAX and mean_diff < FLOAT_MEAN, (i, max_diff, mean_diff)


def test_multistyle_runs_in_bfloat16(multistyle) -> None:
    """Dtype-agnostic: a bf16 copy (norm statistics still in float32) stays close to float32."""
    photo = _nchw(_image(64, 96))
    ref = multistyle(photo, torch.from_numpy(BLEND))
    low = copy.deepcopy(multistyle).to(torch.bfloat16)(photo, torch.from_numpy(BLEND))
    assert low.dtype == torch.bfloat16
    max_diff, mean_diff = _diff(_hwc(low), _hwc(ref))
    assert mean_diff < 0.01 and max_diff < 0.2, (max_diff, mean_diff)


def test_multistyle_rejects_bad_inputs(multistyle) -> None:
    with pytest.raises(ValueError, match="style_weights"):
        multistyle(torch.rand(2, 3, 64, 64), torch.rand(3, 26))
    with pytest.raises(ValueError, match="at least"):
        multistyle(torch.rand(1, 3, 6, 64), torch.from_numpy(BLEND))


# -- arbitrary style: predictor ----------------------------------------------------------


@pytest.fixture(scope="module")
def predictor(model_dir: Path) -> StylePredictor:
    return StylePredictor.from_onnx(model_dir / "arbitrary_predict.onnx")


@pytest.fixture(scope="module")
def style_photo() -> np.ndarray:
    coffee = data.coffee()  # 400x600: centre square, as the original wrapper crops it
    return _image(256, 256, coffee[:, 100:500])


def test_predictor_matches_onnxruntime(predictor, model_dir, style_photo) -> None:
    path = model_dir / "arbitrary_predict.onnx"
    ours = predictor(_nchw(style_photo)).numpy()
    assert ours.shape == (1, 100)
    int8 = _session(path).run(None, {"style_image": style_photo[None]})[0].reshape(1, 100)
    assert _cosine(ours, int8) > QDQ_VECTOR_COSINE
    assert np.abs(ours - int8).max() < QDQ_VECTOR_MAX
    exact = _float_session(path).run(None, {"style_image": style_photo[None]})[0].reshape(1, 100)
    assert np.abs(ours - exact).max() < FLOAT_MAX
    # a different style image gives a clearly different vector
    other = predictor(_nchw(_image(256, 256, data.astronaut()))).numpy()
    assert _cosine(ours, other) < 0.99


def test_predictor_accepts_any_size(predictor, model_dir) -> None:
    photo = _image(224, 320, data.coffee())  # multiple of 32: every stride-2 input even, where the
    # exported fixed pads equal TF "SAME" (at other sizes we apply SAME as TF did and the export cannot)
    ours = predictor(_nchw(photo)).numpy()
    exact = _float_session(model_dir / "arbitrary_predict.onnx").run(None, {"style_image": photo[None]})[0]
    assert np.abs(ours - exact.reshape(1, 100)).max() < FLOAT_MAX


# -- arbitrary style: transformer -----------------------------------------------------------


@pytest.fixture(scope="module")
def transformer(model_dir: Path) -> StyleTransformer:
    return StyleTransformer.from_onnx(model_dir / "arbitrary_transform.onnx")


@pytest.fixture(scope="module")
def style_vector(model_dir, style_photo) -> np.ndarray:
    """onnxruntime's own style vector, so transformer comparisons share their input."""
    return _session(model_dir / "arbitrary_predict.onnx").run(None, {"style_image": style_photo[None]})[0]


def _transform_ort(session: ort.InferenceSession, hwc: np.ndarray, vector: np.ndarray) -> np.ndarray:
    content, style = (i.name for i in session.get_inputs())
    return session.run(None, {content: hwc[None], style: vector.reshape(1, 1, 1, 100)})[0][0]


def test_transformer_matches_onnxruntime_at_384(transformer, model_dir, style_vector) -> None:
    path = model_dir / "arbitrary_transform.onnx"
    photo = _image(384, 384)
    ours = _hwc(transformer(_nchw(photo), torch.from_numpy(style_vector.reshape(1, 100))))
    max_diff, mean_diff = _diff(ours, _transform_ort(_session(path), photo, style_vector))
    assert max_diff < QDQ_IMAGE_MAX and mean_diff < QDQ_IMAGE_MEAN, (max_diff, mean_diff)
    max_diff, mean_diff = _diff(ours, _transform_ort(_float_session(path), photo, style_vector))
    assert max_diff < FLOAT_MAX and mean_diff < FLOAT_MEAN, (max_diff, mean_diff)


def test_predictor_and_transformer_chain_matches_onnxruntime(
    predictor, transformer, model_dir, style_photo, style_vector
) -> None:
    photo = _image(384, 384)
    ours = _hwc(transformer(_nchw(photo), predictor(_nchw(style_photo))))
    expected = _transform_ort(_session(model_dir / "arbitrary_transform.onnx"), photo, style_vector)
    max_diff, mean_diff = _diff(ours, expected)
    assert max_diff < QDQ_IMAGE_MAX and mean_diff < QDQ_IMAGE_MEAN, (max_diff, mean_diff)


def test_transformer_runs_at_other_sizes(transformer, model_dir, style_vector) -> None:
    path = model_dir / "arbitrary_transform.onnx"
    photo = _image(384, 512)
    out = transformer(_nchw(photo), torch.from_numpy(style_vector.reshape(1, 100)))
    assert out.shape == (1, 3, 384, 512)
    ours = _hwc(out)
    assert 0.0 <= ours.min() and ours.max() <= 1.0 and ours.std() > 0.05
    # exact against the float graph at the same size...
    max_diff, mean_diff = _diff(ours, _transform_ort(_float_session(path), photo, style_vector))
    assert max_diff < FLOAT_MAX and mean_diff < FLOAT_MEAN, (max_diff, mean_diff)
    # ...and loosely like the fixed-384 int8 graph used the way the original wrapper does:
    # fit the long side to 384, reflect-pad to 384x384, crop, scale the result back up
    small = _image(288, 384)
    padded = np.pad(small, ((0, 96), (0, 0), (0, 0)), mode="reflect")
    fixed = _transform_ort(_session(path), padded, style_vector)[:288]
    resized = transform.resize(fixed, (384, 512), order=1).astype(np.float32)
    assert _diff(ours, resized)[1] < RESIZED_MEAN
    # odd sizes are padded and cropped internally
    assert transformer(_nchw(_image(101, 67)), torch.from_numpy(style_vector.reshape(1, 100))).shape == (1, 3, 101, 67)


def test_transformer_batch_and_vector_shapes(transformer, style_vector) -> None:
    photos = torch.cat([_nchw(_image(64, 64)), _nchw(_image(64, 64, data.chelsea()))])
    vector = torch.from_numpy(style_vector.reshape(100))
    both = transformer(photos, vector)  # one vector for the whole batch
    single = transformer(photos[1:], vector)
    torch.testing.assert_close(both[1:], single, atol=FLOAT_MAX, rtol=0)
    with pytest.raises(ValueError, match="one style vector per image"):
        transformer(photos, torch.zeros(3, 100))
