"""What every answer carries because a browser may be reading it, and the cross-site requests refused because a
browser may be sending them on another site's behalf (#25).

Headers: `X-Content-Type-Options: nosniff` on every answer, and `Cache-Control: no-store` on every API answer,
errors included. An API answer can hold a presigned URL (a job's status, the gallery) or a withdraw token (the
202), which no shared or browser cache should keep. The page and its files (site.py) keep their own `no-cache`.

Cross-site requests: any page on the web can make its visitor's browser POST a multipart form or send a DELETE
to us (a "simple" request: no preflight, only the answer is hidden from that page). That would let a stranger's
page upload in the visitor's name — under the visitor's rate limit, and with consent to the gallery ticked — or
delete a job whose id it knows. The rule is Go's `http.CrossOriginProtection` (Go 1.25; Filippo Valsorda's
"CSRF" write-up): browsers say where a request comes from in `Sec-Fetch-Site` (all current ones) or at least
`Origin`; a state-changing request from another site is refused. Clients that are not browsers send neither
header and are never affected, so the API needs no token or custom header, and the page needs no change.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from flask import Flask, Response, request

from services.gateway.errors import ApiError
from services.gateway.site import site as page  # the page and its files, whose caching is their own

#: Set on every API answer; gunicorn's own error answers (gunicorn_worker.py) carry them too.
API_HEADERS: Mapping[str, str] = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
#: Methods that change nothing; everything else is checked.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: `Sec-Fetch-Site` values a browser sends for our own page ("same-origin") or for what the person did
#: themselves: typed the address, a bookmark ("none"). `same-site` (a sibling subdomain) is another site's page
#: too, as Go has it: subdomains are often someone else's.
_OWN = frozenset({"same-origin", "none"})


def cross_site_refusal(
    method: str, host: str, trusted_origins: frozenset[str], *, sec_fetch_site: str = "", origin: str = ""
) -> ApiError | None:
    """The refusal for a state-changing request that a browser sent from another site's page, or None. `host`:
    the request's Host; `sec_fetch_site`, `origin`: its headers of those names ("" when absent)."""
    if method.upper() in SAFE_METHODS:
        return None
    origin = origin.strip().lower().rstrip("/")
    if origin and origin in trusted_origins:
        return None
    fetch_site = sec_fetch_site.strip().lower()
    if fetch_site:
        if fetch_site in _OWN:
            return None
        return _refusal(method, "its Sec-Fetch-Site")
    # Browsers too old for Sec-Fetch-Site still send Origin on a cross-origin POST or DELETE; its host must be
    # ours. No Origin at all: a client that is not a browser, or a same-origin request from an old one.
    if not origin or _host_of(origin) == host.lower():
        return None
    return _refusal(method, "its Origin is not this host")


def _refusal(method: str, evidence: str) -> ApiError:
    return ApiError(
        "cross_site_request",
        f"a browser sent this {method.upper()} from another site's page ({evidence}); uploads and deletions are "
        "accepted from this service's own page or from clients that are not browsers",
    )


def _host_of(origin: str) -> str | None:
    try:
        return urlsplit(origin).netloc or None  # "null" (a sandboxed frame, a file) has none
    except ValueError:
        return None


def register(app: Flask, trusted_origins: frozenset[str]) -> None:
    @app.before_request
    def _refuse_cross_site() -> None:
        refusal = cross_site_refusal(
            request.method,
            request.host,
            trusted_origins,
            sec_fetch_site=request.headers.get("Sec-Fetch-Site", ""),
            origin=request.headers.get("Origin", ""),
        )
        if refusal is not None:
            raise refusal

    @app.after_request
    def _headers(response: Response) -> Response:
        # Runs for error handlers' answers too (Flask finalizes them like any other), Werkzeug's 404, 405 and
        # 413 and Flask-Limiter's 429 included; after site.py's own hook, whose Cache-Control it leaves alone.
        response.headers["X-Content-Type-Options"] = "nosniff"
        if request.blueprint != page.name:
            response.headers["Cache-Control"] = API_HEADERS["Cache-Control"]
        return response
