"""Job ids: unguessable (192 random bits), URL-safe, and cheap to validate before touching Redis."""

from __future__ import annotations

import re
import secrets

_ID_BYTES = 24  # 192 bits; the id is the only capability a client holds over its photo
_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{32}")


def new_job_id() -> str:
    return secrets.token_urlsafe(_ID_BYTES)


def is_job_id(value: str) -> bool:
    # fullmatch: `match` with `$` also accepts a trailing newline, which would reach Redis keys and logs (#25).
    return _ID_PATTERN.fullmatch(value) is not None
