"""The gateway's gunicorn worker: gunicorn's threaded worker (`gthread`) with the additions listed below.

Why threads (issue 9): with `sync` workers, three clients sending a photo at 2 KB/s held both workers for 32 s
and /healthz waited as long. A gthread worker reads each request on one of `gateway_threads` threads and keeps
idle keep-alive connections in its poller without one, so a few slow clients take a few threads, not the
server. (A slow *body* is also cut off: see services/gateway/bodies.py.)

1. Gunicorn's own refusals — huge headers (431), a bad request line or Content-Length together with chunked
   (400), an over-long URI (414)… — are written as our JSON envelope instead of gunicorn's HTML page, with
   gunicorn's status. Which status an exception gets stays gunicorn's decision: its `handle_error` writes its
   page into a buffer, we read the status line back and write the envelope instead, with the headers of every
   API answer (browsers.py). Its log line is kept, without the client's address (the gateway logs none).
2. The app can ask for the connection to be closed after its response (`CLOSE_CONNECTION` in the WSGI
   environ): a 408 for a stalled upload must not leave the rest of that body to be drained, and RFC 9110
   asks for `Connection: close` on it. WSGI has no way to say so (hop-by-hop headers are dropped).
3. A connection that is not kept alive is closed on its request's thread, not on the main loop (see `handle`).
4. The app can ask whether the worker is stopping (`STOPPING` in the WSGI environ): a live-progress stream
   (events.py, #10) ends within a second of SIGTERM, and its client resumes elsewhere with `Last-Event-ID`,
   instead of holding the worker for its whole graceful timeout.
5. No `Server` header (#25): it names the software to anyone scanning for one to attack and tells a client
   nothing it needs. Gunicorn has no setting for it (its maintainers keep "gunicorn", benoitc/gunicorn#825).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

from gunicorn import util
from gunicorn.http import wsgi
from gunicorn.workers.gthread import ThreadWorker

# Gunicorn's statuses and our codes. Gunicorn can also answer 403 and 417 (TLS, PROXY protocol and Expect
# headers: none configured here): those, and any status it adds later, answer 400 `bad_request` or
# 500 `internal_error`.
_CODE_BY_STATUS = {
    400: "bad_request",
    414: "uri_too_long",
    431: "headers_too_large",
    500: "internal_error",
    501: "not_implemented",
}
#: WSGI environ key: a callable answering whether this worker is shutting down.
STOPPING = "portraits.worker_stopping"

_MESSAGES = {
    "bad_request": "the request is not valid HTTP/1.1",
    "uri_too_long": "the request line is too long",
    "headers_too_large": "the request headers are too many or too large",
    "internal_error": "internal error",
    "not_implemented": "the transfer coding is not supported",
}


class _Captured:
    """Stands in for the client socket while gunicorn writes its HTML error page."""

    def __init__(self) -> None:
        self.data = bytearray()

    def gettimeout(self) -> float:
        return 0.0  # so gunicorn's write_nonblock leaves the blocking mode alone

    def sendall(self, data: bytes) -> None:
        self.data += data

    def status(self) -> int:
        try:
            return int(bytes(self.data).split(b"\r\n", 1)[0].split()[1])
        except (IndexError, ValueError):
            return 500


def error_response(status: int) -> bytes:
    """A complete HTTP/1.1 response carrying the envelope for one of gunicorn's own error statuses."""
    # Imported here: gunicorn's master imports this module too, and should not load Flask and the metrics.
    from services.gateway.browsers import API_HEADERS
    from services.gateway.errors import CODES, envelope

    code = _CODE_BY_STATUS.get(status) or ("internal_error" if status >= 500 else "bad_request")
    status = status if status in _CODE_BY_STATUS else CODES[code].status
    body = json.dumps(envelope(code, _MESSAGES[code])).encode()
    head = (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
        "Connection: close\r\nContent-Type: application/json\r\n"
        + "".join(f"{name}: {value}\r\n" for name, value in API_HEADERS.items())
        + f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body


WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class AnonymousResponse(wsgi.Response):  # type: ignore[misc]  # gunicorn ships no type information
    """Gunicorn's HTTP/1 response without its `Server` line (see 5. above)."""

    def default_headers(self) -> list[str]:
        return [line for line in super().default_headers() if not line.lower().startswith("server:")]


class GatewayWorker(ThreadWorker):  # type: ignore[misc]  # gunicorn ships no type information
    wsgi: WsgiApp  # set by gunicorn's load_wsgi (and wrapped below)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._local = threading.local()  # the gunicorn request each thread is serving

    def init_process(self) -> None:
        # gthread's handle_request builds each response with `wsgi.create`, which falls back to this module global
        # for its class (only HTTP/2 passes its own): set in the worker process, before it serves anything.
        wsgi.Response = AnonymousResponse
        super().init_process()  # gunicorn: last, it runs the worker's loop

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        page = _Captured()
        # addr=None: gunicorn logs "Invalid request from ip=…"; keep the address out of the log.
        super().handle_error(req, page, None, exc)
        try:
            util.write_nonblock(client, error_response(page.status()))
        except Exception:
            self.log.debug("Failed to send error message.")

    def handle(self, conn: Any) -> Any:
        keep = super().handle(conn)
        if keep is False:
            # Close here, on this request's thread. Gunicorn would close it on the worker's main loop, and its
            # graceful close lingers up to 2 s reading what the client still sends: when 20 slow uploaders got
            # their 408 together, the main loop stalled 10 s and the keep-alive connections of every other
            # client were dropped or left unanswered (`make chaos`, issue 9). The main loop's own close that
            # follows finds the socket closed and returns at once.
            conn.close(graceful=True)
        return keep

    def handle_request(self, req: Any, conn: Any) -> bool:
        self._local.req = req
        try:
            return bool(super().handle_request(req, conn))  # gunicorn's answer: keep the connection open
        finally:
            self._local.req = None

    def load_wsgi(self) -> None:
        super().load_wsgi()
        from services.gateway.errors import CLOSE_CONNECTION

        app = self.wsgi

        def with_close_hook(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            req = getattr(self._local, "req", None)
            if req is not None:
                # Read by gunicorn's Response: `Connection: close`, then the connection is closed, unread
                # body and all.
                environ[CLOSE_CONNECTION] = lambda: setattr(req, "must_close", True)
            environ[STOPPING] = lambda: not self.alive
            return app(environ, start_response)

        self.wsgi = with_close_hook
