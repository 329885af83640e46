"""Where and how the networks run: device, precision and memory layout, resolved once from the engine's config."""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import nn

from services.worker.engine.config import RuntimeConfig
from shared.errors import JobErrorCode, PortraitError

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # mallopt parameters from glibc's malloc.h
_PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
_Module = TypeVar("_Module", bound=nn.Module)


class RuntimeUnavailable(PortraitError):
    """The configured device cannot be used; we refuse rather than silently run elsewhere."""

    code = JobErrorCode.DEVICE_UNAVAILABLE


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    dtype: torch.dtype  # generator precision; detection and encoding stay in float32
    channels_last: bool

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    def to_input(self, images: torch.Tensor) -> torch.Tensor:
        """Move an N×3×H×W float batch onto the device in the generator's dtype and layout."""
        images = images.to(self.device, self.dtype, non_blocking=True)
        return images.contiguous(memory_format=torch.channels_last) if self.channels_last else images

    def prepare(self, module: _Module) -> _Module:
        """A network moved to the device in the generator's dtype and layout, in eval mode."""
        module = module.to(self.device, self.dtype).eval()
        if self.channels_last:
            # Module.to takes memory_format (torch documents it; its stubs leave it out)
            module = module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        return module

    def synchronize(self) -> None:
        """Wait for queued GPU work, so stage timings measure the work and not its launch."""
        if self.is_cuda:
            torch.cuda.synchronize(self.device)


def _keep_large_allocations() -> None:
    """Stop glibc returning big blocks to the OS after every call.

    By default each activation over 32 MiB is mmap-ed fresh and page-faulted on every forward (7–9 ms per
    32 MB tensor at 512 px), which is what onnxruntime's arena avoids; this is our arena. The price: the
    process keeps its peak memory. No-op where libc is not glibc.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.mallopt(_M_MMAP_MAX, 0)
    libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30)


def resolve_runtime(config: RuntimeConfig) -> Runtime:
    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)
    wants_cuda = config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available())
    if wants_cuda and not torch.cuda.is_available():
        raise RuntimeUnavailable("PORTRAITS_DEVICE=cuda but torch sees no CUDA device")
    device = torch.device("cuda" if wants_cuda else "cpu")
    precision = config.precision
    if precision == "auto":
        precision = "fp16" if wants_cuda else "fp32"
    if not wants_cuda and precision == "fp16":
        raise RuntimeUnavailable("fp16 is for CUDA; use fp32 (or bf16) on the CPU")
    if not wants_cuda:
        _keep_large_allocations()
    # channels_last makes cuDNN pick its fast NHWC convolutions; on the CPU the style networks already keep
    # their activations NHWC internally (oneDNN is ~1.4x faster that way), so inputs need no conversion.
    return Runtime(device=device, dtype=_PRECISIONS[precision], channels_last=wants_cuda)


@contextmanager
def inference() -> Iterator[None]:
    with torch.inference_mode():
        yield
