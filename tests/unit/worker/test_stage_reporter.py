"""The stage reporter: a render's stages written in order from its own thread, a one-job render's result deletion
scheduled as its last stage begins, and every report done once the render is left, whether it failed or not."""

from __future__ import annotations

import threading
import time

import pytest
import redis

from services.worker.stage_reporter import ScheduledResult, StageReporter, on_reporter_thread
from shared.audit import ObjectKind
from shared.output_format import OutputFormat
from shared.stages import Stage


class RecordingJobs:
    def __init__(self) -> None:
        self.stages: list[tuple[str, str]] = []

    def set_stage(self, job_id: str, stage: str) -> None:
        time.sleep(0.01)  # a round trip: whoever reads too early sees it missing
        self.stages.append((job_id, stage))


class RecordingEraser:
    def __init__(self, fails: bool = False) -> None:
        self.fails = fails
        self.tracked: list[tuple[ObjectKind, str, str, float, int]] = []
        self.threads: list[bool] = []

    def track(self, kind: ObjectKind, key: str, job_id: str, at: float, ttl_seconds: int) -> None:
        self.threads.append(on_reporter_thread())
        time.sleep(0.05)
        if self.fails:
            raise redis.ConnectionError("simulated")
        self.tracked.append((kind, key, job_id, at, ttl_seconds))


class Lease:
    def __init__(self, job_id: str, lost: bool = False) -> None:
        self.job_id = job_id
        self.lost = threading.Event()
        if lost:
            self.lost.set()


def reporter(jobs: RecordingJobs, eraser: RecordingEraser) -> StageReporter:
    return StageReporter(jobs, eraser, OutputFormat.JPEG, result_ttl_seconds=600)


def test_stages_are_written_in_order_for_every_job_before_the_render_is_left():
    jobs, eraser = RecordingJobs(), RecordingEraser()
    with reporter(jobs, eraser).reporting(["a", "b"]) as progress:
        for stage in (Stage.FETCH, Stage.GENERATE, Stage.FINISH):
            progress(stage)
    assert jobs.stages == [(job, stage) for stage in (Stage.FETCH, Stage.GENERATE, Stage.FINISH) for job in "ab"]
    assert eraser.tracked == [] and progress.scheduled() == {}  # a batch's results are scheduled as delivered


def test_a_one_job_render_schedules_its_result_as_its_last_stage_begins():
    jobs, eraser = RecordingJobs(), RecordingEraser()
    with reporter(jobs, eraser).reporting(["a"], schedule_result_of=Lease("a")) as progress:
        progress(Stage.GENERATE)
        assert eraser.tracked == []
        progress(Stage.FINISH)
    ((kind, key, job_id, at, ttl),) = eraser.tracked
    assert (kind, key, job_id, ttl) == (ObjectKind.RESULT, "results/a.jpg", "a", 600)
    assert progress.scheduled() == {"a": ScheduledResult(key, at)}
    assert eraser.threads == [True]


def test_a_render_that_fails_after_its_last_stage_began_leaves_no_report_in_flight():
    jobs, eraser = RecordingJobs(), RecordingEraser()
    with pytest.raises(RuntimeError, match="render failed"):
        with reporter(jobs, eraser).reporting(["a"], schedule_result_of=Lease("a")) as progress:
            progress(Stage.FINISH)
            raise RuntimeError("render failed")
    assert jobs.stages == [("a", Stage.FINISH)]
    assert [key for _, key, *_ in eraser.tracked] == ["results/a.jpg"]


def test_a_lost_lease_or_a_refused_schedule_schedules_nothing_ahead():
    jobs = RecordingJobs()
    eraser = RecordingEraser()
    with reporter(jobs, eraser).reporting(["a"], schedule_result_of=Lease("a", lost=True)) as progress:
        progress(Stage.FINISH)
    assert eraser.threads == [] and progress.scheduled() == {}

    refusing = RecordingEraser(fails=True)
    with reporter(jobs, refusing).reporting(["b"], schedule_result_of=Lease("b")) as progress:
        progress(Stage.FINISH)
    assert refusing.threads == [True] and progress.scheduled() == {}


def test_the_caller_is_not_on_the_reporter_thread():
    assert not on_reporter_thread()
