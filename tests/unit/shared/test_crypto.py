"""Sealing sources: only the right key and the right job id open a blob."""

from __future__ import annotations

import pytest

from shared.crypto import SealBroken, new_key, seal, unseal


def test_round_trip():
    key = new_key()
    assert len(key) == 32
    blob = seal(key, b"selfie bytes", "job-a")
    assert b"selfie bytes" not in blob
    assert unseal(key, blob, "job-a") == b"selfie bytes"


@pytest.mark.parametrize("mutation", ["other key", "other job", "flipped bit", "truncated"])
def test_anything_else_is_refused(mutation):
    key = new_key()
    blob = seal(key, b"selfie bytes", "job-a")
    args = {"key": key, "blob": blob, "job_id": "job-a"}
    if mutation == "other key":
        args["key"] = new_key()
    elif mutation == "other job":
        args["job_id"] = "job-b"
    elif mutation == "flipped bit":
        args["blob"] = blob[:-1] + bytes([blob[-1] ^ 1])
    else:
        args["blob"] = blob[:10]
    with pytest.raises(SealBroken):
        unseal(args["key"], args["blob"], args["job_id"])
