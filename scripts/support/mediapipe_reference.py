"""Google MediaPipe's own face stylizer, run as a reference for our torch port (in its own venv).

mediapipe 0.10.21 is the last release with the FaceStylizer task and needs numpy<2, so it cannot live in the
project's .venv. `mediapipe_python()` builds `var/mediapipe-venv` once (11 s on the dev box, with or without
pip's cache; 36 MB mediapipe wheel, 174 MB venv) and `run_reference()` runs `mediapipe_child.py` there in a subprocess,
exchanging .npz files. Nothing here imports mediapipe.

What MediaPipe does (0.10.21, mediapipe/tasks/cc/vision/face_stylizer/face_stylizer_graph.cc):

* FaceLandmarkerGraph (BlazeFace short-range detector + 478-point face mesh, one face) on the photo.
* FaceToRectCalculator on the mesh's eye corners (33+133 → left eye, 263+362 → right eye) and mouth
  corners (61+291): eye_to_eye = right - left, eye_to_mouth = mouth - (left + right)/2,
  centre = round(eye_centre + 0.1·eye_to_mouth), side = round(max(3.6·|eye_to_mouth|, 4.0·|eye_to_eye|)),
  rotation = atan2 of (eye_to_eye - rot90(eye_to_mouth)) — the FFHQ recipe.
* ImageToTensorCalculator: warpPerspective of the uint8 photo onto 256×256 (INTER_LINEAR, zero border),
  then ·(2/255) - 1 into the model. FaceAligner (same graph, alignment output) returns exactly that crop.
* face_stylizer.tflite ((tanh + 1) / 2 in the model) → TensorsToImage with range [0, 1], i.e.
  round(255·v) → uint8 256×256 of the face crop only (not pasted back into the photo).
* The model samples StyleGAN noise on every call (11 RANDOM_STANDARD_NORMAL ops), so its output is not
  reproducible: repeated calls differ by a mean of 0.1–0.6 levels, up to 10–26.
* Its 39 encoder BatchNorms are MediaPipe's custom FusedBatchNormV3 with is_training=True, and that
  kernel (tasks/cc/vision/custom_ops/fused_batch_norm.cc) always normalises by the input's own per-channel
  H×W mean and biased variance (eps 1e-3): instance norm at batch 1; the stored moving stats are unused.

The helpers here are for tests and investigations; they need the .task files and pip access to PyPI.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_DIR = REPO_ROOT / "var" / "mediapipe-venv"
CHILD_SCRIPT = Path(__file__).resolve().with_name("mediapipe_child.py")

# Exactly what the tasks API imports (found by installing with --no-deps and importing): mediapipe's other
# declared requirements (jax, jaxlib, matplotlib, opencv-contrib-python, sounddevice, sentencepiece) are
# not needed for the vision tasks; the child stubs the cv2/matplotlib imports of mediapipe's drawing utils.
REQUIREMENTS = (
    "mediapipe==0.10.21",
    "numpy==1.26.4",
    "protobuf==4.25.9",
    "attrs==25.3.0",
)
_STAMP = VENV_DIR / ".reference-ready.json"
_LOCK = VENV_DIR.with_name("mediapipe-venv.lock")
MODES = ("stylize", "align", "bench")


def _log(message: str) -> None:
    print(f"[mediapipe-reference] {message}", file=sys.stderr, flush=True)


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _stamp_content() -> dict[str, Any]:
    return {"requirements": list(REQUIREMENTS), "python": sys.version.split()[0]}


def _ready() -> bool:
    try:
        stamp = json.loads(_STAMP.read_text())
    except (OSError, ValueError):
        return False
    return stamp == _stamp_content() and _venv_python(VENV_DIR).exists()


def mediapipe_python() -> Path:
    """The python of `var/mediapipe-venv`, creating the venv first if it is missing, stale or half-built."""
    if _ready():
        return _venv_python(VENV_DIR)
    VENV_DIR.parent.mkdir(parents=True, exist_ok=True)
    with open(_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one builder at a time (e.g. parallel test workers)
        if _ready():
            return _venv_python(VENV_DIR)
        start = time.monotonic()
        if VENV_DIR.exists():
            _log(f"removing incomplete or outdated {VENV_DIR}")
            shutil.rmtree(VENV_DIR)
        _log(f"creating {VENV_DIR} with {sys.executable} -m venv")
        subprocess.run([sys.executable, "-m", "venv", str(VENV_DIR)], check=True)
        python = _venv_python(VENV_DIR)
        _log("installing " + " ".join(REQUIREMENTS) + " (--no-deps; this takes a minute)")
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--no-deps",
                "--only-binary=:all:",
                "--no-input",
                "--disable-pip-version-check",
                "--progress-bar",
                "off",
                "-q",
                *REQUIREMENTS,
            ],
            check=True,
        )
        site = subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        if (Path(site) / "torch").exists():  # --no-deps makes this impossible; keep it that way
            raise RuntimeError(f"torch ended up in {site}; the reference venv must not contain torch")
        _log("checking that the FaceStylizer and FaceAligner tasks import")
        subprocess.run(
            [
                str(python),
                "-c",
                "import runpy, sys; sys.argv = ['x', '--help']; "
                f"runpy.run_path({str(CHILD_SCRIPT)!r}, run_name='__main__')",
            ],
            check=True,
            capture_output=True,
        )
        _STAMP.write_text(json.dumps(_stamp_content()))
        _log(f"ready in {time.monotonic() - start:.0f}s")
        return python


def _as_image_list(images: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
    items = list(images) if not isinstance(images, np.ndarray) or images.ndim == 4 else [images]
    out = []
    for image in items:
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"images must be uint8 RGB (H, W, 3), got {image.dtype} {image.shape}")
        out.append(np.ascontiguousarray(image))
    return out


def run_reference(
    task_path: str | os.PathLike[str],
    images: np.ndarray | Sequence[np.ndarray],
    mode: str,
    *,
    repeats: int | None = None,
    threads: int | None = None,
    timeout: float | None = 1800,
) -> dict[str, np.ndarray]:
    """Run MediaPipe on uint8 RGB images in the reference venv; returns the child's arrays.

    `images` is an (N, H, W, 3) uint8 array or a sequence of (H, W, 3) arrays of any sizes. `mode`:

    * "stylize": `stylized` uint8 (N, 256, 256, 3) from `FaceStylizer.stylize` (the face crop only; zeros
      where no face was found), `found` bool (N,). The model injects random noise, so two calls differ by a
      few levels; `repeats=R` stylizes each image R times and adds `stylized_mean` / `stylized_std`.
    * "align": `aligned` uint8 (N, 256, 256, 3) from `FaceAligner.align` (the exact model input crop),
      `found`, plus `face_rect` (N, 5: centre x, y, width, height in pixels, rotation in radians), `warp`
      (N, 2, 3: photo → crop affine, OpenCV pixel-centre coordinates), `mesh` (N, 478, 3) landmarks in
      photo pixels, `graph_matches` (N,).
    * "bench": `seconds` and `cpu_seconds` (R,) per warm `stylize` call (detector + mesh + warp + model),
      R = `repeats` (default 30).

    `threads` sets XNNPACK's thread count (default: the CPUs this process may use; 0: MediaPipe's default,
    one thread). Time "bench" on a quiet machine: XNNPACK's pool spin-waits, so a competing process makes
    a 2-thread run on 2 cores many times slower.
    Every result has `meta`: a 0-d string array of JSON (versions, threads, timings); see `meta()`.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    task = Path(task_path).resolve()
    if not task.is_file():
        raise FileNotFoundError(task)
    image_list = _as_image_list(images)
    python = mediapipe_python()
    with tempfile.TemporaryDirectory(prefix="mediapipe-ref-") as tmp:
        in_npz, out_npz = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        arrays = {"count": np.array(len(image_list))} | {f"img_{i}": im for i, im in enumerate(image_list)}
        # numpy's stub types **kwds as the allow_pickle bool that precedes them; the arrays go in by name.
        np.savez(in_npz, **arrays)  # type: ignore[arg-type]
        command = [str(python), str(CHILD_SCRIPT), mode, str(task), str(in_npz), str(out_npz)]
        if repeats is not None:
            command += ["--repeats", str(repeats)]
        if threads is not None:
            command += ["--threads", str(threads)]
        env = dict(os.environ, GLOG_minloglevel="2", TF_CPP_MIN_LOG_LEVEL="2", PYTHONNOUSERSITE="1")
        env.pop("PYTHONPATH", None)
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).splitlines()[-40:])
            raise RuntimeError(f"mediapipe_child.py {mode} failed (exit {done.returncode}):\n{tail}")
        with np.load(out_npz, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}


def meta(result: dict[str, np.ndarray]) -> dict[str, Any]:
    """The child's metadata (versions, thread settings, timings) of a `run_reference` result."""
    parsed: dict[str, Any] = json.loads(str(result["meta"]))
    return parsed


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m scripts.support.mediapipe_reference` builds the venv and prints its python."""
    del argv
    print(mediapipe_python())
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
