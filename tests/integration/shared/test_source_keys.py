"""Source keys on a real Redis (#11): the key is also the signal that its source is stored, so a worker that
arrives while the gateway's S3 put still runs waits for it, and tells "not stored yet" from "deleted"."""

from __future__ import annotations

import threading
import time

import pytest
import redis

from shared.crypto import new_key
from shared.ids import new_job_id
from shared.source_keys import KeyGone, SourceKeys, SourceNotStored

WAIT_STEP = 0.05


@pytest.fixture
def keys(client) -> SourceKeys:
    return SourceKeys(client, ttl_seconds=60, wait_step_seconds=WAIT_STEP)


def expect(client: redis.Redis, keys: SourceKeys, job_id: str, seconds: float = 30) -> None:
    with client.pipeline(transaction=True) as pipe:
        keys.expect(pipe, job_id, seconds)
        pipe.execute()


def later(seconds: float, action) -> threading.Thread:
    def run() -> None:
        time.sleep(seconds)
        action()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_a_published_key_reads_back_expires_and_ends_the_expected_mark(keys, client):
    job_id, key = new_job_id(), new_key()
    expect(client, keys, job_id)
    assert not keys.published(job_id)
    keys.publish(job_id, key)
    assert keys.published(job_id)
    assert keys.load(job_id) == key
    assert keys.load(job_id) == key  # reading does not consume it
    assert 0 < client.ttl(SourceKeys.KEY_PREFIX + job_id) <= 60
    assert not client.exists(SourceKeys.EXPECTED_PREFIX + job_id)


def test_no_key_and_none_expected_is_gone_at_once(keys):
    began = time.monotonic()
    with pytest.raises(KeyGone):
        keys.load(new_job_id())
    assert time.monotonic() - began < WAIT_STEP


def test_a_shredded_key_is_gone(keys):
    job_id = new_job_id()
    keys.publish(job_id, new_key())
    keys.delete(job_id)
    assert not keys.published(job_id)
    with pytest.raises(KeyGone):
        keys.load(job_id)


def test_load_waits_for_an_expected_key(keys, client):
    job_id, key = new_job_id(), new_key()
    expect(client, keys, job_id)
    publisher = later(0.3, lambda: keys.publish(job_id, key))
    began = time.monotonic()
    assert keys.load(job_id) == key
    waited = time.monotonic() - began
    publisher.join()
    assert 0.25 <= waited < 2, waited


def test_an_abandoned_upload_ends_the_wait_without_a_key(keys, client):
    job_id = new_job_id()
    expect(client, keys, job_id)
    undo = later(0.2, lambda: keys.delete(job_id))  # the gateway's undo after a failed put
    began = time.monotonic()
    with pytest.raises(SourceNotStored):
        keys.load(job_id)
    undo.join()
    assert time.monotonic() - began < 0.2 + WAIT_STEP + 0.5


def test_an_expected_mark_that_lapses_ends_the_wait(keys, client):
    """A gateway that died mid-upload never publishes nor undoes: its mark's own expiry ends the wait."""
    job_id = new_job_id()
    expect(client, keys, job_id, seconds=0.3)
    began = time.monotonic()
    with pytest.raises(SourceNotStored):
        keys.load(job_id)
    assert 0.25 <= time.monotonic() - began < 0.3 + WAIT_STEP + 0.5


def test_a_worker_that_looks_only_after_an_abandon_leaves_the_source_to_its_deadline(keys, client):
    """#23: after the gateway's undo of a put it gave up on, the first look finds no key and no expected mark.
    That must not read as a shredded key (`KeyGone`, erase now): the put may still land after an erasure."""
    job_id = new_job_id()
    expect(client, keys, job_id)
    keys.abandon(job_id)
    began = time.monotonic()
    with pytest.raises(SourceNotStored):
        keys.load(job_id)
    assert time.monotonic() - began < WAIT_STEP
    assert not client.exists(SourceKeys.EXPECTED_PREFIX + job_id)
    assert 0 < client.ttl(SourceKeys.ABANDONED_PREFIX + job_id) <= 60, "kept for the source's maximum age"
