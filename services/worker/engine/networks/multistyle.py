"""The 26-style network (Dumoulin et al., "A Learned Representation for Artistic Style"), re-implemented from
`multistyle26.onnx`: the shared body (`style_body.py`) with a per-style table of instance-norm scales and shifts.

Since #12 this module holds only that head; the NHWC kernels live in `nhwc.py` and the body, which the
arbitrary-style transformer shares, in `style_body.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from services.worker.engine.networks.style_body import StyleNetBody
from services.worker.engine.onnx_weights import OnnxGraph


class MultiStyleNet(nn.Module):
    """Blendable 26-style transfer network.

    `forward(image [N,3,H,W] in 0..1, style_weights [N,S] or [S]) -> [N,3,H,W] in 0..1`. Each image may have its
    own blend. The weights are used as given (the caller normalises them to sum to 1, as the original wrapper did).
    The output is an NCHW tensor in channels-last memory.
    """

    norm_table: Tensor

    def __init__(self, body: StyleNetBody, gammas: Sequence[Tensor], betas: Sequence[Tensor]) -> None:
        super().__init__()
        if not body.norm_contract:
            raise ValueError("the multi-style network instance-normalises every layer")
        for c, g, b in zip(body.norm_channels, gammas, betas, strict=True):
            if g.shape != b.shape or g.shape[1] != c:
                raise ValueError(f"norm table {tuple(g.shape)} does not fit a conv with {c} outputs")
        self.body = body
        # All layers' [S, C] tables side by side: one matmul per forward blends every layer's gamma and beta for
        # the whole batch.
        self.register_buffer("norm_table", torch.cat([*gammas, *betas], dim=1).float())
        self._split = body.norm_channels * 2

    @property
    def num_styles(self) -> int:
        return int(self.norm_table.shape[0])

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
        painted: Tensor = self.body(image, list(zip(mixed[:half], mixed[half:])))
        return painted

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
            residual=list(zip(w[3:-3:2], w[4:-3:2], strict=True)),
            expand=w[-3:],
            norm_contract=True,
        )
        gammas = [graph.tensor(f"{name}.norm.gamma") for name in names]
        betas = [graph.tensor(f"{name}.norm.beta") for name in names]
        return cls(body, gammas, betas).eval()
