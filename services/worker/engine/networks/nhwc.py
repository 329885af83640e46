"""Channels-last (NHWC) kernels for the style networks' body (`style_body.py`): fast on the CPU, exact to the graphs.

Split out of `multistyle.py` (#12); the numbers are unchanged. Why these exist at all (CPU, where the worker mostly
runs): oneDNN convolves NHWC activations ~1.4x faster than NCHW here; a norm can write straight into the
reflect-padded input buffer of the next conv, so no separate pad pass runs; instance-norm statistics as chunked
GEMM reductions beat `torch.var_mean` 5-10x on the CPU. Activation ops run in place, so callers are no-grad.

Tensors named `*_nhwc` are plain contiguous [N, H, W, C]; convolutions see them through a permuted view, i.e. as
channels-last NCHW.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import reduce

import torch
import torch.nn.functional as F
from torch import Tensor

_CHUNK = 1 << 20  # elements per partial sum: keeps temporaries in cache (and small)


def padded_buffer(n: int, h: int, w: int, c: int, pad: int, like: Tensor) -> tuple[Tensor, Tensor]:
    """An uninitialised [N, H+2p, W+2p, C] buffer and its [N, H, W, C] interior view."""
    buf = like.new_empty((n, h + 2 * pad, w + 2 * pad, c))
    return buf, buf[:, pad : pad + h, pad : pad + w]


def fill_reflect_border(buf: Tensor, pad: int) -> Tensor:
    """Fill a padded NHWC buffer's border by reflecting its interior (numpy/ONNX 'reflect')."""
    if pad == 0:
        return buf
    h, w = buf.shape[1] - 2 * pad, buf.shape[2] - 2 * pad
    inner = slice(pad, pad + w)
    # rows first (interior columns only), then full-height columns, so corners reflect both ways
    buf[:, :pad, inner] = buf[:, pad + 1 : 2 * pad + 1, inner].flip(1)
    buf[:, pad + h :, inner] = buf[:, h - 1 : h + pad - 1, inner].flip(1)
    buf[:, :, :pad] = buf[:, :, pad + 1 : 2 * pad + 1].flip(2)
    buf[:, :, pad + w :] = buf[:, :, w - 1 : w + pad - 1].flip(2)
    return buf


def upsample2x_padded(x_nhwc: Tensor, pad: int) -> Tensor:
    """Nearest 2x upsampling written straight into a reflect-padded buffer (no upsampled copy to pad afterwards)."""
    n, h, w, c = x_nhwc.shape
    buf, inner = padded_buffer(n, 2 * h, 2 * w, c, pad, x_nhwc)
    inner.view(n, h, 2, w, 2, c).copy_(x_nhwc[:, :, None, :, None, :].expand(n, h, 2, w, 2, c))
    return fill_reflect_border(buf, pad)


def conv_nhwc(x_nhwc: Tensor, weight: Tensor, bias: Tensor | None = None, stride: int = 1) -> Tensor:
    """Valid convolution of a (pre-padded) NHWC tensor; returns NHWC."""
    y = F.conv2d(x_nhwc.permute(0, 3, 1, 2), weight, bias, stride=stride)
    return y.permute(0, 2, 3, 1).contiguous()  # no copy when the backend kept channels-last


def space_to_depth_weight(weight: Tensor) -> Tensor:
    """Rewrite a stride-1 k x k conv as a conv over 2x2 space-to-depth input and output.

    `W'[(co, a, b), (r, s, ci), q, t] = W[co, ci, 2q + r - a, 2t + s - b]` (zero where out of range): output pixel
    (2Y + a, 2X + b) reads input pixel (2(Y + q) + r, 2(X + t) + s). Four times the channels on a quarter of the
    pixels: convs with very few channels (the last 4 -> 3 one) vectorise badly, and their space-to-depth form runs
    ~3x faster despite the zero taps.
    """
    co, ci, k, _ = weight.shape
    taps = (k + 2) // 2
    out = weight.new_zeros(co, 2, 2, 2, 2, ci, taps, taps)  # co, a, b, r, s, ci, q, t
    for a in range(2):
        for r in range(2):
            for q in range(taps):
                dy = 2 * q + r - a
                if not 0 <= dy < k:
                    continue
                for b in range(2):
                    for s in range(2):
                        for t in range(taps):
                            dx = 2 * t + s - b
                            if 0 <= dx < k:
                                out[:, a, b, r, s, :, q, t] = weight[:, :, dy, dx]
    return out.reshape(co * 4, ci * 4, taps, taps)


