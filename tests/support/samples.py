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
