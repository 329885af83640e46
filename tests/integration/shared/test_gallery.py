"""The gallery index on a real Redis (#10, #25): a reservation becomes ready only while pending, a day's ready
entries are listed together under their release day, paging runs newest day first with a cursor that carries only
a day and an id, and withdraw tombstones tell only the token holder anything."""

from __future__ import annotations

import base64
import time

import pytest
import redis

from shared.gallery import (
    DAY_SECONDS,
    EXPIRY_SLACK_SECONDS,
    TOMBSTONE_SECONDS,
    Cursor,
    GalleryEntry,
    GalleryGrant,
    GalleryIndex,
    Gone,
    Pending,
    Ready,
    ReleaseOutcome,
    day_of,
    day_start,
    is_gallery_id,
    listing_score,
    removal_deadline,
    token_matches,
)

GALLERY_DB = 7
TTL = 7 * 86_400  # counted from a release day: entries listed days ago must still be there
# Today: the index's hashes expire at times counted from their day, which must lie ahead.
DAY_START = day_start(time.time())
DAY = day_of(DAY_START)
YESTERDAY, TWO_DAYS_AGO = day_of(DAY_START - DAY_SECONDS), day_of(DAY_START - 2 * DAY_SECONDS)


@pytest.fixture
def client(redis_server) -> redis.Redis:
    client = redis.Redis.from_url(redis_server.url.rsplit("/", 1)[0] + f"/{GALLERY_DB}")
    client.flushdb()
    return client


@pytest.fixture
def index(client) -> GalleryIndex:
    return GalleryIndex(client)


def ready(index: GalleryIndex, day: int = DAY_START - DAY_SECONDS, style: str = "ink") -> GalleryGrant:
    grant = GalleryGrant.new()
    index.reserve(grant, ttl_seconds=60)
    assert index.mark_ready(grant.id, style, "ink", day, TTL)
    return grant


def listed(index: GalleryIndex, day: str = DAY, count: int = 1) -> list[GalleryGrant]:
    grants = [ready(index) for _ in range(count)]
    outcomes = index.list_released([grant.id for grant in grants], day, TTL)
    assert set(outcomes.values()) == {ReleaseOutcome.LISTED}
    return grants


def expire_at(client: redis.Redis, grant: GalleryGrant) -> float:
    """When Redis forgets the entry's hash (EXPIRETIME needs Redis 7)."""
    return time.time() + client.pttl(GalleryIndex.ENTRY_PREFIX + grant.id) / 1000


def test_a_day_is_listed_in_an_order_set_by_the_ids_alone(index):
    grants = listed(index, YESTERDAY, 4) + listed(index, DAY, 6)
    by_score = sorted(grants, key=lambda g: listing_score(DAY if g in grants[4:] else YESTERDAY, g.id))
    assert index.ids() == [g.id for g in reversed(by_score)]  # newest day first, then by the ids' hashes
    assert [index.lookup(g.id).day for g in reversed(by_score)] == [DAY] * 6 + [YESTERDAY] * 4


def test_pages_newest_day_first_with_a_cursor_that_survives_removals(index):
    listed(index, TWO_DAYS_AGO, 3)
    listed(index, YESTERDAY, 4)
    listed(index, DAY, 3)
    expected = index.ids()
    seen, cursor = [], None
    while True:
        page = index.page(cursor, limit=3)
        seen += [entry.id for entry in page.entries]
        if page.next_cursor is None:
            break
        cursor = Cursor.decode(page.next_cursor.encode())  # as the client sends it back
        assert base64.urlsafe_b64decode(page.next_cursor.encode() + "==").decode() == f"{cursor.day}:{cursor.id}"
        assert cursor.id == seen[-1] and cursor.day == index.lookup(seen[-1]).day
        index.remove(expected[len(seen)])  # the next entry is withdrawn meanwhile: paging goes on past it
        expected.pop(len(seen))
    assert seen == expected


def colliding_ids() -> tuple[str, str]:
    """Two gallery ids whose 32-bit hashes agree (about 80,000 draws): a tie within a day."""
    seen: dict[float, str] = {}
    while True:
        gallery_id = GalleryGrant.new().id
        score = listing_score(DAY, gallery_id)
        if score in seen:
            return seen[score], gallery_id
        seen[score] = gallery_id


def test_entries_with_the_same_score_page_by_id(index):
    tied = colliding_ids()
    for gallery_id in tied:
        index.reserve(GalleryGrant(gallery_id, "token"), ttl_seconds=60)
        assert index.mark_ready(gallery_id, "ink", "ink", DAY_START, TTL)
    assert set(index.list_released(list(tied), DAY, TTL).values()) == {ReleaseOutcome.LISTED}
    first = index.page(None, limit=1)
    second = index.page(first.next_cursor, limit=1)
    assert [e.id for e in first.entries + second.entries] == sorted(tied, reverse=True)
    assert second.next_cursor is None


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "!!!",
        "bm90LWEtY3Vyc29y",  # "not-a-cursor"
        "aW5mOmFiYw",  # "inf:abc"
        Cursor(DAY, "short").encode(),
        Cursor("2025-13-45", GalleryGrant.new().id).encode(),
        Cursor("yesterday!", GalleryGrant.new().id).encode(),
        Cursor(DAY, GalleryGrant.new().id + "\n").encode(),
        "!" + Cursor(DAY, GalleryGrant.new().id).encode(),  # junk outside the alphabet is not skipped over
        # Today's cursors before #25 were a publish time to the microsecond: no longer accepted.
        base64.urlsafe_b64encode(f"1750000000.123456:{GalleryGrant.new().id}".encode()).decode().rstrip("="),
    ],
)
def test_bad_cursors_are_refused(raw):
    with pytest.raises(ValueError):
        Cursor.decode(raw)


