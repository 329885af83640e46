"""Face stylizer benchmark: our torch BlazeFaceStylizer against Google MediaPipe's FaceStylizer task.

Both paint the same aligned faces (MediaPipe's own FaceAligner crops of the test photos), at batch 1, with the
same number of CPU threads, each in a process of its own and one after the other with a pause between: the
two runtimes' thread pools spin-wait, and side by side each steals the other's cores (measured: MediaPipe's
2-thread median went from 0.17 s to 2 s). MediaPipe's call also finds the face again (detector + mesh +
warp, a few ms) — it has no entry point for the model alone. Prints figures; asserts nothing.

Run with `make bench` (or `python -m scripts.benchmark_stylizer --repeats 30`). On a GPU machine,
`--device cuda` measures ours alone in fp16 and channels_last at batch 1, 8 and 32 (faces/s); MediaPipe's task
runs on the CPU only.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from scripts.support import samples
from scripts.support.mediapipe_reference import meta, run_reference
from services.worker.engine.catalog import Medium
from services.worker.engine.face_painter import MODEL_FILES
from shared.settings import get_settings

SETTLE_SECONDS = 3.0
OURS = """
import json, sys, time
import numpy as np, torch
from services.worker.engine.networks.blazestylegan import FaceStylizer
from services.worker.engine.runtime import _keep_large_allocations
from services.worker.engine.tflite_weights import TfliteGraph
task, faces_path = sys.argv[1], sys.argv[2]
repeats, threads, batch = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
device = torch.device(sys.argv[6])
torch.set_num_threads(threads)
model = FaceStylizer.from_graph(TfliteGraph.from_task(__import__("pathlib").Path(task)))
faces = torch.from_numpy(np.load(faces_path).astype(np.float32) / 255).permute(0, 3, 1, 2).contiguous()
if device.type == "cuda":  # the engine's GPU configuration: fp16, channels_last
    model = model.to(device, torch.float16).to(memory_format=torch.channels_last)
    faces = faces.to(device, torch.float16).contiguous(memory_format=torch.channels_last)
else:
    _keep_large_allocations()  # as the engine does on the CPU
seconds = []
with torch.inference_mode():
    for i in range(repeats + 3):
        rows = [(i * batch + k) % len(faces) for k in range(batch)]
        started = time.perf_counter()
        model(faces[rows])
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= 3:
            seconds.append(time.perf_counter() - started)
print(json.dumps(seconds))
"""


def ours(task: Path, faces: np.ndarray, repeats: int, threads: int, batch: int, device: str = "cpu") -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "faces.npy"
        np.save(path, faces)
        done = subprocess.run(
            [sys.executable, "-c", OURS, str(task), str(path), str(repeats), str(threads), str(batch), device],
            capture_output=True,
            text=True,
            check=True,
        )
    return [float(seconds) for seconds in json.loads(done.stdout.strip().splitlines()[-1])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cuda: ours alone, fp16, at batch 1, 8 and 32")
    args = parser.parse_args()
    model_dir = get_settings().model_dir
    photos = [np.asarray(Image.open(p).convert("RGB")) for p in (samples.astronaut_path(), samples.grace_hopper_path())]
    if args.device != "cpu":
        gpu(model_dir, photos, args)
        return
    print(f"threads {args.threads}, {args.repeats} timed calls each, batch 1 unless noted", flush=True)
    print("\n| medium | MediaPipe 0.10.21 (XNNPACK) | ours (torch) | ours batch 8, per face | ratio ours / MediaPipe |")
    print("|---|---:|---:|---:|---:|")
    for medium in Medium:
        task = model_dir / MODEL_FILES[medium]
        aligned = run_reference(task, photos, "align")["aligned"]
        time.sleep(SETTLE_SECONDS)
        theirs = run_reference(task, list(aligned), "bench", repeats=args.repeats, threads=args.threads)
        theirs_s = statistics.median(theirs["seconds"].tolist())
        time.sleep(SETTLE_SECONDS)
        ours_s = statistics.median(ours(task, aligned, args.repeats, args.threads, 1))
        time.sleep(SETTLE_SECONDS)
        batch8 = statistics.median(ours(task, aligned, max(4, args.repeats // 4), args.threads, 8)) / 8
        print(
            f"| {medium.value} | {theirs_s * 1000:.0f} ms | {ours_s * 1000:.0f} ms | {batch8 * 1000:.0f} ms | "
            f"**{theirs_s / ours_s:.2f}** |",
            flush=True,
        )
    print(f"\nMediaPipe: {json.dumps({k: v for k, v in meta(theirs).items() if 'version' in k or 'thread' in k})}")


def our_crops(model_dir: Path, photos: list[np.ndarray]) -> np.ndarray:
    """The photos' faces aligned as the engine aligns them (a GPU machine has no PyPI for MediaPipe's venv)."""
    import torch

    from services.worker.engine import align
    from services.worker.engine.detect import FaceDetector

    detector = FaceDetector(model_dir)
    crops = []
    for photo in photos:
        face = max(detector.detect([torch.from_numpy(photo.copy())])[0], key=lambda f: f.area)
        tensor = torch.from_numpy(photo.astype(np.float32) / 255).permute(2, 0, 1)[None]
        crop = align.crop_faces(tensor, [align.alignment(face)])[0]
        crops.append((crop.permute(1, 2, 0).numpy() * 255).round().clip(0, 255).astype(np.uint8))
    return np.stack(crops)


def gpu(model_dir: Path, photos: list[np.ndarray], args: argparse.Namespace) -> None:
    print(f"ours on {args.device}, fp16, channels_last; {args.repeats} timed calls per batch size")
    print("\n| medium | batch 1 | batch 8 | batch 32 |\n|---|---:|---:|---:|")
    aligned = our_crops(model_dir, photos)
    for medium in Medium:
        task = model_dir / MODEL_FILES[medium]
        rates = [
            batch / statistics.median(ours(task, aligned, args.repeats, args.threads, batch, args.device))
            for batch in (1, 8, 32)
        ]
        print(f"| {medium.value} | " + " | ".join(f"{rate:.0f} faces/s" for rate in rates) + " |", flush=True)


if __name__ == "__main__":
    main()
