"""The source reader: a source read ahead and opened with its claim's key, or with the key once published; a source
that can never be read is the job's permanent failure, and one never stored is left to its deletion schedule."""

from __future__ import annotations

import pytest

from services.worker.source_reader import SourceReader, SourceUnusable
from shared.crypto import new_key, seal
from shared.errors import JobErrorCode
from shared.source_keys import KeyGone, SourceNotStored
from shared.storage import ObjectMissing

PHOTO = b"photo bytes"


class Storage:
    sources_bucket = "sources"

    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects

    def get(self, bucket: str, key: str) -> bytes:
        try:
            return self.objects[key]
        except KeyError:
            raise ObjectMissing(key) from None


class Keys:
    def __init__(self, key: bytes | None = None, error: Exception | None = None) -> None:
        self.key, self.error = key, error

    def load(self, job_id: str) -> bytes:
        if self.error is not None:
            raise self.error
        assert self.key is not None
        return self.key


def reader(objects: dict[str, bytes], keys: Keys) -> SourceReader:
    return SourceReader(Storage(objects), keys)


def test_a_source_read_ahead_opens_with_its_claims_key():
    key = new_key()
    sources = reader({"sources/a": seal(key, PHOTO, "a")}, Keys(error=AssertionError("no wait")))
    assert sources.open("a", key, sources.fetch_ahead("a")) == PHOTO


def test_a_key_published_after_the_claim_is_waited_for():
    key = new_key()
    sources = reader({"sources/a": seal(key, PHOTO, "a")}, Keys(key))
    assert sources.open("a", None, None) == PHOTO


@pytest.mark.parametrize(
    ("keys", "stored", "code", "erase"),
    [
        (Keys(error=SourceNotStored("a")), False, JobErrorCode.SOURCE_EXPIRED, False),
        (Keys(error=KeyGone("a")), False, JobErrorCode.SOURCE_EXPIRED, True),
        (Keys(new_key()), True, JobErrorCode.SOURCE_UNREADABLE, True),
    ],
)
def test_a_source_that_cannot_be_read_fails_the_job(keys, stored, code, erase):
    objects = {"sources/a": seal(new_key(), PHOTO, "a")} if stored else {}
    sources = reader(objects, keys)
    with pytest.raises(SourceUnusable) as raised:
        sources.open("a", None, sources.fetch_ahead("a"))
    assert raised.value.failure.code == code and raised.value.erase is erase
