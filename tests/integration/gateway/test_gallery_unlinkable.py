"""A shared job and its gallery entry cannot be matched beyond the day (#25). Before, the cursor held the publish
time to the microsecond, the image's Last-Modified held it to the second, the URL's expiry and the removal were
counted from it, and it came ~20 ms after the job's `done` event and webhook: anyone holding those found the entry.

Here a shared job is painted among other people's shared portraits of the same day, its `done` event and webhook
are read, the day is released (the janitor's release, its clock set to the next UTC midnight), and then everything
a reader of the gallery can see is checked — the items, the cursor, the order, the image URL's expiry, the image's
headers from a real GET, the removal, and the listing polled all along — for anything finer than the day."""

from __future__ import annotations

import base64
import json
import time
import urllib.request
from datetime import datetime
from email.utils import formatdate, parsedate_to_datetime
from urllib.parse import parse_qs, urlsplit

import pytest
from flask.testing import FlaskClient

from scripts.support import samples
from services.gateway import routes
from services.worker.outcomes import DONE
from shared.gallery import (
    DAY_SECONDS,
    GalleryGrant,
    day_of,
    day_start,
    listing_score,
    object_key,
    removal_deadline,
)
from shared.jobs import JobState, now
from shared.webhooks import EventType, WebhookOutbox, delivery_id
from tests.support.gallery import WatchedStore, release, stage
from tests.support.service import Backends

pytestmark = pytest.mark.integration

_no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))
# Only queued: these tests run no delivery loop, so nothing is ever sent anywhere.
CALLBACK = "http://127.0.0.1:9/hook"


@pytest.fixture(scope="module")
def astronaut_bytes() -> bytes:
    return samples.astronaut_path().read_bytes()


def listed(client: FlaskClient) -> list[str]:
    return [item["id"] for item in client.get("/v1/gallery?limit=50").json["items"]]


def expiry_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["X-Amz-Expires"][0]


def finished_moments(backends: Backends, job_id: str) -> list[float]:
    """When the job finished, as its event stream and its webhook tell anyone holding them."""
    [done] = [event for event in backends.jobs.history(job_id) if event.state is JobState.DONE]
    delivery = WebhookOutbox(backends.redis).get(delivery_id(job_id, EventType.DONE))
    assert delivery is not None
    stamped = datetime.fromisoformat(json.loads(delivery.payload)["timestamp"].replace("Z", "+00:00")).timestamp()
    return [done.at, delivery.created_at, stamped]


def test_a_shared_jobs_events_and_webhook_match_nothing_finer_than_the_day(
    client, backends, engine, astronaut_bytes, monkeypatch
):
    today = day_start(now())
    everyone = [stage(backends, today, shade=n).id for n in range(3)]  # other people's, earlier that day
    grant = GalleryGrant.new()
    job_id = backends.submit(astronaut_bytes, style="ink", callback_url=CALLBACK, gallery=grant)
    assert backends.runner(engine).run(job_id) == DONE
    everyone += [grant.id] + [stage(backends, today, shade=n).id for n in range(3)]  # and later that day
    finished = finished_moments(backends, job_id)
    assert max(finished) - min(finished) < 2  # one moment, to the millisecond (the event) or the second
    while time.time() < max(finished) + 2:  # Last-Modified has a one-second grain: let it tell render from release
        time.sleep(0.1)

    midnight = today + DAY_SECONDS
    started = time.time()
    release(backends, midnight + 30)
    released = time.time()
    day = day_of(midnight)
    ttl = backends.settings.gallery_ttl_seconds

    # The items and the cursor, a page of one at a time: the day, the id, and nothing else that moves with time.
    items, cursor = [], None
    while True:
        body = client.get("/v1/gallery?limit=1" + (f"&cursor={cursor}" if cursor else "")).json
        [item] = body["items"]
        items.append(item)
        assert set(item) == {"id", "image_url", "style", "family", "day"} and item["day"] == day
        cursor = body["next_cursor"]
        if cursor is None:
            break
        assert base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode() == f"{day}:{item['id']}"
    # The order: set by the ids alone, not by who finished first.
    ids = [item["id"] for item in items]
    assert ids == sorted(everyone, key=lambda gid: listing_score(day, gid), reverse=True)

    # The image URL: the same lifetime for the whole day, even when it is cut short by the removal.
    assert {expiry_of(item["image_url"]) for item in items} == {"900"}
    deadline = removal_deadline(day, ttl)
    monkeypatch.setattr(routes, "clock", lambda: deadline - 100.25)
    late = client.get("/v1/gallery?limit=50").json["items"]
    assert len(late) == len(everyone) and {expiry_of(item["image_url"]) for item in late} == {"100"}
    monkeypatch.setattr(routes, "clock", lambda: deadline - 0.5)
    assert listed(client) == []  # and the whole day leaves at once
    monkeypatch.undo()

    # The image's headers, from a real GET: Last-Modified is the release, and nothing says when the job finished.
    around_the_finish = {int(moment) + shift for moment in finished for shift in (-1, 0, 1)}
    finish_words = {formatdate(second, usegmt=True) for second in around_the_finish} | set(map(str, around_the_finish))
    for item in items:
        with _no_proxy.open(item["image_url"], timeout=5) as response:
            headers = dict(response.headers)
            response.read()
        modified = parsedate_to_datetime(headers["Last-Modified"]).timestamp()
        assert int(started) <= modified <= released and modified >= max(finished) + 1, headers
        assert not [value for value in headers.values() for word in finish_words if word in value], headers

    # The removal: one deadline for the whole day, counted from its midnight.
    scheduled = {backends.redis.zscore("portraits:deletions:gallery", object_key(gid)) for gid in everyone}
    assert scheduled == {midnight + ttl}


def test_polling_sees_a_day_arrive_only_at_its_release(client, backends, engine, astronaut_bytes):
    today = day_start(now())
    polls = [listed(client)]
    grant = GalleryGrant.new()
    job_id = backends.submit(astronaut_bytes, style="ink", gallery=grant)
    assert backends.runner(engine).run(job_id) == DONE
    polls.append(listed(client))
    everyone = [grant.id]
    for shade in range(3):
        everyone.append(stage(backends, today, shade=shade).id)
        polls.append(listed(client))
    assert release(backends, now()) is None  # a release the same day finds nothing due
    polls.append(listed(client))
    # During the release, after each copy is made: still nothing listed.
    store = WatchedStore(backends, after=lambda _: polls.append(listed(client)))
    report = release(backends, today + DAY_SECONDS + 30, store)
    assert report is not None and report.listed == len(everyone)
    assert len(polls) == 6 + len(everyone) and polls == [[]] * len(polls)
    assert sorted(listed(client)) == sorted(everyone)  # then the whole day, in one step
