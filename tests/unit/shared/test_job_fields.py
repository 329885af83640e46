"""Typed job transitions (#12): a field `Job` does not have is refused before Redis is asked; a record with a
field this version does not know is still read (a rolling upgrade), and the name is logged once."""

from __future__ import annotations

import json

import pytest
import redis
import structlog

from shared.jobs import Job, JobState, JobStore, UnknownJobField
from shared.stages import Stage


def test_transition_refuses_a_field_job_does_not_have():
    # No server behind this client: the check must come before any command.
    store = JobStore(redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.1), ttl_seconds=60)
    with pytest.raises(UnknownJobField) as refused:
        store.transition("job", JobState.DONE, stage=None, reslut_key="results/job.jpg")
    assert refused.value.names == {"reslut_key"}
    assert isinstance(refused.value, TypeError)


@pytest.mark.parametrize("name", ["id", "state"])
def test_transition_refuses_the_id_and_the_state_as_fields(name):
    store = JobStore(redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.1), ttl_seconds=60)
    with pytest.raises(UnknownJobField):
        store.transition("job", JobState.DONE, **{name: "x"})


def test_a_record_with_an_unknown_field_is_read_and_the_name_logged_once():
    job = Job(id="j1", state=JobState.PROCESSING, created_at=1.0, stage=Stage.FETCH)
    raw = {str(key).encode(): str(value).encode() for key, value in job.to_redis().items()}
    raw[b"from_the_future"] = json.dumps(1).encode()
    Job._unknown_seen.discard("from_the_future")
    with structlog.testing.capture_logs() as logs:
        assert Job.from_redis(raw) == job
        assert Job.from_redis(raw) == job
    warnings = [entry for entry in logs if entry.get("fields") == ["from_the_future"]]
    assert len(warnings) == 1 and warnings[0]["log_level"] == "warning"


def test_a_stage_is_stored_as_its_name():
    job = Job(id="j1", state=JobState.PROCESSING, created_at=1.0, stage=Stage.GENERATE)
    assert job.to_redis()["stage"] == '"generate"'
