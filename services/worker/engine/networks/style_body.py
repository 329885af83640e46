"""The image-transformation body shared by the 26-style network (`multistyle.py`) and the arbitrary-style
transformer (`arbitrary.py`): both graphs are Dumoulin et al.'s network, differing only in where each layer's
instance-norm scale and shift come from, so one implementation serves both (split out of `multistyle.py`, #12).

Reflect-pad + conv, conditional instance norm, ReLU:

    contract: 9x9/1 -> 3x3/2 -> 3x3/2
    residual: k x [conv-norm-relu, conv-norm] + skip
    expand:   up2 3x3 -> up2 3x3 -> 9x9, sigmoid

The two stride-2 convs and the two 2x upsamplings need sides that are multiples of 4; `forward` reflect-pads the
bottom/right up to that and crops back (as the original wrapper did), so any side >= 8 px works. Activations stay
NHWC throughout (see `nhwc.py` for why); each norm writes straight into the reflect-padded input buffer of the next
conv, except at full resolution where the padded copy would be the largest allocation.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from services.worker.engine.networks.nhwc import (
    conv_nhwc,
    conv_reflect_nhwc,
    conv_space_to_depth_nhwc,
    fill_reflect_border,
    modulated_instance_norm,
    pad_to_multiple,
    padded_buffer,
    space_to_depth_weight,
    upsample2x_padded,
)

EPS = 1e-5  # instance-norm epsilon of both exported graphs
SIZE_MULTIPLE = 4  # two stride-2 convs, two 2x upsamplings
MIN_SIDE = 8  # reflect padding of the 2-px-wide bottleneck needs >= 2 px there

NormParams = Sequence[tuple[Tensor, Tensor]]  # per normed layer: (scale [N,C], shift [N,C])


class StyleNetBody(nn.Module):
    """contract -> residual -> expand, conditioned by per-layer (scale, shift).

    `contract` holds (weight, bias) pairs: with `norm_contract` the contracting convs are instance-normed like the
    rest (multi-style net), otherwise they are conv + bias + ReLU (the arbitrary-style transformer, whose batch norm
    there was folded into the bias). Convs followed by a norm take no bias: the mean subtraction would cancel it.
    """

    w_last_s2d: Tensor

    def __init__(
        self,
        contract: Sequence[tuple[Tensor, Tensor | None]],
        residual: Sequence[tuple[Tensor, Tensor]],
        expand: Sequence[Tensor],
        norm_contract: bool,
    ) -> None:
        super().__init__()
        if len(contract) != 3 or len(expand) != 3 or not residual:
            raise ValueError("expected 3 contracting convs, >= 1 residual block and 3 expanding convs")
        self.norm_contract = norm_contract
        weights = [w for w, _ in contract] + [w for pair in residual for w in pair] + list(expand)
        for i, w in enumerate(weights):
            if w.shape[-1] != w.shape[-2] or w.shape[-1] % 2 != 1:
                raise ValueError(f"conv {i}: expected an odd square kernel, got {tuple(w.shape)}")
            # channels-last weights keep oneDNN on its NHWC kernels without reorders; buffers (not a list) so that
            # `.to()` and the state dict see them
            self.register_buffer(f"w{i}", w.float().contiguous(memory_format=torch.channels_last))
        # the last conv (few channels, full resolution) runs in space-to-depth form
        last = weights[-1].float()
        self.register_buffer("w_last_s2d", space_to_depth_weight(last).contiguous(memory_format=torch.channels_last))
        for i, (_, b) in enumerate(contract):
            self.register_buffer(f"b{i}", None if norm_contract or b is None else b.float())
        self.num_residual = len(residual)
        self.norm_channels: list[int] = [w.shape[0] for w in (weights if norm_contract else weights[3:])]

    def _weight(self, i: int) -> Tensor:
        weight: Tensor = getattr(self, f"w{i}")  # registered by number above; a Tensor by construction
        return weight

    def _bias(self, i: int) -> Tensor | None:
        bias: Tensor | None = getattr(self, f"b{i}")
        return bias

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
        """[norm] -> [relu] -> [+ skip] of a conv output, written into the next conv's reflect-padded input buffer
        (or in place when `pad` is 0). The norm consumes the next (scale, shift)."""
        inner: Tensor | None = None
        buf = y
        if pad:
            n, h, w, c = y.shape
            buf, inner = padded_buffer(n, h, w, c, pad, y)
        if normed:
            scale, shift = next(params)
            z = modulated_instance_norm(y, scale, shift, relu=relu, eps=EPS, out=inner)
        else:
            z = torch.clamp(y, min=0, out=y if inner is None else inner)  # bias is in the conv
        if skip is not None:
            z.add_(skip)
        return fill_reflect_border(buf, pad)

    @torch.no_grad()
    def forward(self, image: Tensor, params: NormParams) -> Tensor:
        n, _, h, w = image.shape
        if min(h, w) < MIN_SIDE:
            raise ValueError(f"image sides must be at least {MIN_SIDE} px, got {h}x{w}")
        if len(params) != len(self.norm_channels):
            raise ValueError(f"need {len(self.norm_channels)} (scale, shift) pairs, got {len(params)}")
        pairs = iter(params)
        normed = self.norm_contract
        x = pad_to_multiple(image.to(self._weight(0).dtype), SIZE_MULTIPLE)
        x = F.pad(x, (self._pad(0),) * 4, mode="reflect").permute(0, 2, 3, 1).contiguous()

        # contract. The first conv's full-resolution output is the widest tensor of the network: it is activated
        # in place, and the stride-2 conv after it recomputes its borders instead of reading a padded copy.
        y = self._activate(conv_nhwc(x, self._weight(0), self._bias(0)), pairs, normed, relu=True, pad=0)
        y = conv_reflect_nhwc(y, self._weight(1), self._bias(1), stride=2)
        x = self._activate(y, pairs, normed, relu=True, pad=self._pad(2))
        y = conv_nhwc(x, self._weight(2), self._bias(2), stride=2)
        x = self._activate(y, pairs, normed, relu=True, pad=self._pad(3))

        # residual blocks: `x` is the padded block input, `skip` its interior
        for k in range(self.num_residual):
            i, p = 3 + 2 * k, self._pad(3 + 2 * k)
            skip = x[:, p : x.shape[1] - p, p : x.shape[2] - p]
            y = self._activate(conv_nhwc(x, self._weight(i)), pairs, True, relu=True, pad=self._pad(i + 1))
            last = k == self.num_residual - 1  # the expand path upsamples before padding
            x = self._activate(
                conv_nhwc(y, self._weight(i + 1)),
                pairs,
                True,
                relu=False,
                pad=0 if last else self._pad(i + 2),
                skip=skip,
            )

        # expand: up2 + conv, up2 + conv, conv + sigmoid
        i = 3 + 2 * self.num_residual
        y = self._activate(
            conv_nhwc(upsample2x_padded(x, self._pad(i)), self._weight(i)), pairs, True, relu=True, pad=0
        )
        y = conv_nhwc(upsample2x_padded(y, self._pad(i + 1)), self._weight(i + 1))
        x = self._activate(y, pairs, True, relu=True, pad=self._pad(i + 2))
        y = self._activate(conv_space_to_depth_nhwc(x, self.w_last_s2d), pairs, True, relu=False, pad=0).sigmoid_()
        return y.permute(0, 3, 1, 2)[:, :, :h, :w]  # NCHW view (channels-last memory)
