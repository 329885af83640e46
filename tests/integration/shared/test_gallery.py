"""The gallery index on a real Redis (#10): newest-first cursor paging, publication only of a pending
reservation, withdraw tombstones that tell only the token holder anything."""

from __future__ import annotations

import pytest
import redis

from shared.gallery import (
    TOMBSTONE_SECONDS,
    Cursor,
    GalleryEntry,
    GalleryGrant,
    GalleryIndex,
    Gone,
    Pending,
    day_of,
    object_key,
    token_matches,
)

GALLERY_DB = 7
TTL = 3600


@pytest.fixture
def client(redis_server) -> redis.Redis:
    client = redis.Redis.from_url(redis_server.url.rsplit("/", 1)[0] + f"/{GALLERY_DB}")
    client.flushdb()
    return client


@pytest.fixture
def index(client) -> GalleryIndex:
    return GalleryIndex(client)


def published(index: GalleryIndex, at: float, style: str = "ink") -> tuple[GalleryGrant, GalleryEntry]:
    grant = GalleryGrant.new()
    index.reserve(grant, ttl_seconds=60)
    entry = GalleryEntry(
        id=grant.id,
        style=style,
        family="ink",
        day=day_of(at),
        object_key=object_key(grant.id),
        token_hash=grant.token_hash,
        published_at=at,
    )
    assert index.publish(entry, TTL)
    return grant, entry


def test_pages_newest_first_with_a_cursor_that_survives_ties_and_removals(index):
    base = 1_750_000_000.0
    entries = [published(index, base + n)[1] for n in range(7)]
    entries += [published(index, base + 3)[1] for _ in range(3)]  # three more published in the same instant
    expected = sorted(entries, key=lambda e: (e.published_at, e.id), reverse=True)
    seen, cursor = [], None
    while True:
        page = index.page(cursor, limit=3)
        seen += page.entries
        if page.next_cursor is None:
            break
        cursor = Cursor.decode(page.next_cursor.encode())  # as the client sends it back
        index.remove(expected[len(seen)].id)  # the next entry is withdrawn meanwhile: paging goes on past it
        expected.pop(len(seen))
    assert [e.id for e in seen] == [e.id for e in expected]
    assert seen[0] == expected[0] and seen[0].day == "2025-06-15"


def test_bad_cursors_are_refused(index):
    for raw in ("", "!!!", "bm90LWEtY3Vyc29y", Cursor(1.0, "short").encode(), "aW5mOmFiYw"):
        with pytest.raises(ValueError):
            Cursor.decode(raw)


def test_only_a_pending_reservation_is_published(index, client):
    grant = GalleryGrant.new()
    entry = GalleryEntry(
        id=grant.id,
        style="ink",
        family="ink",
        day="2025-01-01",
        object_key=object_key(grant.id),
        token_hash=grant.token_hash,
        published_at=1.0,
    )
    assert not index.publish(entry, TTL)  # never reserved
    index.reserve(grant, ttl_seconds=60)
    assert index.lookup(grant.id) == Pending(grant.id, grant.token_hash) and index.is_pending(grant.id)
    assert index.remove(grant.id, only_pending=True)  # withdrawn before the copy exists
    assert not index.publish(entry, TTL)  # the worker comes too late: nothing is listed
    assert index.ids() == [] and isinstance(index.lookup(grant.id), Gone)


def test_publish_then_remove_leaves_only_a_short_tombstone(index, client):
    grant, entry = published(index, 1_750_000_000.0)
    assert index.lookup(grant.id) == entry
    assert TTL < client.ttl(GalleryIndex.ENTRY_PREFIX + grant.id) <= TTL + 86_400  # forgets itself even unswept
    assert not index.remove(grant.id, only_pending=True)  # a published entry is not a reservation
    assert index.remove(grant.id) and not index.remove(grant.id)  # exactly one remover
    gone = index.lookup(grant.id)
    assert isinstance(gone, Gone) and token_matches(grant.token, gone.token_hash)
    assert not token_matches(GalleryGrant.new().token, gone.token_hash)
    assert 0 < client.ttl(GalleryIndex.GONE_PREFIX + grant.id) <= TOMBSTONE_SECONDS
    assert index.ids() == [] and index.page(None, 10).entries == ()


def test_an_entry_hash_that_expired_is_skipped_and_dropped(index, client):
    kept = published(index, 2.0)[1]
    lost = published(index, 3.0)[1]
    client.delete(GalleryIndex.ENTRY_PREFIX + lost.id)
    assert index.page(None, 10).entries == (kept,)
    assert index.ids() == [kept.id]
