"""Whether Redis replicas hold what this process has written (#24), for a write whose loss in a failover would
cost more than a wait: Redis WAIT, which counts from its own connection's last write.

The gateway's WAIT rides on the upload's last write (`SourceKeys.publish`). A caller whose writes went through
other connections (a Lua call here, a pipeline there) uses `confirm`: a write of its own, then WAIT, on one
connection in one round trip. Replication is one ordered stream, so every write this Redis completed before it
is covered.
"""

from __future__ import annotations

import redis

MARKER_KEY = "portraits:replication-marker"  # written only to give the WAIT a write of its own to count from


def confirm(client: redis.Redis, replicas: int, wait_ms: int) -> int:
    """How many replicas (up to `replicas`) hold every write completed so far, waiting up to `wait_ms`."""
    with client.pipeline(transaction=False) as pipe:
        pipe.incr(MARKER_KEY)
        pipe.execute_command("WAIT", replicas, wait_ms)  # type: ignore[no-untyped-call]
        return int(pipe.execute()[1])
