"""SeaweedFS's status and UI pages, tried without credentials on every HTTP port of a `weed server`, and what
its CORS grants a browser (#25).

The master's UI (/, /ui/index.html) and /cluster/status, and the volume server's /status (data directory,
disk use, per-bucket file and delete counts: enough to count uploads over time) answer anyone who reaches
their port, whatever weed's flags: -disableHttp, -whiteList and the JWT keys leave them open (weed 4.48). So
the deployments keep those ports where no client reaches them (deploy/seaweedfs/start.sh: compose binds them
to the container's loopback; the dev overlay's NetworkPolicy admits only the pod itself), and the local run
keeps them on 127.0.0.1 (PRIVACY.md says why that is acceptable). `probe` says what answers at an address:

    from scripts.devstack import status_pages
    for page in status_pages.probe(server.ports):            # the local run's layout: 127.0.0.1
        print(page.row())
    status_pages.browser(presigned_url, "https://stranger.example")  # (200, {}): no CORS for strangers
"""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass

from scripts.devstack.ports import LOOPBACK, WeedPorts

PATHS = ("/", "/status", "/ui/index.html", "/cluster/status", "/dir/status", "/vol/status", "/metrics")
# What weed 4.48 answers on loopback with start.sh's flags: nothing closes these but the network.
OPEN_WHERE_REACHABLE = frozenset(
    {("master", "/"), ("master", "/ui/index.html"), ("master", "/cluster/status"), ("volume", "/status")}
)
STRANGER_ORIGIN = "https://stranger.example"  # sent along: a page that answered must not grant it CORS
TIMEOUT = 3.0

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class Page:
    """One unsigned GET. `status` is None when nothing answered at that address (`error` says how)."""

    part: str  # master, volume, filer, s3
    path: str
    url: str
    status: int | None
    error: str = ""
    allow_origin: str = ""  # the answer's Access-Control-Allow-Origin
    size: int = 0  # bytes of body (up to 64 KiB)

    @property
    def answered(self) -> bool:
        """It gave a page: a 2xx or 3xx with a body. (A 401, 403 or 404 is a refusal, as is no answer; the S3
        gateway's /status is an empty 200, its health check, like /healthz.)"""
        return self.status is not None and self.status < 400 and self.size > 0

    def row(self) -> str:
        outcome = "ANSWERS" if self.answered else "refused"
        return f"{self.part:<7} {self.path:<15} {self.status or self.error:<24} {outcome}"


def _get(part: str, path: str, url: str) -> Page:
    request = urllib.request.Request(url, headers={"Origin": STRANGER_ORIGIN})
    try:
        with _OPENER.open(request, timeout=TIMEOUT) as response:
            size = len(response.read(65536))
            origin = response.headers.get("Access-Control-Allow-Origin", "")
            return Page(part, path, url, response.status, allow_origin=origin, size=size)
    except urllib.error.HTTPError as exc:
        return Page(part, path, url, exc.code, allow_origin=exc.headers.get("Access-Control-Allow-Origin", "") or "")
    except urllib.error.URLError as exc:  # refused, reset, timed out: urllib wraps the socket's error
        reason = exc.reason
        return Page(part, path, url, None, error=type(reason).__name__ if isinstance(reason, OSError) else str(reason))
    except OSError as exc:
        return Page(part, path, url, None, error=type(exc).__name__)


def probe(ports: WeedPorts, host: str = LOOPBACK) -> list[Page]:
    """Every path of PATHS on the master, volume, filer and S3 HTTP ports at `host`."""
    parts = (("master", ports.master), ("volume", ports.volume), ("filer", ports.filer), ("s3", ports.s3))
    return [_get(part, path, f"http://{host}:{port}{path}") for part, port in parts for path in PATHS]


def answered(pages: list[Page]) -> set[tuple[str, str]]:
    """(part, path) of the pages that answered."""
    return {(page.part, page.path) for page in pages if page.answered}


def browser(url: str, origin: str, *, preflight: str = "") -> tuple[int | None, dict[str, str]]:
    """What a browser on a page of `origin` gets from `url`: a GET or, with `preflight`, the OPTIONS that asks
    whether that method may follow. The status (None: no answer) and the Access-Control-* headers, lower-cased."""
    headers = {"Origin": origin, **({"Access-Control-Request-Method": preflight} if preflight else {})}
    request = urllib.request.Request(url, method="OPTIONS" if preflight else "GET", headers=headers)
    try:
        with _OPENER.open(request, timeout=TIMEOUT) as response:
            status, answer = response.status, response.headers
    except urllib.error.HTTPError as exc:
        status, answer = exc.code, exc.headers
    except OSError:  # weed 4.48 drops some refused preflights (a recovered panic): a refusal to a browser
        return None, {}
    return status, {k.lower(): v for k, v in answer.items() if k.lower().startswith("access-control-")}
