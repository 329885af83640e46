# mypy: ignore-errors
# Not type-checked with the project (#23: it moved under scripts/, which mypy checks): it runs in
# var/mediapipe-venv against mediapipe and numpy 1.26, neither of which the project's venv has.
"""Runs Google MediaPipe's own face stylizer as a reference; executed *inside* the MediaPipe venv.

This script is not imported by the project: `scripts/support/mediapipe_reference.py` runs it with the
interpreter of `var/mediapipe-venv` (mediapipe 0.10.21, numpy<2). It imports only mediapipe, numpy and
the standard library.

    python mediapipe_child.py MODE TASK_PATH IN_NPZ OUT_NPZ [--repeats N] [--threads N]

IN_NPZ holds `count` and `img_0` … `img_{count-1}`: uint8 RGB (H, W, 3) arrays, sizes may differ.
OUT_NPZ always holds `meta` (a JSON string: mediapipe version, thread settings, timings) and, per mode:

stylize  `FaceStylizer.stylize` on each image.
         `stylized` uint8 (N, 256, 256, 3) (zeros where no face), `found` bool (N,).
         The stylizer model draws random noise (11 RANDOM_STANDARD_NORMAL ops, StyleGAN noise injection),
         so the output changes from call to call. With --repeats R > 1 each image is stylized R times:
         `stylized` is the first call, `stylized_mean` / `stylized_std` float32 (N, 256, 256, 3) are the
         per-pixel mean and std over the R calls.
align    `FaceAligner.align` on each image: `aligned` uint8 (N, 256, 256, 3), `found` bool (N,). This is the
         exact crop the stylizer model consumes (see the notes in mediapipe_reference.py). Also, from a
         CalculatorGraph that replays the stylizer graph's alignment nodes:
         `face_rect` float64 (N, 5): x_center, y_center, width, height in pixels of the input, rotation in
             radians (FaceToRectCalculator's output);
         `warp` float64 (N, 2, 3): affine map from input pixel coordinates to crop pixel coordinates, both
             in OpenCV's convention (pixel (i, j) has its centre at (x=j, y=i));
         `mesh` float32 (N, 478, 3): the face mesh landmarks in input pixels (x, y; z in the same scale);
         `graph_matches` bool (N,): the replayed graph's crop equals FaceAligner's bit for bit.
bench    times warm `FaceStylizer.stylize` calls, cycling over the images: `seconds` (wall) and
         `cpu_seconds` (this process, all threads) float64 (R,), R = --repeats (default 30), after 3 warm-up
         calls per image. The whole call is timed: face detection + mesh + warp + stylizer model.

--threads N (default: all CPUs of this process) sets TFLite/XNNPACK's thread count for all three models
through the task's acceleration options; 0 leaves MediaPipe's default, which on Linux is one thread.
XNNPACK's pool spin-waits: with 2 threads on a 2-core machine that another process also keeps busy, a call
can take ten times longer (measured: 173 ms quiet, ~2.6 s contended); benchmark on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import types

import numpy as np

ALIGN_SIZE = 256


def _import_mediapipe():
    # `import mediapipe` imports mediapipe.python.solutions.drawing_utils, which imports cv2 and
    # matplotlib.pyplot at module level and uses them only inside its drawing helpers. The reference venv
    # does not install either (≈100 MB we never use), so stand-ins keep that import working. Nothing in
    # the tasks API touches them; the face graphs are C++.
    for name in ("cv2", "matplotlib", "matplotlib.pyplot"):
        try:
            __import__(name)
        except ImportError:
            sys.modules[name] = types.ModuleType(name)
    import mediapipe

    return mediapipe


mp = _import_mediapipe()
# E402: these imports work only once _import_mediapipe has stubbed the modules mediapipe's package pulls in.
from mediapipe.calculators.tensor import inference_calculator_pb2  # noqa: E402
from mediapipe.python import packet_creator, packet_getter  # noqa: E402
from mediapipe.tasks.cc.core.proto import acceleration_pb2  # noqa: E402
from mediapipe.tasks.python.core.base_options import BaseOptions  # noqa: E402
from mediapipe.tasks.python.vision import (  # noqa: E402
    FaceAligner,
    FaceAlignerOptions,
    FaceStylizer,
    FaceStylizerOptions,
)


def _base_options(task_path: str, threads: int) -> BaseOptions:
    class _ThreadedBaseOptions(BaseOptions):
        def to_pb2(self):
            proto = super().to_pb2()
            if threads > 0:
                # FaceStylizerGraph copies this acceleration to the detector and landmarker sub-graphs.
                xnnpack = inference_calculator_pb2.InferenceCalculatorOptions.Delegate.Xnnpack(num_threads=threads)
                proto.acceleration.CopyFrom(acceleration_pb2.Acceleration(xnnpack=xnnpack))
            return proto

    return _ThreadedBaseOptions(model_asset_path=task_path)


def _mp_image(rgb: np.ndarray):
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected (H, W, 3) uint8 RGB, got {rgb.shape}")
    return mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb)


def _os_threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return -1


def _stylize(task_path, images, repeats, threads, meta):
    before = _os_threads()
    stylizer = FaceStylizer.create_from_options(FaceStylizerOptions(base_options=_base_options(task_path, threads)))
    meta["os_threads_before_after_create"] = [before, _os_threads()]
    n = len(images)
    out = np.zeros((n, ALIGN_SIZE, ALIGN_SIZE, 3), np.uint8)
    found = np.zeros(n, bool)
    total = np.zeros((n, ALIGN_SIZE, ALIGN_SIZE, 3), np.float64) if repeats > 1 else None
    total_sq = np.zeros_like(total) if repeats > 1 else None
    for i, rgb in enumerate(images):
        image = _mp_image(rgb)
        for r in range(max(repeats, 1)):
            result = stylizer.stylize(image)
            if result is None:
                break
            view = result.numpy_view()
            if view.shape != (ALIGN_SIZE, ALIGN_SIZE, 3):
                raise RuntimeError(f"unexpected stylized shape {view.shape} ({result.image_format})")
            if r == 0:
                out[i] = view
                found[i] = True
            if total is not None:
                total[i] += view
                total_sq[i] += view.astype(np.float64) ** 2
    arrays = {"stylized": out, "found": found}
    if total is not None:
        mean = total / repeats
        arrays["stylized_mean"] = mean.astype(np.float32)
        arrays["stylized_std"] = np.sqrt(np.maximum(total_sq / repeats - mean**2, 0.0)).astype(np.float32)
    stylizer.close()
    return arrays


# The alignment half of mediapipe/tasks/cc/vision/face_stylizer/face_stylizer_graph.cc, replayed as a plain
# CalculatorGraph so the intermediate face rect and landmarks can be read out. The task graph uses these
# calculators with these options (landmarks 33/133 and 263/362 are the eye corners, 61/291 the mouth
# corners; FaceToRectCalculator runs with its defaults).
_ALIGN_GRAPH = """
input_stream: "image_in"
output_stream: "face_landmarks"
output_stream: "face_rect"
output_stream: "aligned"
node {
  calculator: "mediapipe.tasks.vision.face_landmarker.FaceLandmarkerGraph"
  input_stream: "IMAGE:image_in"
  output_stream: "NORM_LANDMARKS:landmark_lists"
  options {
    [mediapipe.tasks.vision.face_landmarker.proto.FaceLandmarkerGraphOptions.ext] {
      base_options { model_asset { file_name: "%(task)s" } %(acceleration)s }
      face_detector_graph_options { num_faces: 1 }
    }
  }
}
node {
  calculator: "SplitNormalizedLandmarkListVectorCalculator"
  input_stream: "landmark_lists"
  output_stream: "face_landmarks"
  options { [mediapipe.SplitVectorCalculatorOptions.ext] { ranges { begin: 0 end: 1 } element_only: true } }
}
node {
  calculator: "LandmarksToDetectionCalculator"
  input_stream: "NORM_LANDMARKS:face_landmarks"
  output_stream: "DETECTION:face_detection"
  options {
    [mediapipe.LandmarksToDetectionCalculatorOptions.ext] {
      selected_landmark_indices: [33, 133, 263, 362, 61, 291]
    }
  }
}
node { calculator: "ImagePropertiesCalculator" input_stream: "IMAGE:image_in" output_stream: "SIZE:image_size" }
node {
  calculator: "FaceToRectCalculator"
  input_stream: "DETECTION:face_detection"
  input_stream: "IMAGE_SIZE:image_size"
  output_stream: "NORM_RECT:face_rect"
}
node {
  calculator: "ImageToTensorCalculator"
  input_stream: "IMAGE:image_in"
  input_stream: "NORM_RECT:face_rect"
  output_stream: "TENSORS:tensors"
  options {
    [mediapipe.ImageToTensorCalculatorOptions.ext] {
      output_tensor_width: %(size)d output_tensor_height: %(size)d keep_aspect_ratio: true
      border_mode: BORDER_ZERO output_tensor_float_range { min: -1 max: 1 }
    }
  }
}
node {
  calculator: "mediapipe.tasks.TensorsToImageCalculator"
  input_stream: "TENSORS:tensors"
  output_stream: "IMAGE:aligned"
  options { [mediapipe.tasks.TensorsToImageCalculatorOptions.ext] { input_tensor_float_range { min: -1 max: 1 } } }
}
"""


def _rect_warp(cx: float, cy: float, w: float, h: float, rotation: float, size: int) -> np.ndarray:
    """Input→crop affine of ImageToTensorCalculator's OpenCV path for a rotated rect (pixels, OpenCV coords).

    cv::boxPoints(RotatedRect(c, (w, h), degrees(rotation))) gives the corners bottom-left, top-left,
    top-right, bottom-right, which go to (0, size), (0, 0), (size, 0), (size, size); then warpPerspective
    with INTER_LINEAR and a zero border. So crop (u, v) samples input  c + R(rotation) @ ((u/size - 1/2) w,
    (v/size - 1/2) h).
    """
    cos, sin = np.cos(rotation), np.sin(rotation)
    # crop -> input: [x, y] = A @ [u, v] + t
    a = np.array([[cos * w / size, -sin * h / size], [sin * w / size, cos * h / size]])
    t = np.array([cx, cy]) - a @ np.array([size / 2.0, size / 2.0])
    a_inv = np.linalg.inv(a)
    return np.concatenate([a_inv, (-a_inv @ t)[:, None]], axis=1)


def _replay_alignment(task_path, images, threads):
    acceleration = f"acceleration {{ xnnpack {{ num_threads: {threads} }} }}" if threads > 0 else ""
    config = _ALIGN_GRAPH % {"task": task_path, "size": ALIGN_SIZE, "acceleration": acceleration}
    graph = mp.CalculatorGraph(graph_config=config)
    packets = {}
    for stream in ("face_landmarks", "face_rect", "aligned"):
        graph.observe_output_stream(stream, lambda name, packet: packets.__setitem__(name, packet))
    graph.start_run()
    results = []
    try:
        for i, rgb in enumerate(images):
            packets.clear()
            graph.add_packet_to_input_stream("image_in", packet_creator.create_image(_mp_image(rgb)).at(i))
            graph.wait_until_idle()
            if "face_rect" not in packets:
                results.append(None)
                continue
            height, width = rgb.shape[:2]
            rect = packet_getter.get_proto(packets["face_rect"])
            landmarks = packet_getter.get_proto(packets["face_landmarks"]).landmark
            mesh = np.array([[p.x * width, p.y * height, p.z * width] for p in landmarks], np.float32)
            aligned = packet_getter.get_image(packets["aligned"]).numpy_view().copy()
            face_rect = np.array(
                [
                    rect.x_center * width,
                    rect.y_center * height,
                    rect.width * width,
                    rect.height * height,
                    rect.rotation,
                ],
                np.float64,
            )
            results.append((face_rect, mesh, aligned))
    finally:
        graph.close()
    return results


def _align(task_path, images, threads, meta):
    aligner = FaceAligner.create_from_options(FaceAlignerOptions(base_options=_base_options(task_path, threads)))
    n = len(images)
    aligned = np.zeros((n, ALIGN_SIZE, ALIGN_SIZE, 3), np.uint8)
    found = np.zeros(n, bool)
    for i, rgb in enumerate(images):
        result = aligner.align(_mp_image(rgb))
        if result is not None:
            view = result.numpy_view()
            if view.shape != (ALIGN_SIZE, ALIGN_SIZE, 3):
                raise RuntimeError(f"unexpected aligned shape {view.shape} ({result.image_format})")
            aligned[i] = view
            found[i] = True
    aligner.close()

    face_rect = np.full((n, 5), np.nan)
    warp = np.full((n, 2, 3), np.nan)
    mesh = np.full((n, 478, 3), np.nan, np.float32)
    matches = np.zeros(n, bool)
    try:
        replayed = _replay_alignment(task_path, images, threads)
    except Exception as exc:  # the arrays from FaceAligner itself are still valid
        meta["replay_error"] = f"{type(exc).__name__}: {exc}"
        replayed = [None] * n
    for i, item in enumerate(replayed):
        if item is None:
            continue
        face_rect[i], mesh_i, crop = item
        mesh[i, : len(mesh_i)] = mesh_i
        warp[i] = _rect_warp(*face_rect[i], ALIGN_SIZE)
        matches[i] = found[i] and crop.shape == aligned[i].shape and np.array_equal(crop, aligned[i])
    return {
        "aligned": aligned,
        "found": found,
        "face_rect": face_rect,
        "warp": warp,
        "mesh": mesh,
        "graph_matches": matches,
    }


def _bench(task_path, images, repeats, threads, meta):
    stylizer = FaceStylizer.create_from_options(FaceStylizerOptions(base_options=_base_options(task_path, threads)))
    mp_images = [_mp_image(rgb) for rgb in images]
    for image in mp_images:
        for _ in range(3):
            stylizer.stylize(image)
    meta["os_threads_while_warm"] = _os_threads()
    seconds = np.zeros(repeats)
    cpu_seconds = np.zeros(repeats)
    cpu_start, wall_start = time.process_time(), time.perf_counter()
    for r in range(repeats):
        image = mp_images[r % len(mp_images)]
        start, cpu = time.perf_counter(), time.process_time()
        if stylizer.stylize(image) is None:
            raise RuntimeError(f"no face found in image {r % len(mp_images)}; bench needs faces")
        seconds[r] = time.perf_counter() - start
        cpu_seconds[r] = time.process_time() - cpu
    wall = time.perf_counter() - wall_start
    # > 1 means more than one core was busy on average.
    meta["cpu_seconds_per_wall_second"] = (time.process_time() - cpu_start) / wall
    meta["median_ms"] = float(np.median(seconds) * 1e3)
    stylizer.close()
    return {"seconds": seconds, "cpu_seconds": cpu_seconds}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("stylize", "align", "bench"))
    parser.add_argument("task_path")
    parser.add_argument("in_npz")
    parser.add_argument("out_npz")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = cpus if args.threads is None else args.threads
    with np.load(args.in_npz, allow_pickle=False) as data:
        images = [data[f"img_{i}"] for i in range(int(data["count"]))]
    task_path = os.path.abspath(args.task_path)
    meta = {
        "mediapipe_version": mp.__version__,
        "numpy_version": np.__version__,
        "mode": args.mode,
        "task_path": task_path,
        "cpus": cpus,
        "threads": threads,
        "threads_note": "XNNPACK num_threads for all three models" if threads > 0 else "MediaPipe default",
    }
    start = time.perf_counter()
    if args.mode == "stylize":
        arrays = _stylize(task_path, images, args.repeats or 1, threads, meta)
    elif args.mode == "align":
        arrays = _align(task_path, images, threads, meta)
    else:
        arrays = _bench(task_path, images, args.repeats or 30, threads, meta)
    meta["elapsed_s"] = time.perf_counter() - start
    print(
        f"mediapipe_child: {args.mode} on {len(images)} image(s), threads={threads}: {meta['elapsed_s']:.1f}s",
        file=sys.stderr,
    )
    arrays["meta"] = np.array(json.dumps(meta))
    tmp = args.out_npz + ".part.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, args.out_npz)
    return 0


if __name__ == "__main__":
    sys.exit(main())
