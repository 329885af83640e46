"""A real HTTP receiver for webhook tests (#10): http.server on 127.0.0.1 in a thread, answering from a script.

Loopback is exactly what the SSRF guard refuses, so tests that deliver to it allow-list `127.0.0.1`.
"""

from __future__ import annotations

import base64
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOOPBACK = "127.0.0.1"


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Answers each POST with the next status of `script` (then 200s); records every request."""

    script: list[int] = field(default_factory=list)
    location: str = ""  # sent with 3xx answers
    received: list[Received] = field(default_factory=list)
    port: int = 0

    def url(self, path: str = "/hook") -> str:
        return f"http://{LOOPBACK}:{self.port}{path}"

    def statuses(self) -> list[int]:
        return list(self._answered)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._answered: list[int] = []

    def answer(self, request: Received) -> int:
        with self._lock:
            self.received.append(request)
            status = self.script.pop(0) if self.script else 200
            self._answered.append(status)
            return status


@contextmanager
def receiver(script: list[int] | None = None, location: str = "") -> Iterator[Receiver]:
    state = Receiver(list(script or []), location)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            status = state.answer(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(status)
            if 300 <= status < 400 and state.location:
                self.send_header("Location", state.location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST  # a followed redirect would arrive as a GET (303) or POST (307): both are recorded

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
