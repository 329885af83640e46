"""The 26-style network (Dumoulin et al., "A Learned Representation for
Artistic Style"), re-implemented from ``multistyle26.onnx``, and the
image-transformation body it shares with the arbitrary-style transformer.

Body (both networks): reflect-pad + conv, conditional instance norm, ReLU::

    contract: 9x9/1 -> 3x3/2 -> 3x3/2
    residual: k x [conv-norm-relu, conv-norm] + skip
    expand:   up2 3x3 -> up2 3x3 -> 9x9, sigmoid

The two stride-2 convs and the two 2x upsamplings need sides that are
multiples of 4; ``forward`` reflect-pads the bottom/right up to that and crops
back (as the original wrapper did), so any side >= 8 px works.

Speed (CPU, where the worker mostly runs): activations stay in NHWC
(channels-last) memory, which oneDNN convolves ~1.4x faster than NCHW here;
each norm writes straight into the reflect-padded input buffer of the next
conv (no separate pad pass), except at full resolution where the padded copy
would be the largest allocation (see ``conv_reflect_nhwc``); instance-norm
statistics use chunked GEMM reductions instead of ``torch.var_mean`` (5-10x
slower on CPU). Activation ops run in place, so the forwards are no-grad.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..onnx_weights import OnnxGraph

EPS = 1e-5  # instance-norm epsilon of both exported graphs
SIZE_MULTIPLE = 4  # two stride-2 convs, two 2x upsamplings
MIN_SIDE = 8  # reflect padding of the 2-px-wide bottleneck needs >= 2 px there

Params = Sequence[tuple[Tensor, Tensor]]  # per normed layer: (scale [N,C], shift [N,C])


# -- NHWC building blocks ------------------------------------------------------
# Tensors named ``*_nhwc`` are plain contiguous [N, H, W, C]; convolutions see
# them through a permuted view, i.e. as channels-last NCHW.


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
    """Nearest 2x upsampling written straight into a reflect-padded buffer."""
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

    ``W'[(co, a, b), (r, s, ci), q, t] = W[co, ci, 2q + r - a, 2t + s - b]`` (zero
    where out of range): output pixel (2Y + a, 2X + b) reads input pixel
    (2(Y + q) + r, 2(X + t) + s). Four times the channels on a quarter of the
    pixels: convs with very few channels (the last 4 -> 3 one) vectorise
    badly, their space-to-depth form runs ~3x faster despite the zero taps.
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
    """Valid stride-1 conv of a pre-padded NHWC tensor (even sides) with a :func:`space_to_depth_weight`."""
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

    Runs the conv with zero padding, then recomputes only the output rows and
    columns whose window reaches the padding, from thin reflect-padded strips.
    Used where a padded copy would be the largest tensor of the network.
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
            # a single output line needs no stride across the strip (and CPU
            # bf16 convs return garbage for a k-wide input at stride > 1)
            strides = [stride, stride]
            if hi - lo == 1:
                strides[axis - 2] = 1
            fixed = F.conv2d(F.pad(strip, other, mode="reflect"), weight, bias, stride=strides)
            y.narrow(axis, lo, hi - lo).copy_(fixed)
    return y.permute(0, 2, 3, 1).contiguous()


_CHUNK = 1 << 20  # elements per partial sum: keeps temporaries in cache (and small)


def _column_sum(part: Tensor) -> Tensor:
    """Sum over axis 1 of [N, L, C] as [N, 1, C] (float32 in, float32 out)."""
    if part.shape[2] >= 16:
        # a [1 x L] @ [L x C] GEMM beats a reduction over the outer axis
        # of channels-last data several times over once C is wide enough
        return torch.bmm(part.new_ones(part.shape[0], 1, part.shape[1]), part)
    return part.sum(dim=1, keepdim=True)


def channel_moments(flat: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel mean and (biased) variance of [N, L, C], as float32 [N, 1, C].

    Two passes (mean, then squared deviations) as in the exported graph, so
    the variance stays exact when |mean| >> std. Both go in chunks: the
    deviations' temporary stays small, and half/bf16 activations are
    upcast chunk by chunk, never as a full float32 copy.
    """
    length = flat.shape[1]
    # chunks are for the CPU allocator; on CUDA they would only multiply kernel launches
    step = length if flat.is_cuda else max(1, _CHUNK // flat.shape[2])

    def chunks() -> Iterator[Tensor]:
        return (flat[:, i : i + step].float() for i in range(0, length, step))

    mean = sum(_column_sum(part) for part in chunks()).div_(length)
    var = sum(_column_sum((part - mean).square_()) for part in chunks()).div_(length)
    return mean, var


def modulated_instance_norm(
    x_nhwc: Tensor, scale: Tensor, shift: Tensor, relu: bool, out: Tensor | None = None, eps: float = EPS
) -> Tensor:
    """``relu?((x - mean) / sqrt(var + eps) * scale + shift)`` per sample and channel.

    ``scale``/``shift`` are float32 [N, C]. The result goes to ``out`` (e.g.
    the interior of the next conv's padded buffer) or, without it, over
    ``x_nhwc`` in place. Statistics are float32 whatever the activation dtype;
    the normalisation itself is one multiply-add ``x * a + b`` per element.
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
    """Reflect-pad the bottom/right of an NCHW tensor up to a multiple of ``multiple``."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    return F.pad(x, (0, pw, 0, ph), mode="reflect") if ph or pw else x


# -- the shared body -------------------------------------------------------------


class StyleNetBody(nn.Module):
    """contract -> residual -> expand, conditioned by per-layer (scale, shift).

    ``contract`` holds (weight, bias) pairs: with ``norm_contract`` the
    contracting convs are instance-normed like the rest (multi-style net),
    otherwise they are conv + bias + ReLU (the arbitrary-style transformer,
    whose batch norm there was folded into the bias). Convs followed by a norm
    take no bias: the mean subtraction would cancel it anyway.
    """

    def __init__(
        self,
        contract: Sequence[tuple[Tensor, Tensor | None]],
        residual: Sequence[tuple[Tensor, Tensor]],
        expand: Sequence[Tensor],
        norm_contract: bool,
    ):
        super().__init__()
        if len(contract) != 3 or len(expand) != 3 or not residual:
            raise ValueError("expected 3 contracting convs, >= 1 residual block and 3 expanding convs")
        self.norm_contract = norm_contract
        weights = [w for w, _ in contract] + [w for pair in residual for w in pair] + list(expand)
        for i, w in enumerate(weights):
            if w.shape[-1] != w.shape[-2] or w.shape[-1] % 2 != 1:
                raise ValueError(f"conv {i}: expected an odd square kernel, got {tuple(w.shape)}")
            # channels-last weights keep oneDNN on its NHWC kernels without reorders
            self.register_buffer(f"w{i}", w.float().contiguous(memory_format=torch.channels_last))
        # the last conv (few channels, full resolution) runs in space-to-depth form
        last = weights[-1].float()
        self.register_buffer("w_last_s2d", space_to_depth_weight(last).contiguous(memory_format=torch.channels_last))
        for i, (_, b) in enumerate(contract):
            self.register_buffer(f"b{i}", None if norm_contract or b is None else b.float())
        self.num_residual = len(residual)
        self.norm_channels: list[int] = [w.shape[0] for w in (weights if norm_contract else weights[3:])]

    def _weight(self, i: int) -> Tensor:
        return getattr(self, f"w{i}")

    def _pad(self, i: int) -> int:
        return self._weight(i).shape[-1] // 2

    def _activate(
        self,
        y: Tensor,
        params: Iterator[tuple[Tensor, Tensor]],
        normed: bool,
        relu: bool,
        pad: int,
        skip: Tensor | None = None,
    ) -> Tensor:
        """[norm] -> [relu] -> [+ skip] of a conv output, written into the next conv's reflect-padded
        input buffer (or in place when ``pad`` is 0). The norm consumes the next (scale, shift)."""
        buf, inner = padded_buffer(*y.shape, pad, y) if pad else (y, None)
        if normed:
            z = modulated_instance_norm(y, *next(params), relu=relu, out=inner)
        else:
            z = torch.clamp(y, min=0, out=y if inner is None else inner)  # bias is in the conv
        if skip is not None:
            z.add_(skip)
        return fill_reflect_border(buf, pad)

    @torch.no_grad()
    def forward(self, image: Tensor, params: Params) -> Tensor:
        n, _, h, w = image.shape
        if min(h, w) < MIN_SIDE:
            raise ValueError(f"image sides must be at least {MIN_SIDE} px, got {h}x{w}")
        if len(params) != len(self.norm_channels):
            raise ValueError(f"need {len(self.norm_channels)} (scale, shift) pairs, got {len(params)}")
        params = iter(params)
        normed = self.norm_contract
        x = pad_to_multiple(image.to(self.w0.dtype), SIZE_MULTIPLE)
        x = F.pad(x, (self._pad(0),) * 4, mode="reflect").permute(0, 2, 3, 1).contiguous()

        # contract. The first conv's full-resolution output is the widest tensor
        # of the network: it is activated in place, and the stride-2 conv after
        # it recomputes its borders instead of reading a padded copy.
        y = self._activate(conv_nhwc(x, self.w0, self.b0), params, normed, relu=True, pad=0)
        y = conv_reflect_nhwc(y, self.w1, self.b1, stride=2)
        x = self._activate(y, params, normed, relu=True, pad=self._pad(2))
        y = conv_nhwc(x, self.w2, self.b2, stride=2)
        x = self._activate(y, params, normed, relu=True, pad=self._pad(3))

        # residual blocks: ``x`` is the padded block input, ``skip`` its interior
        for k in range(self.num_residual):
            i, p = 3 + 2 * k, self._pad(3 + 2 * k)
            skip = x[:, p : x.shape[1] - p, p : x.shape[2] - p]
            y = self._activate(conv_nhwc(x, self._weight(i)), params, True, relu=True, pad=self._pad(i + 1))
            last = k == self.num_residual - 1  # the expand path upsamples before padding
            x = self._activate(
                conv_nhwc(y, self._weight(i + 1)),
                params,
                True,
                relu=False,
                pad=0 if last else self._pad(i + 2),
                skip=skip,
            )

        # expand: up2 + conv, up2 + conv, conv + sigmoid
        i = 3 + 2 * self.num_residual
        y = self._activate(
            conv_nhwc(upsample2x_padded(x, self._pad(i)), self._weight(i)), params, True, relu=True, pad=0
        )
        y = conv_nhwc(upsample2x_padded(y, self._pad(i + 1)), self._weight(i + 1))
        x = self._activate(y, params, True, relu=True, pad=self._pad(i + 2))
        y = self._activate(conv_space_to_depth_nhwc(x, self.w_last_s2d), params, True, relu=False, pad=0).sigmoid_()
        return y.permute(0, 3, 1, 2)[:, :, :h, :w]  # NCHW view (channels-last memory)


# -- the 26-style network --------------------------------------------------------


class MultiStyleNet(nn.Module):
    """Blendable 26-style transfer network.

    ``forward(image [N,3,H,W] in 0..1, style_weights [N,S] or [S]) -> [N,3,H,W] in 0..1``.
    Each image may have its own blend. The weights are used as given (the
    caller normalises them to sum to 1, as the original wrapper does).
    The output is an NCHW tensor in channels-last memory.
    """

    def __init__(self, body: StyleNetBody, gammas: Sequence[Tensor], betas: Sequence[Tensor]):
        super().__init__()
        if not body.norm_contract:
            raise ValueError("the multi-style network instance-normalises every layer")
        for c, g, b in zip(body.norm_channels, gammas, betas, strict=True):
            if g.shape != b.shape or g.shape[1] != c:
                raise ValueError(f"norm table {tuple(g.shape)} does not fit a conv with {c} outputs")
        self.body = body
        # All layers' [S, C] tables side by side: one matmul per forward blends
        # every layer's gamma and beta for the whole batch.
        self.register_buffer("norm_table", torch.cat([*gammas, *betas], dim=1).float())
        self._split = body.norm_channels * 2

    @property
    def num_styles(self) -> int:
        return self.norm_table.shape[0]

    def forward(self, image: Tensor, style_weights: Tensor) -> Tensor:
        n = image.shape[0]
        weights = style_weights.to(device=self.norm_table.device, dtype=torch.float32)
        if weights.dim() == 1:
            weights = weights.expand(n, -1)
        if weights.shape != (n, self.num_styles):
            raise ValueError(
                f"style_weights must be [{self.num_styles}] or [{n}, {self.num_styles}], "
                f"got {tuple(style_weights.shape)}"
            )
        # blend in float32 even when the module was cast to half/bf16
        mixed = torch.split(weights @ self.norm_table.float(), self._split, dim=1)
        half = len(mixed) // 2
        return self.body(image, list(zip(mixed[:half], mixed[half:])))

    @classmethod
    def from_onnx(cls, path: str | Path) -> MultiStyleNet:
        graph = OnnxGraph.load(path)
        blocks = 0
        while graph.is_constant(f"res.{blocks}.0.w"):
            blocks += 1
        names = [f"contract.{i}" for i in range(3)]
        names += [f"res.{k}.{j}" for k in range(blocks) for j in range(2)]
        names += [f"expand.{i}" for i in range(3)]
        w = [graph.tensor(f"{name}.w") for name in names]
        body = StyleNetBody(
            contract=[(t, None) for t in w[:3]],
            residual=list(zip(w[3:-3:2], w[4:-3:2])),
            expand=w[-3:],
            norm_contract=True,
        )
        gammas = [graph.tensor(f"{name}.norm.gamma") for name in names]
        betas = [graph.tensor(f"{name}.norm.beta") for name in names]
        return cls(body, gammas, betas).eval()
