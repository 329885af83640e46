"""Polling until a server answers."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable


def poll(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> float:
    start = time.monotonic()
    last_error: BaseException | None = None
    while time.monotonic() - start <= timeout:
        try:
            if check():
                return time.monotonic() - start
        except Exception as exc:
            last_error = exc
        time.sleep(interval)
    raise TimeoutError(f"{what} not ready after {timeout:.0f}s (last error: {last_error!r})")


def redis_ready(url: str) -> bool:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        return bool(client.ping())
    finally:
        client.close()


def wait_for_redis(url: str, timeout: float = 10.0) -> float:
    """Wait until PING succeeds; return the seconds waited."""
    return poll(lambda: redis_ready(url), timeout, f"redis at {url}")


def weed_volume_server_ready(volume_url: str) -> bool:
    """The volume server heartbeats to the master (its /healthz answers 503 until then). The S3 gateway may
    answer before that, and a PUT in that window fails with a 500. (The master's /dir/status, which said
    the same, is off with the rest of its HTTP API: issue 9.)"""
    no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never via a proxy
    with no_proxy.open(f"{volume_url}/healthz", timeout=1.0) as response:
        return bool(response.status == 200)
