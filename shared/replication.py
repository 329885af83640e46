"""Whether Redis replicas hold what this process has written (#24), for a write whose loss in a failover would
cost more than a wait: Redis WAIT, which counts from its own connection's last write.

The gateway's WAIT rides on the upload's last write (`SourceKeys.publish`). A caller whose writes went through
other connections (a Lua call here, a pipeline there) uses `confirm`: a write of its own, then WAIT, on one
connection in one round trip. Replication is one ordered stream, so every write this Redis completed before it
is covered — provided this Redis is the one that took those writes: a failover between them and the WAIT would
send the WAIT to the new primary. So `confirm` also reads back, on the same connection, the field that says the
write is there (the job's `state` is `done`), and counts nothing unless it is.
"""

from __future__ import annotations

import json

import redis

MARKER_KEY = "portraits:replication-marker"  # written only to give the WAIT a write of its own to count from


def confirm(client: redis.Redis, replicas: int, wait_ms: int, *, key: str, field: str, value: object) -> int:
    """How many replicas (up to `replicas`) hold every write completed so far, waiting up to `wait_ms`; 0 when the
    server answering does not hold `value` (JSON) in hash `key`'s `field`, i.e. the write being confirmed."""
    with client.pipeline(transaction=False) as pipe:
        pipe.incr(MARKER_KEY)
        pipe.execute_command("WAIT", replicas, wait_ms)  # type: ignore[no-untyped-call]
        pipe.hget(key, field)
        _, acknowledged, held = pipe.execute()
    return int(acknowledged) if held is not None and json.loads(held) == value else 0
