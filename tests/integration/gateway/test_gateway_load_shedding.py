"""Load shedding (#11) against real Redis and SeaweedFS: an upload that could not be painted before its photo's
maximum age is refused with 503 `overloaded` and Retry-After, and leaves nothing behind; one that could is
accepted."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import pytest
import redis
from flask import Flask
from prometheus_client import REGISTRY

from scripts.support import samples
from shared.capacity import CapacityBoard
from shared.ids import new_job_id
from shared.jobs import Job, JobState, JobStore, now
from shared.settings import Settings
from shared.source_keys import SourceKeys
from tests.integration.gateway.test_gateway_portraits import assert_envelope, post_photo

pytestmark = pytest.mark.integration

# One render process at 2 s a job; the limit is 0.7 × 120 s = 84 s of wait plus one render. So 41 jobs ahead
# (82 s + 2 s) fit exactly and 42 (84 s + 2 s) are 2 s too many.
SECONDS_PER_JOB = 2.0
FITS = 41
TOO_MANY = 42


@pytest.fixture(scope="module")
def photo() -> bytes:
    return samples.grace_hopper_path().read_bytes()


@pytest.fixture
def queue_jobs(rdb: redis.Redis, gateway_settings: Settings) -> Callable[[int], None]:
    """Put `count` jobs in the queue, uploaded just now (their photos within the maximum age)."""
    jobs = JobStore(rdb, gateway_settings.job_ttl_seconds)

    def add(count: int) -> None:
        for _ in range(count):
            jobs.create(Job(id=new_job_id(), state=JobState.QUEUED, created_at=now()))

    return add


def renderer_reports(rdb: redis.Redis, seconds_per_job: float, owner: str = "render-host:4242") -> None:
    CapacityBoard(rdb, owner=owner).report_service(seconds_per_job, 1)


def job_ids(rdb: redis.Redis) -> set[str]:
    return {key.decode().removeprefix(JobStore.KEY_PREFIX) for key in rdb.scan_iter(f"{JobStore.KEY_PREFIX}*")}


def shed_count() -> float:
    return REGISTRY.get_sample_value("portraits_gateway_uploads_shed_total") or 0.0


def test_an_upload_that_could_not_be_painted_in_time_is_shed_and_nothing_is_stored(
    make_app: Callable[..., Flask],
    rdb: redis.Redis,
    queue_jobs: Callable[[int], None],
    photo: bytes,
    queued_tasks: Callable[[], list[str]],
    stored_sources: Callable[[], set[str]],
    scheduled_sources: Callable[[], set[str]],
) -> None:
    client = make_app().test_client()
    renderer_reports(rdb, SECONDS_PER_JOB)
    queue_jobs(TOO_MANY)
    jobs_before, sources_before, scheduled_before = job_ids(rdb), stored_sources(), scheduled_sources()
    shed_before = shed_count()

    response = post_photo(client, photo)

    assert_envelope(response, 503, "overloaded")
    assert response.headers["Retry-After"] == "2"  # 2 s over the limit, drained at one job per 2 s
    assert "try again in 2 s" in response.json["error"]["message"]
    assert job_ids(rdb) == jobs_before  # no job record
    assert rdb.zcard(JobStore.QUEUE_KEY) == TOO_MANY
    assert queued_tasks() == []  # no task
    assert stored_sources() == sources_before  # no photo in S3
    assert scheduled_sources() == scheduled_before  # nothing scheduled for deletion
    assert rdb.keys(f"{SourceKeys.KEY_PREFIX}*") == []  # no sealing key
    assert shed_count() == shed_before + 1
    text = client.get("/metrics").get_data(as_text=True)
    assert re.search(r"^portraits_gateway_uploads_shed_total [1-9]\d*\.0$", text, re.MULTILINE)
    assert re.search(r'^portraits_gateway_upload_wait_estimate_seconds_bucket\{le="120\.0"\} [1-9]', text, re.MULTILINE)
    assert 'portraits_gateway_rejections_total{code="overloaded"}' in text


def test_an_upload_that_fits_is_accepted(
    make_app: Callable[..., Flask],
    rdb: redis.Redis,
    queue_jobs: Callable[[int], None],
    photo: bytes,
    queued_tasks: Callable[[], list[str]],
) -> None:
    client = make_app().test_client()
    renderer_reports(rdb, SECONDS_PER_JOB)
    queue_jobs(FITS)
    shed_before = shed_count()

    response = post_photo(client, photo)

    assert response.status_code == 202, response.json
    assert queued_tasks() == [response.json["id"]]
    assert shed_count() == shed_before
    # The next upload has 42 ahead of it now: shed.
    assert_envelope(post_photo(client, photo), 503, "overloaded")


def test_more_render_processes_take_a_longer_queue(
    make_app: Callable[..., Flask],
    rdb: redis.Redis,
    queue_jobs: Callable[[int], None],
    photo: bytes,
) -> None:
    client = make_app().test_client()
    queue_jobs(TOO_MANY)
    renderer_reports(rdb, SECONDS_PER_JOB, owner="render-host:1")
    assert_envelope(post_photo(client, photo), 503, "overloaded")
    renderer_reports(rdb, SECONDS_PER_JOB, owner="render-host:2")
    assert post_photo(client, photo).status_code == 202


def test_stale_reports_and_no_reports_admit(
    make_app: Callable[..., Flask],
    rdb: redis.Redis,
    queue_jobs: Callable[[int], None],
    photo: bytes,
) -> None:
    # No render process has reported (idle, loading, or none at all): there is nothing to estimate from.
    client = make_app().test_client()
    queue_jobs(500)
    assert post_photo(client, photo).status_code == 202
    # A report older than `renderer_stale_seconds` does not count, and is pruned.
    stale = {"seconds_per_job": SECONDS_PER_JOB, "reported_at": now() - 31}
    rdb.hset(CapacityBoard.KEY, "render-host:4242", json.dumps(stale))
    assert post_photo(client, photo).status_code == 202
    assert rdb.exists(CapacityBoard.KEY) == 0


def test_old_queue_entries_do_not_count(
    make_app: Callable[..., Flask],
    rdb: redis.Redis,
    gateway_settings: Settings,
    photo: bytes,
) -> None:
    # Jobs queued longer than a photo lives are failing `source_expired` (or their records are gone): they
    # stand in front of nobody.
    jobs = JobStore(rdb, gateway_settings.job_ttl_seconds)
    for _ in range(TOO_MANY):
        jobs.create(
            Job(id=new_job_id(), state=JobState.QUEUED, created_at=now() - gateway_settings.source_max_age_seconds - 1)
        )
    renderer_reports(rdb, SECONDS_PER_JOB)
    assert post_photo(make_app().test_client(), photo).status_code == 202


def test_shedding_can_be_switched_off_and_the_limit_follows_its_setting(
    make_app: Callable[..., Flask],
    rdb: redis.Redis,
    queue_jobs: Callable[[int], None],
    photo: bytes,
) -> None:
    renderer_reports(rdb, SECONDS_PER_JOB)
    queue_jobs(TOO_MANY)
    assert post_photo(make_app(load_shedding=False).test_client(), photo).status_code == 202
    # 43 ahead now: 86 s + 2 s fits in 0.85 × 120 s = 102 s, not in the default 84 s.
    assert post_photo(make_app(shed_wait_fraction=0.85).test_client(), photo).status_code == 202
    assert_envelope(post_photo(make_app().test_client(), photo), 503, "overloaded")


def test_a_shed_upload_is_refused_before_its_body_is_judged(
    make_app: Callable[..., Flask],
    rdb: redis.Redis,
    queue_jobs: Callable[[int], None],
) -> None:
    # The check comes first: under overload not even a broken upload is read or decoded.
    renderer_reports(rdb, SECONDS_PER_JOB)
    queue_jobs(TOO_MANY)
    assert_envelope(post_photo(make_app().test_client(), b"not an image"), 503, "overloaded")
