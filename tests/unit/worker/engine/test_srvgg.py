"""Our torch Real-ESRGAN networks built from ncnn files, checked against ncnn itself (PyPI `ncnn`, CPU).

ncnn runs in float32 (fp16/bf16 storage and arithmetic switched off) on the very same weights (the fp16
values of the .bin, widened exactly), so both sides compute the same function up to float32 rounding and
convolution algorithm choice (ncnn uses Winograd/GEMM, PyTorch oneDNN).

Measured on the test inputs (a real photo crop and its flipped copy), outputs in about 0..1:
* SRVGGNetCompact x2 / x3 / x4 at 48×56: max 2.6e-6 / 6.1e-6 / 3.0e-6, mean ≤ 2.1e-7 (x3 is a little
  higher: its 0.75 bicubic resize has inexact coefficients, computed in a different order); on a
  whole 181×256 photo the 8-bit outputs differ by at most 1 level in ~1e-5 of the pixels.
* RRDBNet (x4plus, 23 blocks) at 16×20: max 5.4e-6, mean 3.1e-7.
Tolerances (PARITY_MAX/MEAN) sit about 6× above the worst of these.
"""

from __future__ import annotations

import functools
import shutil
import struct
from pathlib import Path

import ncnn
import numpy as np
import pytest
import torch
from skimage import data, transform

from services.worker.engine.ncnn_weights import TAG_FP16, TAG_FP32, TAG_INT8, NcnnParam, read_weights
from services.worker.engine.networks.rrdbnet import RRDBNet
from services.worker.engine.networks.srvgg import SRVGGNetCompact
from shared.errors import ModelFilesError

PARITY_MAX, PARITY_MEAN = 5e-5, 2e-6
SRVGG_MODELS = {2: "realesr-animevideov3-x2", 3: "realesr-animevideov3-x3", 4: "realesr-animevideov3-x4"}
RRDB_MODEL = "realesrgan-x4plus"


@pytest.fixture(scope="module")
def sr_model_dir(model_dir: Path) -> Path:
    """The prepared model directory: the ncnn files under the wheel's names (`realesr-animevideov3-x2.param`…)."""
    return model_dir


def _files(model_dir: Path, name: str) -> tuple[Path, Path]:
    return model_dir / f"{name}.param", model_dir / f"{name}.bin"


@functools.lru_cache(maxsize=4)
def _ncnn_net(param: Path, weights: Path) -> ncnn.Net:
    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    for option in ("use_fp16_storage", "use_fp16_packed", "use_fp16_arithmetic", "use_bf16_storage"):
        setattr(net.opt, option, False)  # a float32 reference
    net.opt.num_threads = 2
    assert net.load_param(str(param)) == 0 and net.load_model(str(weights)) == 0
    return net


def _ncnn_run(files: tuple[Path, Path], chw: np.ndarray) -> np.ndarray:
    # ncnn.Mat(array) wraps the array's memory without holding a reference: keep the array alive and
    # clone, or it can be freed before extract() runs and the output is garbage.
    array = np.ascontiguousarray(chw, dtype=np.float32)
    mat = ncnn.Mat(array).clone()
    extractor = _ncnn_net(*files).create_extractor()
    extractor.input("data", mat)
    ret, out = extractor.extract("output")
    assert ret == 0
    return np.array(out)


def _photo(height: int, width: int) -> np.ndarray:
    """A real photo (the astronaut's face) as float32 3×H×W in 0..1."""
    crop = data.astronaut()[30:250, 140:360]
    return transform.resize(crop, (height, width), anti_aliasing=True).astype(np.float32).transpose(2, 0, 1)


