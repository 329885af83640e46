"""Public-domain sample photos, read from the packages that ship them (never committed to this repo)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.cbook
import skimage


def _skimage_file(name: str) -> Path:
    return Path(skimage.__file__).parent / "data" / name


def astronaut_path() -> Path:
    """Eileen Collins, NASA portrait (512×512 PNG)."""
    return _skimage_file("astronaut.png")


def grace_hopper_path() -> Path:
    """Grace Hopper, US Navy portrait (JPEG)."""
    return Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


def coffee_path() -> Path:
    """A cup of coffee: no face."""
    return _skimage_file("coffee.png")


def chelsea_path() -> Path:
    """A cat: no human face."""
    return _skimage_file("chelsea.png")


def darkened(path: Path) -> bytes:
    """A synthetic dark-skinned sitter made from a packaged photo (#21): every pixel at half its CIELAB lightness,
    warmer and redder (L* ×0.5, a* +6, b* +4), as a PNG. The registries hold few dark-skinned faces."""
    import io

    import numpy as np
    import torch
    from PIL import Image

    from services.worker.engine.colour import lab_to_srgb, srgb_to_lab

    pixels = torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), np.float32) / 255).permute(2, 0, 1)[None]
    lab = srgb_to_lab(pixels)
    lab = torch.stack([lab[:, 0] * 0.5, lab[:, 1] + 6, lab[:, 2] + 4], 1)
    buffer = io.BytesIO()
    Image.fromarray((lab_to_srgb(lab)[0].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()