def conv_space_to_depth_nhwc(x_nhwc: Tensor, weight_s2d: Tensor) -> Tensor:
    """Valid stride-1 conv of a pre-padded NHWC tensor (even sides) with a `space_to_depth_weight`."""
    n, hp, wp, c = x_nhwc.shape
    x = x_nhwc.view(n, hp // 2, 2, wp // 2, 2, c).permute(0, 1, 3, 2, 4, 5).reshape(n, hp // 2, wp // 2, 4 * c)
    z = conv_nhwc(x, weight_s2d)
    h2, w2, co = z.shape[1], z.shape[2], z.shape[3] // 4
    return z.view(n, h2, w2, co, 2, 2).permute(0, 1, 4, 2, 5, 3).reshape(n, 2 * h2, 2 * w2, co)


def _reflect(index: Tensor, size: int) -> Tensor:
    index = index.abs()  # -i -> i
    return torch.where(index > size - 1, 2 * (size - 1) - index, index)


def conv_reflect_nhwc(x_nhwc: Tensor, weight: Tensor, bias: Tensor | None = None, stride: int = 1) -> Tensor:
    """Reflect-padded convolution of an unpadded NHWC tensor, without a padded copy.

    Runs the conv with zero padding, then recomputes only the output rows and columns whose window reaches the
    padding, from thin reflect-padded strips. Used where a padded copy would be the largest tensor of the network.
    """
    pad = weight.shape[-1] // 2
    x = x_nhwc.permute(0, 3, 1, 2)
    y = F.conv2d(x, weight, bias, stride=stride, padding=pad)
    for axis in (2, 3):  # rows (over the full padded width), then columns (full height)
        size, out_size = x.shape[axis], y.shape[axis]
        first_inside = min(out_size, -(-pad // stride))  # outputs before it start above the image
        first_beyond = max(first_inside, min(out_size, (size - 1 - pad) // stride + 1))  # ... end below it
        for lo, hi in ((0, first_inside), (first_beyond, out_size)):
            if lo >= hi:
                continue
            index = _reflect(torch.arange(lo * stride - pad, (hi - 1) * stride + pad + 1, device=x.device), size)
            strip = x.index_select(axis, index)
            other = (pad, pad, 0, 0) if axis == 2 else (0, 0, pad, pad)
            # a single output line needs no stride across the strip (and CPU bf16 convs return garbage for a
            # k-wide input at stride > 1)
            strides = [stride, stride]
            if hi - lo == 1:
                strides[axis - 2] = 1
            fixed = F.conv2d(F.pad(strip, other, mode="reflect"), weight, bias, stride=strides)
            y.narrow(axis, lo, hi - lo).copy_(fixed)
    return y.permute(0, 2, 3, 1).contiguous()


def _column_sum(part: Tensor) -> Tensor:
    """Sum over axis 1 of [N, L, C] as [N, 1, C] (float32 in, float32 out)."""
    if part.shape[2] >= 16:
        # a [1 x L] @ [L x C] GEMM beats a reduction over the outer axis of channels-last data several times over
        # once C is wide enough
        return torch.bmm(part.new_ones(part.shape[0], 1, part.shape[1]), part)
    return part.sum(dim=1, keepdim=True)


def channel_moments(flat: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel mean and (biased) variance of [N, L, C], as float32 [N, 1, C].

    Two passes (mean, then squared deviations) as in the exported graph, so the variance stays exact when
    |mean| >> std. Both go in chunks: the deviations' temporary stays small, and half/bf16 activations are upcast
    chunk by chunk, never as a full float32 copy.
    """
    length = flat.shape[1]
    # chunks are for the CPU allocator; on CUDA they would only multiply kernel launches
    step = length if flat.is_cuda else max(1, _CHUNK // flat.shape[2])

    def chunks() -> Iterator[Tensor]:
        return (flat[:, i : i + step].float() for i in range(0, length, step))

    # reduce, not sum(): the same additions in the same order (sum's 0 + first is exact), typed as a Tensor
    mean = reduce(torch.add, (_column_sum(part) for part in chunks())).div_(length)
    var = reduce(torch.add, (_column_sum((part - mean).square_()) for part in chunks())).div_(length)
    return mean, var


def modulated_instance_norm(
    x_nhwc: Tensor, scale: Tensor, shift: Tensor, relu: bool, eps: float, out: Tensor | None = None
) -> Tensor:
    """`relu?((x - mean) / sqrt(var + eps) * scale + shift)` per sample and channel.

    `scale`/`shift` are float32 [N, C]. The result goes to `out` (e.g. the interior of the next conv's padded
    buffer) or, without it, over `x_nhwc` in place. Statistics are float32 whatever the activation dtype; the
    normalisation itself is one multiply-add `x * a + b` per element.
    """
    n, h, w, c = x_nhwc.shape
    mean, var = channel_moments(x_nhwc.view(n, h * w, c))
    a = scale.view(n, 1, c) * torch.rsqrt(var.add_(eps))
    b = shift.view(n, 1, c) - mean * a
    a = a.to(x_nhwc.dtype).view(n, 1, 1, c)
    b = b.to(x_nhwc.dtype).view(n, 1, 1, c)
    y = torch.addcmul(b, x_nhwc, a, out=x_nhwc if out is None else out)
    return y.relu_() if relu else y


def pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """Reflect-pad the bottom/right of an NCHW tensor up to a multiple of `multiple`."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    return F.pad(x, (0, pw, 0, ph), mode="reflect") if ph or pw else x
