"""The portrait engine: decode → detect → frame → select style → generate → finish, on a batch.

Each stage runs once over the whole batch and reports its duration. A photo that fails a stage (no face, corrupt
data…) drops out with its `PortraitError` and the rest of the batch carries on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TypeVar

import cv2
import torch

from services.worker.engine import align, finish, recognizer
from services.worker.engine.catalog import CATALOG, GanRecipe, Style
from services.worker.engine.choose_face import choose_face
from services.worker.engine.config import EngineConfig
from services.worker.engine.detect import FaceBox, FaceDetector
from services.worker.engine.features import PhotoFeatures, measure
from services.worker.engine.frame import Framing, frame
from services.worker.engine.generate import Generator, GeneratorOptions, PaintJob, StyleEncoder
from services.worker.engine.generators import create_generator
from services.worker.engine.logs import get_logger
from services.worker.engine.networks.arbitrary import StylePredictor
from services.worker.engine.recognizer import FaceRecognizer
from services.worker.engine.runtime import Runtime, inference, resolve_runtime
from services.worker.engine.select import StyleChoice, check_request, choose_style, may_fall_back, unlike_sitter
from services.worker.engine.tensors import to_batch, to_uint8_hwc
from services.worker.engine.timing import StageTimer
from services.worker.engine.weights import verify_model_dir
from shared.errors import PortraitError
from shared.imaging import DecodedPhoto, decode
from shared.stages import ENGINE_STAGES

log = get_logger()

STAGES = tuple(stage.value for stage in ENGINE_STAGES)  # one stage vocabulary (#12)


@dataclass(frozen=True)
class RenderRequest:
    data: bytes
    style: str = "auto"  # "auto", a family name or a catalog style name
    strength: float | None = None  # None: the style's own default


@dataclass(frozen=True)
class Portrait:
    data: bytes
    content_type: str
    width: int
    height: int
    style: str
    family: str
    strength: float
    reason: str
    face: FaceBox  # in the uploaded photo's (EXIF-upright) pixels
    features: PhotoFeatures
    # The recogniser's descriptor distance between the photo's face and the portrait's (same person below
    # `recognizer.SAME_PERSON`), for the job record, the logs and the likeness metric (#21).
    identity_distance: float | None = None
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage, for the whole batch


RenderOutcome = Portrait | PortraitError


_T = TypeVar("_T")


def _set(value: _T | None, what: str) -> _T:
    """A stage's input, which an earlier stage set on every item still live; None here is a bug, not a bad photo."""
    if value is None:
        raise RuntimeError(f"{what} is not set: a stage ran before the one that sets it")
    return value


@dataclass
class _Item:
    """One photo's progress through the stages: each stage fills a field, which later stages read through the
    properties below (typed, and loud if a stage ever runs out of order)."""

    request: RenderRequest
    photo: DecodedPhoto | None = None
    face: FaceBox | None = None
    framing: Framing | None = None
    features: PhotoFeatures | None = None
    choice: StyleChoice | None = None
    photo_vector: torch.Tensor | None = None
    identity_distance: float | None = None
    error: PortraitError | None = None

    @property
    def decoded(self) -> DecodedPhoto:
        return _set(self.photo, "the decoded photo")

    @property
    def found_face(self) -> FaceBox:
        return _set(self.face, "the face")

    @property
    def framed(self) -> Framing:
        return _set(self.framing, "the framing")

    @property
    def measured(self) -> PhotoFeatures:
        return _set(self.features, "the features")

    @property
    def chosen(self) -> StyleChoice:
        return _set(self.choice, "the style choice")

    @property
    def vector(self) -> torch.Tensor:
        return _set(self.photo_vector, "the photo's style vector")


def warm_up_face(side: int) -> FaceBox:
    """A face filling a side×side probe image, its landmarks on the alignment template (for warm-up only)."""
    scale = side / align.CROP_SIDE
    points = tuple((x * scale, y * scale) for x, y in align.TEMPLATE.tolist())
    return FaceBox(x1=64 * scale, y1=72 * scale, x2=192 * scale, y2=216 * scale, score=1.0, landmarks=points)


