"""dlib's serialization format: the primitives, a small network written the way dlib writes one, and refusals."""

from __future__ import annotations

import math

import numpy as np
import pytest

from services.worker.engine.dlib_weights import (
    AddPrev,
    Conv,
    DlibFormatError,
    DlibReader,
    FullyConnected,
    InputRgbImage,
    LossMetric,
    Pool,
    Relu,
    Tag,
    load_network,
    read_network,
)
from services.worker.engine.networks.face_recognizer import SPEC
from services.worker.engine.recognizer import MODEL_FILE

# --- a writer for dlib's format (dlib/serialize.h, dlib/cuda/tensor.h), for the tests only ---


def _int(value: int) -> bytes:
    magnitude = abs(value)
    size = max(1, (magnitude.bit_length() + 7) // 8)
    return bytes([size | (0x80 if value < 0 else 0)]) + magnitude.to_bytes(size, "little")


def _str(text: str) -> bytes:
    return _int(len(text)) + text.encode()


def _real(value: float) -> bytes:
    mantissa, exponent = math.frexp(value)  # dlib's float_details: an integer mantissa and a power of two
    return _int(int(mantissa * 2**53)) + _int(exponent - 53)


def _tensor(array: np.ndarray) -> bytes:
    shape = array.shape + (1,) * (4 - array.ndim)
    return _int(2) + b"".join(_int(s) for s in shape) + array.astype("<f4").tobytes()


def _alias(*shape: int) -> bytes:
    return _int(1) + b"".join(_int(s) for s in shape)


def _bookkeeping() -> bytes:
    empty = _tensor(np.zeros((0, 0, 0, 0), np.float32))
    return b"110" + empty * 3


RNG = np.random.default_rng(0)
FILTERS = RNG.normal(size=(4, 3, 3, 3)).astype(np.float32)
BIASES = RNG.normal(size=4).astype(np.float32)
FC = RNG.normal(size=(4, 2)).astype(np.float32)  # dlib's layout: inputs × outputs
SMALL_SPEC = ("loss_metric", "fc", "avg_pool", "add_prev1", "relu", "tag1", "con", "input_rgb_image_sized")


def _con() -> bytes:
    params = np.concatenate([FILTERS.ravel(), BIASES])
    return (
        _str("con_4")
        + _tensor(params)
        + _int(4)
        + _int(3)
        + _int(3)
        + _int(1)
        + _int(1)
        + _int(1)
        + _int(1)
        + _alias(4, 3, 3, 3)
        + _alias(1, 4, 1, 1)
        + _real(1.0) * 2
        + _real(1.0)
        + _real(0.0)
    )


def _small_network(*, con: bytes | None = None, relu_version: int = 2) -> bytes:
    """loss_metric<fc_no_bias<2, avg_pool_everything<add_prev1<relu<tag1<con<4,3,3,1,1,input<8>>>>>>>>."""
    headers = (
        _int(1)
        + _str("loss_metric_2")
        + _real(0.04)
        + _real(0.6)
        + _int(2)  # fc
        + _int(2)  # avg_pool
        + _int(2)  # add_prev1
        + _int(relu_version)
        + _int(1)  # tag1
        + _int(2)  # con, right above the input
    )
    network = headers + _str("input_rgb_image_sized") + _real(122.5) + _real(117.0) + _real(104.25)
    network += _int(8) + _int(8)
    network += (con if con is not None else _con()) + _bookkeeping()  # x_grad, cached_output, grad_final
    network += _str("relu_") + _bookkeeping()
    network += _str("add_prev_") + _bookkeeping()
    network += _str("avg_pool_2") + _int(0) * 2 + _int(1) * 2 + _int(0) * 2 + _bookkeeping()
    fc = _str("fc_2") + _int(2) + _int(4) + _tensor(FC.ravel()) + _alias(4, 2, 1, 1) + _alias(0, 0, 0, 0)
    network += fc + _int(1) + _real(1.0) * 4 + _bookkeeping()
    return network


# --- primitives ---


@pytest.mark.parametrize("value", [0, 1, 127, 255, 256, -1, -300, 2**40, -(2**63) + 1])
def test_integers_read_as_dlib_writes_them(value):
    reader = DlibReader(_int(value) + b"tail")
    assert reader.integer() == value
    assert reader.position == len(_int(value))


def test_integers_refuse_bad_control_bytes_and_a_sign_on_an_unsigned_value():
    with pytest.raises(DlibFormatError, match="control byte"):
        DlibReader(b"\x11\x00").integer()
    with pytest.raises(DlibFormatError, match="control byte"):
        DlibReader(b"\x09" + b"\x00" * 9).integer()  # more than 8 bytes
    with pytest.raises(DlibFormatError, match="control byte"):
        DlibReader(_int(-5)).integer(signed=False)
    with pytest.raises(DlibFormatError, match="ends inside"):
        DlibReader(b"\x02\x01").integer()


def test_bools_strings_and_floats():
    reader = DlibReader(b"10" + _str("con_4") + _real(0.6) + _real(-3.25) + _int(7) + _int(32000))
    assert reader.boolean() is True and reader.boolean() is False
    assert reader.string() == "con_4"
    assert reader.real() == 0.6 and reader.real() == -3.25
    assert reader.real() == math.inf
    reader.at_end()
    with pytest.raises(DlibFormatError, match="'0' or '1'"):
        DlibReader(b"x").boolean()
    with pytest.raises(DlibFormatError, match="old text float"):
        DlibReader(b"0.6 ").real()


def test_float_bytes_from_a_real_file_decode():
    # loss_metric_2's dist_thresh as dlib wrote it: mantissa 0x99999a, exponent -24 → 0.6 (as a float32)
    assert DlibReader(b"\x03\x9a\x99\x99\x81\x18").real() == pytest.approx(0.6, abs=1e-7)


def test_tensors_and_alias_tensors():
    array = np.arange(6, dtype=np.float32).reshape(1, 2, 3, 1)
    reader = DlibReader(_tensor(array) + _alias(1, 2, 3, 1))
    assert np.array_equal(reader.tensor(), array)
    assert reader.alias() == (1, 2, 3, 1)
    with pytest.raises(DlibFormatError, match="version 1, expected 2"):
        DlibReader(_int(1) + _int(0) * 4).tensor()
    with pytest.raises(DlibFormatError, match="ends inside"):
        DlibReader(_tensor(array)[:-1]).tensor()


# --- networks ---


def test_a_small_network_parses_in_forward_order():
    layers = read_network(_small_network(), SMALL_SPEC, source="small.dat")
    kinds = [type(layer) for layer in layers]
    assert kinds == [InputRgbImage, Conv, Tag, Relu, AddPrev, Pool, FullyConnected, LossMetric]
    given, conv, tag, _, add, pool, fc, loss = layers
    assert isinstance(given, InputRgbImage) and given.mean == (122.5, 117.0, 104.25) and given.rows == 8
    assert isinstance(conv, Conv) and np.array_equal(conv.weight, FILTERS) and np.array_equal(conv.bias, BIASES)
    assert conv.stride == (1, 1) and conv.padding == (1, 1)
    assert isinstance(tag, Tag) and tag.id == 1 and isinstance(add, AddPrev) and add.tag == 1
    assert isinstance(pool, Pool) and (pool.kind, pool.size) == ("avg", (0, 0))
    assert isinstance(fc, FullyConnected) and fc.bias is None and np.array_equal(fc.weight, FC.T)
    assert isinstance(loss, LossMetric) and loss.distance_threshold == 0.6


def test_an_unknown_layer_is_refused_naming_the_file():
    other = _con().replace(_str("con_4"), _str("bn_con2"), 1)
    with pytest.raises(DlibFormatError, match=r"small\.dat: expected layer 'con_4', found 'bn_con2'"):
        read_network(_small_network(con=other), SMALL_SPEC, source="small.dat")


def test_corrupt_streams_are_refused():
    good = _small_network()
    with pytest.raises(DlibFormatError, match="version 7"):
        read_network(_small_network(relu_version=7), SMALL_SPEC, source="small.dat")
    with pytest.raises(DlibFormatError, match="ends inside"):
        read_network(good[:-5], SMALL_SPEC, source="small.dat")
    with pytest.raises(DlibFormatError, match="unexpected bytes"):
        read_network(good + b"\x00", SMALL_SPEC, source="small.dat")
    # a filter view that does not fit the parameter tensor
    bad_view = _con().replace(_alias(4, 3, 3, 3), _alias(4, 3, 3, 2), 1)
    with pytest.raises(DlibFormatError, match="filter views"):
        read_network(_small_network(con=bad_view), SMALL_SPEC, source="small.dat")


def test_a_spec_must_end_with_its_input():
    with pytest.raises(ValueError, match="not supported"):
        read_network(b"", ("loss_metric", "fc"))


def test_the_shipped_model_parses_and_a_damaged_copy_fails_naming_it(model_dir, tmp_path):
    layers = load_network(model_dir / MODEL_FILE, SPEC)
    assert sum(isinstance(layer, Conv) for layer in layers) == 29
    assert sum(isinstance(layer, AddPrev) for layer in layers) == 14
    data = (model_dir / MODEL_FILE).read_bytes()
    damaged = tmp_path / MODEL_FILE
    damaged.write_bytes(data.replace(b"max_pool_2", b"max_pool_3", 1))
    with pytest.raises(DlibFormatError, match=rf"{MODEL_FILE}: expected layer 'max_pool_2'"):
        load_network(damaged, SPEC)
