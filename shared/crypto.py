"""Crypto-shredding of sources: each upload is sealed with its own AES-256-GCM key, kept only in Redis.

The key expires with the source's maximum age and is deleted with the source, so any copy of a source that
escapes deletion (a replica, a backup, a failed delete) is unreadable once its key is gone. Where the keys live,
and how publishing one says its source is stored: shared/source_keys.py.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_NONCE_BYTES = 12  # GCM's standard nonce; random per message, and each key seals exactly one message


class SealBroken(ValueError):
    """Ciphertext and key do not match (tampered, truncated or a different job's key)."""


def new_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def seal(key: bytes, plaintext: bytes, job_id: str) -> bytes:
    """nonce ‖ ciphertext+tag; the job id is bound as associated data so blobs cannot be swapped between jobs."""
    nonce = os.urandom(_NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, job_id.encode())


def unseal(key: bytes, blob: bytes, job_id: str) -> bytes:
    try:
        return AESGCM(key).decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], job_id.encode())
    except (InvalidTag, ValueError) as exc:
        raise SealBroken(f"source of job {job_id} cannot be decrypted") from exc