def _one_style_per_recipe_kind(generator: Generator) -> list[Style]:
    seen: dict[type, Style] = {}
    for style in CATALOG:
        if generator.supports(style):
            seen.setdefault(type(style.recipe), style)
    return list(seen.values())


class PortraitEngine:
    """Loads every network once (verified weights), warms up, then renders photos or batches of photos."""

    def __init__(self, config: EngineConfig, *, warm_up: bool = True) -> None:
        """`config`: `EngineConfig.from_settings(settings)` in the services (#12: not the whole `Settings`)."""
        started = time.perf_counter()
        self.config = config
        self.runtime: Runtime = resolve_runtime(config.runtime)
        paths = verify_model_dir(config.model_dir)
        self.detector = FaceDetector(config.model_dir, device=self.runtime.device, max_side=config.detect_max_side)
        self.encoder = StyleEncoder(StylePredictor.from_onnx(paths["arbitrary_predict.onnx"]), self.runtime)
        self.recognizer = FaceRecognizer(paths, self.runtime)
        # OpenCV's optical flow (likeness.py) gets the threads torch was given, not a pool of its own per core
        # competing with the worker's other render processes.
        cv2.setNumThreads(torch.get_num_threads())
        self.generator = create_generator(
            config.generator,
            paths,
            self.runtime,
            self.encoder,
            GeneratorOptions(face_upscaler=config.face_upscaler),
        )
        if warm_up:
            self._warm_up()
        log.info(
            "engine ready",
            device=str(self.runtime.device),
            dtype=str(self.runtime.dtype),
            seconds=round(time.perf_counter() - started, 2),
        )

    def _warm_up(self) -> None:
        # One tiny pass through every network allocates buffers and picks kernels before the first real job.
        with inference():
            probe = torch.rand(1, 3, 64, 64)
            self.detector.detect([(probe[0].permute(1, 2, 0) * 255).to(torch.uint8)])
            vector = self.encoder.encode(probe)[0]
            face = warm_up_face(probe.shape[-1])
            for style in _one_style_per_recipe_kind(self.generator):
                self.generator.paint(probe, [PaintJob(style=style, strength=1.0, photo_vector=vector, face=face)])
            self.recognizer.describe(probe, [face])

    def render(
        self,
        data: bytes,
        style: str = "auto",
        strength: float | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> Portrait:
        """Render one photo; raises the stage's `PortraitError` if it cannot be painted."""
        outcome = self.render_batch([RenderRequest(data=data, style=style, strength=strength)], progress)[0]
        if isinstance(outcome, PortraitError):
            raise outcome
        return outcome

    def render_batch(
        self, requests: Sequence[RenderRequest], progress: Callable[[str], None] | None = None
    ) -> list[RenderOutcome]:
        """`progress` is called with each stage's name as the stage starts."""
        items = [_Item(request) for request in requests]
        timer = StageTimer(self.runtime.synchronize, batch_size=len(items), on_enter=progress)
        with inference():
            with timer.stage("decode"):
                self._each(items, self._decode)
            with timer.stage("detect"):
                self._detect(items)
            with timer.stage("frame"):
                self._each(items, self._frame)
            with timer.stage("select"):
                self._select(items)
            with timer.stage("generate"):
                painted = self._generate(items)
            with timer.stage("finish"):
                outcomes = self._finish(items, painted)
        return [replace(o, timings=dict(timer.durations)) if isinstance(o, Portrait) else o for o in outcomes]

    # --- stages ---

    @staticmethod
    def _each(items: list[_Item], step: Callable[[_Item], None]) -> None:
        for item in items:
            if item.error is None:
                try:
                    step(item)
                except PortraitError as exc:
                    item.error = exc

    def _decode(self, item: _Item) -> None:
        check_request(item.request.style, item.request.strength)
        item.photo = decode(
            item.request.data, max_pixels=self.config.max_image_pixels, min_side=self.config.min_image_side
        )

    def _detect(self, items: list[_Item]) -> None:
        live = [item for item in items if item.error is None]
        if not live:
            return
        detections = self.detector.detect([to_uint8_hwc(item.decoded.image) for item in live])
        for item, faces in zip(live, detections):
            try:
                item.face = choose_face(faces, item.decoded.image.size, min_score=self.config.min_face_score)
            except PortraitError as exc:
                item.error = exc

    def _frame(self, item: _Item) -> None:
        item.framing = frame(
            item.decoded.image,
            item.found_face,
            long_side=self.config.output_size,
            min_face_size=self.config.min_face_size,
        )

    def _select(self, items: list[_Item]) -> None:
        live = [item for item in items if item.error is None]
        if not live:
            return
        vectors = self.encoder.encode(to_batch([item.framed.portrait for item in live]))
        for item, vector in zip(live, vectors):
            framing, photo = item.framed, item.decoded
            item.features = measure(framing.portrait, framing.face_in_portrait, item.found_face, photo.image.size)
            item.photo_vector = vector
            try:
                item.choice = choose_style(
                    item.features, item.request.style, item.request.strength, paintable=self.generator.supports
                )
            except PortraitError as exc:
                item.error = exc

    def _generate(self, items: list[_Item]) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Returns (painted, photos) for the live items, or None when every photo dropped out.

        Every portrait's face is compared with the photo's by the face recogniser. A face-GAN portrait that the
        check does not match to the sitter is repainted in the family's style-transfer style — where the style
        was ours to choose (auto or a family); a GAN style asked for by name is delivered as asked (#21).
        """
        live = [item for item in items if item.error is None]
        if not live:
            return None
        photos = to_batch([item.framed.portrait for item in live])
        faces = [item.framed.face_in_portrait for item in live]
        painted = self._paint(live, photos)
        sitters = self.recognizer.describe(photos, faces)
        distances = recognizer.distances(sitters, self.recognizer.describe(painted, faces)).tolist()
        unlike = []
        for i, item in enumerate(live):
            if (
                distances[i] > self.config.likeness_max_distance
                and isinstance(item.chosen.style.recipe, GanRecipe)
                and may_fall_back(item.request.style)
            ):
                fallback = unlike_sitter(item.chosen, item.measured, item.request.strength, self.generator.supports)
                if fallback.style != item.chosen.style:  # a generator with no style-transfer style keeps the GAN's
                    item.choice = fallback
                    unlike.append(i)
        if unlike:
            painted[unlike] = self._paint([live[i] for i in unlike], photos[unlike])
            repainted = self.recognizer.describe(painted[unlike], [faces[i] for i in unlike])
            for i, distance in zip(unlike, recognizer.distances(sitters[unlike], repainted).tolist()):
                distances[i] = distance
        for item, distance in zip(live, distances):
            item.identity_distance = distance
        return painted, photos

    def _paint(self, live: list[_Item], photos: torch.Tensor) -> torch.Tensor:
        jobs = [
            PaintJob(item.chosen.style, item.chosen.strength, item.vector, face=item.framed.face_in_portrait)
            for item in live
        ]
        return self.generator.paint(photos, jobs)

    def _finish(self, items: list[_Item], generated: tuple[torch.Tensor, torch.Tensor] | None) -> list[RenderOutcome]:
        live = [item for item in items if item.error is None]
        finished: Iterator[torch.Tensor] = iter(())
        if generated is not None:
            painted, photos = generated
            # A face GAN redraws the face: its eyes are not where the photo's are to the pixel, so blending the
            # photo's detail back would ghost them (#8).
            amounts = [0.0 if isinstance(i.chosen.style.recipe, GanRecipe) else self.config.detail_blend for i in live]
            finished = iter(finish.detail_blend(painted, photos, [i.framed.face_in_portrait for i in live], amounts))
        outcomes: list[RenderOutcome] = []
        content_type = self.config.output_format.content_type
        for item in items:
            if item.error is not None:
                outcomes.append(item.error)
                continue
            image = next(finished)
            data = finish.encode(image, image_format=self.config.output_format, quality=self.config.output_quality)
            outcomes.append(
                Portrait(
                    data=data,
                    content_type=content_type,
                    width=image.shape[-1],
                    height=image.shape[-2],
                    style=item.chosen.style.name,
                    family=item.chosen.style.family.value,
                    strength=item.chosen.strength,
                    reason=item.chosen.reason,
                    face=item.found_face,
                    features=item.measured,
                    identity_distance=item.identity_distance,
                )
            )
        return outcomes
