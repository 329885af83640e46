"""The website a person uses (#10): `GET /` serves the page, `/static/…` its script, stylesheet and icon, and
`/portraits/<id>/download` sends the browser to its portrait as a file to save.

Plain HTML, CSS and ES modules from `static/`, no build step. Every response of this blueprint carries the
security headers below; the JSON API's get `no-store` and `nosniff` from browsers.py, which leaves these alone.

Why these headers:
- a strict Content-Security-Policy: nothing runs or loads from anywhere but us, no inline script or style
  (so an injected fragment cannot execute), nobody may frame the page. `img-src` also allows the S3 origin
  browsers fetch from, because the presigned result and gallery URLs point there, and `blob:` for the local
  preview of the chosen photo (it never leaves the browser until the person submits it).
- `Referrer-Policy: no-referrer`: a presigned URL or a portrait id never leaks to the S3 server in a Referer.
- `Permissions-Policy: camera=(self)`: the file input's `capture` may open the front camera, nothing else may.
- `Cache-Control: no-cache` on the page and its files: they are not versioned by name, so a browser
  revalidates them (an ETag makes that a 304) rather than keep an old script next to a newer API.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

from flask import Blueprint, Flask, Response, redirect
from werkzeug.wrappers import Response as Redirect

from services.gateway.context import gateway
from services.gateway.errors import ApiError
from services.gateway.views import portrait_view
from shared.ids import is_job_id
from shared.jobs import JobState
from shared.jobs import now as clock
from shared.settings import Settings

STATIC_FOLDER = Path(__file__).parent / "static"
#: The download redirect's presigned URL is followed at once: a short life is enough.
DOWNLOAD_URL_SECONDS = 60
_SAFE_NAME = re.compile(r"[^a-z0-9-]")

site = Blueprint("site", __name__, static_folder=STATIC_FOLDER, static_url_path="/static")


def register(app: Flask) -> None:
    app.register_blueprint(site)


@site.get("/")
def index() -> Response:
    return Response(index_html(gateway().settings), content_type="text/html; charset=utf-8")


@site.get("/static/index.html")
def raw_index() -> Redirect:
    return redirect("/", 308)  # the page is `/`, with this deployment's figures filled in


@site.get("/portraits/<id>/download")
def download(id: str) -> Redirect:
    """A redirect to a short-lived presigned URL that makes S3 answer `Content-Disposition: attachment`: the
    `download` attribute of a link is ignored across origins, and the CSP's `connect-src 'self'` keeps the page
    from fetching the image itself. The same rules as GET /v1/portraits/<id>: gone, expired or unfinished → 404."""
    gw = gateway()
    job = gw.jobs.get(id) if is_job_id(id) else None
    if job is None or job.state is not JobState.DONE or not job.result_key or portrait_view(gw, job, clock()) is None:
        raise ApiError("not_found", "no such portrait (it may have expired or been deleted)")
    style = _SAFE_NAME.sub("", job.style or "") or "painted"
    extension = job.result_key.rsplit(".", 1)[-1] if "." in job.result_key else "jpg"
    url = gw.objects.presigned_get(
        gw.objects.results_bucket,
        job.result_key,
        DOWNLOAD_URL_SECONDS,
        download_name=f"portrait-{style}.{_SAFE_NAME.sub('', extension)}",
    )
    response = redirect(url, 303)
    response.headers["Cache-Control"] = "no-store"
    return response


@site.after_request
def _security_headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = content_security_policy(gateway().settings)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Permissions-Policy"] = "camera=(self)"
    response.headers["Cross-Origin-Opener-Policy"] = "same-origin"
    response.headers.setdefault("Cache-Control", "no-cache")
    return response


def s3_public_origin(settings: Settings) -> str:
    """scheme://host[:port] of the S3 endpoint browsers are sent to by presigned URLs."""
    parts = urlsplit(settings.s3_public_endpoint_url or settings.s3_endpoint_url)
    return f"{parts.scheme}://{parts.netloc}"


@cache
def _policy(s3_origin: str) -> str:
    directives = {
        "default-src": "'self'",
        "img-src": f"'self' {s3_origin} data: blob:",
        "connect-src": "'self'",
        "style-src": "'self'",
        "script-src": "'self'",
        "frame-ancestors": "'none'",
        "base-uri": "'none'",
        "form-action": "'self'",
    }
    return "; ".join(f"{name} {value}" for name, value in directives.items())


def content_security_policy(settings: Settings) -> str:
    return _policy(s3_public_origin(settings))


def index_html(settings: Settings) -> str:
    """index.html with this deployment's figures: how long a portrait is kept (the countdown), the upload limit
    and how long a gallery entry stays."""
    gallery_ttl = getattr(settings, "gallery_ttl_seconds", 30 * 86_400)
    return _render(
        _read_index(),
        {
            "__RESULT_TTL_SECONDS__": str(settings.result_ttl_seconds),
            "__MAX_UPLOAD_MB__": f"{settings.max_upload_bytes / 1024 / 1024:g}",
            "__GALLERY_TTL_DAYS__ days": duration_words(gallery_ttl),
        },
    )


@cache
def _read_index() -> str:
    return (STATIC_FOLDER / "index.html").read_text(encoding="utf-8")


def _render(template: str, values: dict[str, str]) -> str:
    for placeholder, value in values.items():
        template = template.replace(placeholder, value)
    return template


def duration_words(seconds: int) -> str:
    """30 days, 12 hours, 5 minutes: the largest whole unit."""
    for unit, size in (("day", 86_400), ("hour", 3_600), ("minute", 60)):
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'' if count == 1 else 's'}"
    return f"{seconds} seconds"