def test_a_gallery_id_with_a_trailing_newline_is_not_one():
    gallery_id = GalleryGrant.new().id
    assert is_gallery_id(gallery_id)
    assert not is_gallery_id(gallery_id + "\n") and not is_gallery_id(gallery_id[:-1] + "\n")


def test_only_a_pending_reservation_becomes_ready(index, client):
    grant = GalleryGrant.new()
    assert not index.mark_ready(grant.id, "ink", "ink", DAY_START, TTL)  # never reserved
    index.reserve(grant, ttl_seconds=60)
    assert index.lookup(grant.id) == Pending(grant.id, grant.token_hash) and index.is_pending(grant.id)
    assert index.remove(grant.id, only_pending=True)  # withdrawn before the copy exists
    assert not index.mark_ready(grant.id, "ink", "ink", DAY_START, TTL)  # the worker comes too late
    assert index.ready_before(DAY_START + 10 * DAY_SECONDS) == [] and isinstance(index.lookup(grant.id), Gone)


def test_a_ready_entry_keeps_only_its_day_and_waits_for_the_next_midnight(index, client):
    grant = ready(index, DAY_START)
    assert index.lookup(grant.id) == Ready(grant.id, grant.token_hash) and not index.is_pending(grant.id)
    assert index.ids() == [] and index.page(None, 10).entries == ()  # unlisted
    assert client.zscore(GalleryIndex.READY_KEY, grant.id) == DAY_START
    assert index.ready_before(DAY_START + DAY_SECONDS - 1) == []  # the same day: not yet
    assert index.ready_before(DAY_START + DAY_SECONDS) == [grant.id]
    # The hash forgets itself a whole TTL after the release that should have come, counted from the day.
    assert expire_at(client, grant) == pytest.approx(DAY_START + DAY_SECONDS + TTL + EXPIRY_SLACK_SECONDS, abs=2)
    raw = client.hgetall(GalleryIndex.ENTRY_PREFIX + grant.id)
    assert set(raw) == {b"state", b"token_hash", b"style", b"family"}
    assert not index.remove(grant.id, only_pending=True)  # no longer a reservation


def test_listing_takes_what_is_still_ready_once(index, client):
    first, withdrawn = ready(index), ready(index)
    assert index.remove(withdrawn.id)
    outcomes = index.list_released([first.id, withdrawn.id], DAY, TTL)
    assert outcomes == {first.id: ReleaseOutcome.LISTED, withdrawn.id: ReleaseOutcome.GONE}
    assert index.list_released([first.id], DAY, TTL) == {first.id: ReleaseOutcome.ALREADY_LISTED}
    assert index.lookup(first.id) == GalleryEntry(first.id, "ink", "ink", DAY, first.token_hash)
    assert index.ids() == [first.id] and index.ready_before(DAY_START + 10 * DAY_SECONDS) == []
    assert client.zscore(GalleryIndex.SET_KEY, first.id) == listing_score(DAY, first.id)
    assert expire_at(client, first) == pytest.approx(removal_deadline(DAY, TTL) + EXPIRY_SLACK_SECONDS, abs=2)
    raw = client.hgetall(GalleryIndex.ENTRY_PREFIX + first.id)
    assert set(raw) == {b"state", b"token_hash", b"style", b"family", b"day"}  # no time finer than the day
    assert not index.remove(first.id, only_ready=True)  # a staged copy's expiry does not take a listed entry


def test_list_then_remove_leaves_only_a_short_tombstone(index, client):
    [grant] = listed(index)
    assert not index.remove(grant.id, only_pending=True)  # a listed entry is not a reservation
    assert index.remove(grant.id) and not index.remove(grant.id)  # exactly one remover
    gone = index.lookup(grant.id)
    assert isinstance(gone, Gone) and token_matches(grant.token, gone.token_hash)
    assert not token_matches(GalleryGrant.new().token, gone.token_hash)
    assert 0 < client.ttl(GalleryIndex.GONE_PREFIX + grant.id) <= TOMBSTONE_SECONDS
    assert index.ids() == [] and index.page(None, 10).entries == ()


def test_a_ready_entry_withdrawn_leaves_the_release_queue(index):
    grant = ready(index)
    assert index.remove(grant.id)
    assert index.ready_before(DAY_START + 10 * DAY_SECONDS) == [] and isinstance(index.lookup(grant.id), Gone)


def test_an_entry_hash_that_expired_is_skipped_and_dropped(index, client):
    kept, lost = listed(index, DAY, 2)
    client.delete(GalleryIndex.ENTRY_PREFIX + lost.id)
    assert index.page(None, 10).entries == (GalleryEntry(kept.id, "ink", "ink", DAY, kept.token_hash),)
    assert index.ids() == [kept.id]


def test_the_days_helpers():
    assert day_of(DAY_START) == DAY and day_of(DAY_START + DAY_SECONDS - 0.001) == DAY
    assert removal_deadline(DAY, TTL) == DAY_START + TTL
    gallery_id = GalleryGrant.new().id
    assert listing_score(DAY, gallery_id) > listing_score(YESTERDAY, GalleryGrant.new().id)
