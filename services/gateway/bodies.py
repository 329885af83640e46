"""Slow request bodies get a deadline (issue 9: three clients sending a photo at 2 KB/s held both sync workers
for 32 s; with threads they would still hold one thread each for as long as they liked).

The rule is Apache mod_reqtimeout's: a body has `gateway_body_timeout` seconds, extended by one second per
`gateway_body_min_rate` bytes received. A client below that average rate, or one that stops sending, gets a
408 `upload_timeout` and the connection is closed (the rest of its body is not waited for).

It needs the server's socket (gunicorn puts it in `gunicorn.socket`): each read from the body runs with a
socket timeout of the time left. Reads are taken in small pieces because one read may need several `recv`s,
each allowed the whole remaining time: with 4 KiB pieces a client trickling just above nothing can overrun its
deadline by one piece's worth of its own slowness. That covers stalled and slow clients; a client feeding a
byte just before every timeout is the buffering proxy's to stop (deploy/k8s: the ingress buffers uploads).
Without a socket (Werkzeug's test client) the body is passed through unbounded.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from services.gateway.errors import BODY_TIMED_OUT as TIMED_OUT
from services.gateway.errors import ApiError

_PIECE_BYTES = 4 * 1024


class _DeadlineBody:
    def __init__(self, inner: Any, sock: socket.socket, environ: dict[str, Any], grace: float, min_rate: float) -> None:
        self._inner = inner
        self._sock = sock
        self._environ = environ
        self._started = time.monotonic()
        self._grace = grace
        self._min_rate = min_rate
        self._received = 0

    def _time_left(self, wanted: int) -> float:
        allowed = self._grace + (self._received + wanted) / self._min_rate
        return self._started + allowed - time.monotonic()

    def _timed_out(self) -> ApiError:
        self._environ[TIMED_OUT] = True
        return ApiError(
            "upload_timeout",
            f"the request body arrived too slowly (under {self._min_rate / 1024:g} KiB/s after {self._grace:g} s)",
        )

    def _bounded(self, read: Callable[[int], bytes], size: int) -> bytes:
        """One read of at most `size` bytes, with the socket timeout set to the time left for them."""
        left = self._time_left(size)
        if self._environ.get(TIMED_OUT) or left <= 0:
            raise self._timed_out()
        previous = self._sock.gettimeout()
        self._sock.settimeout(left)
        try:
            data = read(size)
        except TimeoutError:
            raise self._timed_out() from None
        finally:
            with contextlib.suppress(OSError):  # closed under us: the next read says so
                self._sock.settimeout(previous)
        self._received += len(data)
        return data

    def read(self, size: int | None = -1) -> bytes:
        chunks, wanted = [], size if size is not None and size >= 0 else None
        while wanted is None or wanted > 0:
            piece = self._bounded(self._inner.read, _PIECE_BYTES if wanted is None else min(wanted, _PIECE_BYTES))
            if not piece:
                break
            chunks.append(piece)
            if wanted is not None:
                wanted -= len(piece)
        return b"".join(chunks)

    def readline(self, size: int | None = -1) -> bytes:
        # A line may come back cut at one piece (readline's size argument allows it); Werkzeug uses read().
        return self._bounded(self._inner.readline, min(size, _PIECE_BYTES) if size and size > 0 else _PIECE_BYTES)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.readline, b"")


class BodyDeadline:
    """WSGI middleware that puts every request body with a socket under the deadline above."""

    def __init__(self, app: Callable[..., Iterable[bytes]], grace_seconds: float, min_rate: float) -> None:
        self.app = app
        self.grace = grace_seconds
        self.min_rate = min_rate

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        sock = environ.get("gunicorn.socket")
        if isinstance(sock, socket.socket) and "wsgi.input" in environ:
            environ["wsgi.input"] = _DeadlineBody(environ["wsgi.input"], sock, environ, self.grace, self.min_rate)
        return self.app(environ, start_response)