def _diff(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    assert a.shape == b.shape
    d = np.abs(a.astype(np.float64) - b.astype(np.float64))
    return float(d.max()), float(d.mean())


# -- networks vs ncnn -----------------------------------------------------------------


@pytest.mark.parametrize("scale", sorted(SRVGG_MODELS))
def test_srvgg_matches_ncnn(sr_model_dir: Path, scale: int) -> None:
    files = _files(sr_model_dir, SRVGG_MODELS[scale])
    net = SRVGGNetCompact.from_ncnn(*files)
    # the files are all one x4 net; x2/x3 add a bicubic downscale
    assert (net.upscale, net.scale, len(net.body)) == (4, scale, 35)
    photo = _photo(48, 56)
    batch = np.stack([photo, photo[:, ::-1, ::-1]])  # a batch of two different images
    with torch.inference_mode():
        ours = net(torch.from_numpy(batch.copy())).numpy()
    assert ours.shape == (2, 3, 48 * scale, 56 * scale)
    for image, out in zip(batch, ours):
        max_diff, mean_diff = _diff(out, _ncnn_run(files, image))
        assert max_diff < PARITY_MAX and mean_diff < PARITY_MEAN, (max_diff, mean_diff)


def test_rrdbnet_matches_ncnn(sr_model_dir: Path) -> None:
    files = _files(sr_model_dir, RRDB_MODEL)
    net = RRDBNet.from_ncnn(*files)
    assert len(net.body) == 23 and sum(p.numel() for p in net.parameters()) == 16_697_987
    photo = _photo(16, 20)  # ~0.2 s on a CPU; a 256 px image takes tens of seconds
    with torch.inference_mode():
        ours = net(torch.from_numpy(photo)[None])[0].numpy()
    max_diff, mean_diff = _diff(ours, _ncnn_run(files, photo))
    assert max_diff < PARITY_MAX and mean_diff < PARITY_MEAN, (max_diff, mean_diff)


def test_srvgg_shapes_batching_and_determinism(sr_model_dir: Path) -> None:
    net = SRVGGNetCompact.from_ncnn(*_files(sr_model_dir, SRVGG_MODELS[3]))
    x = torch.rand(3, 3, 13, 17, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        first, again, single = net(x), net(x), net(x[1:2])
    assert first.shape == (3, 3, 39, 51) and first.dtype == torch.float32
    assert torch.equal(first, again)
    # batch size changes convolution blocking, not results beyond float rounding
    torch.testing.assert_close(single, first[1:2], atol=1e-5, rtol=0)
    # the output is not clamped: overshoot around edges is left to the caller
    assert first.min() < 0 or first.max() > 1


def test_srvgg_channels_last_and_half_precision(sr_model_dir: Path) -> None:
    # the GPU setting (fp16, channels_last), checked for plumbing on the CPU
    net = SRVGGNetCompact.from_ncnn(*_files(sr_model_dir, SRVGG_MODELS[2]))
    x = torch.from_numpy(_photo(24, 20))[None]
    with torch.inference_mode():
        reference = net(x)
        # Module.to takes memory_format (torch documents it; its stubs leave it out)
        net = net.half().to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        half = net(x.half().contiguous(memory_format=torch.channels_last))
    assert half.dtype == torch.float16 and half.shape == reference.shape
    assert (half.float() - reference).abs().max() < 0.02  # measured 0.0024


# -- file errors ---------------------------------------------------------------------


def test_truncated_or_padded_bin_is_a_clear_error(sr_model_dir: Path, tmp_path: Path) -> None:
    param, weights = _files(sr_model_dir, SRVGG_MODELS[4])
    blob = weights.read_bytes()
    shutil.copy(param, tmp_path / "m.param")
    (tmp_path / "m.bin").write_bytes(blob[:-10])
    with pytest.raises(ModelFilesError, match="truncated"):
        SRVGGNetCompact.from_ncnn(tmp_path / "m.param", tmp_path / "m.bin")
    (tmp_path / "m.bin").write_bytes(blob + b"\0" * 8)
    with pytest.raises(ModelFilesError, match="left over"):
        SRVGGNetCompact.from_ncnn(tmp_path / "m.param", tmp_path / "m.bin")
    with pytest.raises(ModelFilesError, match="cannot read"):
        SRVGGNetCompact.from_ncnn(tmp_path / "m.param", tmp_path / "missing.bin")


def test_malformed_param_and_wrong_network_are_clear_errors(sr_model_dir: Path, tmp_path: Path) -> None:
    param, weights = _files(sr_model_dir, SRVGG_MODELS[2])
    text = param.read_text()
    cases = {
        "magic": text.replace("7767517", "7767518", 1),
        "header says": text.replace("41 42", "42 42", 1),
        "malformed": text.replace("0=64 1=3", "0=64 1=3 x=1", 1),
    }
    for message, bad in cases.items():
        (tmp_path / "bad.param").write_text(bad)
        with pytest.raises(ModelFilesError, match=message):
            SRVGGNetCompact.from_ncnn(tmp_path / "bad.param", weights)
    with pytest.raises(ModelFilesError, match="not an RRDBNet"):
        RRDBNet.from_ncnn(param, weights)
    with pytest.raises(ModelFilesError, match="not an SRVGGNetCompact"):
        SRVGGNetCompact.from_ncnn(*_files(sr_model_dir, RRDB_MODEL))


# -- the .param/.bin format ----------------------------------------------------------------

_TINY_PARAM = """7767517
4 4
Input            in    0 1 data
Convolution      conv  1 1 data a 0=1 1=1 5=1 6=3 9=2 -23310=1,2.000000e-01
PReLU            act   1 1 a b 0=2
Eltwise          add   2 1 b data c 0=1 -23301=2,0.5,1
"""


def test_param_parser_reads_ints_floats_and_arrays() -> None:
    param = NcnnParam.parse(_TINY_PARAM)
    assert [layer.type for layer in param.layers] == ["Input", "Convolution", "PReLU", "Eltwise"]
    conv = param.layers[1]
    assert (conv.inputs, conv.outputs) == (("data",), ("a",))
    assert (conv.get_int(0), conv.get_int(6), conv.get_int(3, 1), conv.get_array(10)) == (1, 3, 1, (0.2,))
    assert param.layers[3].get_array(1) == (0.5, 1)
    assert param.producer("b").name == "act" and param.blob_count == 4


@pytest.mark.parametrize("tag", [TAG_FP16, TAG_FP32, 0])
def test_bin_reader_tags(tmp_path: Path, tag: int) -> None:
    weight, bias, slope = (np.array(v, np.float32) for v in ([1.5, -2.25, 0.125], [3.0], [0.1, 0.2]))
    if tag == TAG_FP16:
        payload = weight.astype("<f2").tobytes() + b"\0\0"  # 3 halves padded to 8 bytes
    else:
        payload = weight.astype("<f4").tobytes()
    (tmp_path / "m.bin").write_bytes(struct.pack("<I", tag) + payload + bias.tobytes() + slope.tobytes())
    weights = read_weights(NcnnParam.parse(_TINY_PARAM), tmp_path / "m.bin")
    assert list(weights) == ["conv", "act"]
    np.testing.assert_array_equal(weights["conv"][0], weight)
    np.testing.assert_array_equal(weights["conv"][1], bias)
    np.testing.assert_array_equal(weights["act"][0], slope)
    assert all(a.dtype == np.float32 for arrays in weights.values() for a in arrays)


@pytest.mark.parametrize("tag, message", [(TAG_INT8, "int8"), (0x12345678, "unknown")])
def test_bin_reader_rejects_other_storage(tmp_path: Path, tag: int, message: str) -> None:
    (tmp_path / "m.bin").write_bytes(struct.pack("<I", tag) + b"\0" * 64)
    with pytest.raises(ModelFilesError, match=message):
        read_weights(NcnnParam.parse(_TINY_PARAM), tmp_path / "m.bin")
