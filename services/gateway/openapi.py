"""The gateway's OpenAPI 3.1 document, as data. Error codes come from `errors.CODES`, so the document cannot
drift from what the handlers emit; a unit test checks its paths against the app's URL map. A failed job's codes
come from the job error vocabulary (shared/errors.py), the styles from the public style contract (shared/styles.py):
the gateway imports nothing from the worker (#12).

Long on purpose: one document, mostly literal schema and prose, whose parts point at each other
by `$ref`; split by section, a reader would follow the references across files.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from services.gateway.errors import CODES
from services.gateway.sse import SseEventName
from shared.errors import JOB_ERRORS, job_error_codes
from shared.stages import REPORTED_STAGES
from shared.styles import Family, Painter, choices

API_VERSION = "1.0.0"
ENVELOPE_REF = "#/components/schemas/Error"
_JSON = "application/json"
_ERROR_EXAMPLE = {"error": {"code": "not_found", "message": "no such portrait"}}

NULL_CONVENTION = (
    "Every field is always present; a field that does not apply to the job's current status is `null` (never omitted)."
)


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    kind = schema["type"]
    return {**schema, "type": [kind, "null"] if isinstance(kind, str) else [*kind, "null"]}


JOB_ERROR_REF = "#/components/schemas/JobError"


def _job_error() -> dict[str, Any]:
    """A failed job's `error` (in its status, its events and its webhook): every code of the vocabulary, each
    with its default message, read from the one table (shared/errors.py) so no code can be missing."""
    lines = []
    for code, entry in sorted(JOB_ERRORS.items()):
        kind = (
            "permanent: try another photo" if entry.permanent else "not the photo's fault: uploading it again may work"
        )
        lines.append(f"- `{code}` ({kind}): {entry.message}")
    return {
        "type": "object",
        "required": ["code", "message"],
        "description": "Why a job failed.",
        "properties": {
            "code": {"type": "string", "enum": job_error_codes(), "description": "\n".join(lines)},
            "message": {"type": "string", "description": "For people; the code's default or more specific."},
        },
    }


def _errors(*codes: str) -> dict[str, Any]:
    """Error responses grouped by status, each restricting the envelope's `code` to what that status carries."""
    by_status: dict[int, list[str]] = {}
    for code in codes:
        by_status.setdefault(CODES[code].status, []).append(code)
    responses: dict[str, Any] = {}
    for status, status_codes in sorted(by_status.items()):
        schema = {
            "allOf": [
                {"$ref": ENVELOPE_REF},
                {"properties": {"error": {"properties": {"code": {"enum": status_codes}}}}},
            ]
        }
        response: dict[str, Any] = {
            "description": "; ".join(f"`{code}`: {CODES[code].description}" for code in status_codes),
            "content": {_JSON: {"schema": schema}},
        }
        if status == 429:
            response["headers"] = {
                "Retry-After": {
                    "description": "Seconds until an upload is accepted again.",
                    "schema": {"type": "integer"},
                }
            }
        elif status == 503:
            response["headers"] = {
                "Retry-After": {
                    "description": "Seconds to wait before retrying (for "
                    "`overloaded`, the estimated time for the queue to drain enough).",
                    "schema": {"type": "integer"},
                }
            }
        elif status == 408:
            response["headers"] = {
                "Connection": {
                    "description": "`close`: the rest of the body is not read.",
                    "schema": {"type": "string", "const": "close"},
                }
            }
        responses[str(status)] = response
    return responses


def _ok(description: str, schema: dict[str, Any], media_type: str = _JSON) -> dict[str, Any]:
    return {"description": description, "content": {media_type: {"schema": schema}}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


_UPLOAD_ERRORS = (
    "missing_image",
    "empty_upload",
    "unknown_style",
    "invalid_strength",
    "too_many_fields",
    "invalid_share",
    "invalid_callback_url",
    "callback_url_refused",
    "webhooks_disabled",
    "cross_site_request",
    "upload_timeout",
    "too_large",
    "image_too_large",
    "unsupported_type",
    "corrupt_image",
    "image_too_small",
    "rate_limited",
    "unavailable",
    "overloaded",
    "internal_error",
)
_ALWAYS = ("internal_error",)

_ID_PARAMETER = {
    "name": "id",
    "in": "path",
    "required": True,
    "description": "The job id returned by the upload.",
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{32}$"},
}


def _schemas() -> dict[str, Any]:
    style_choices = choices()
    return {
        "Error": {
            "type": "object",
            "required": ["error"],
            "additionalProperties": False,
            "description": "The envelope of every error response.",
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "additionalProperties": False,
                    "properties": {
                        "code": {
                            "type": "string",
                            "enum": sorted(CODES),
                            "description": "Stable, machine-readable:\n\n"
                            + "\n".join(
                                f"- `{entry.code}` ({entry.status}): {entry.description}" for entry in CODES.values()
                            ),
                        },
                        "message": {"type": "string", "description": "For people; may change."},
                    },
                }
            },
            "example": _ERROR_EXAMPLE,
        },
        "UploadForm": {
            "type": "object",
            "required": ["image"],
            "properties": {
                "image": {
                    "type": "string",
                    "contentMediaType": "application/octet-stream",
                    "description": "The photo as a file part (JPEG, PNG, WebP or HEIC/HEIF; judged by "
                    "content, not name). Metadata is discarded.",
                },
                "style": {
                    "type": "string",
                    "enum": style_choices,
                    "default": "auto",
                    "description": "`auto`, a family, or a style name from /v1/styles. Blank means `auto`.",
                },
                "strength": {
                    "type": "number",
                    "minimum": 0,
                    "maximum": 1,
                    "description": "How strongly the style is applied. Blank or absent: the style's default.",
                },
                "share": {
                    "type": "string",
                    "enum": ["true", "false", "1", "0", "on", "off"],
                    "default": "false",
                    "description": "Consent to the public gallery (#10; case-insensitive, blank or absent: "
                    "`false`). When done, a copy of the portrait (never the photo), "
                    "re-encoded without metadata, is listed under a new random id with only "
                    "its style, family and day, for `PORTRAITS_GALLERY_TTL_SECONDS` (30 "
                    "days) unless withdrawn sooner.",
                },
                "callback_url": {
                    "type": "string",
                    "format": "uri",
                    "maxLength": 2048,
                    "description": "Optional (#10): an absolute http(s) URL that receives a signed "
                    "POST when the job is done or failed (see `webhooks`). Its host "
                    "must resolve to public addresses only; redirects are never "
                    "followed. Never shown in the job's status.",
                },
            },
        },
        "Accepted": {
            "type": "object",
            "required": ["id", "status", "status_url"],
            "additionalProperties": False,
            "properties": {
                "id": {"type": "string"},
                "status": {"type": "string", "const": "queued"},
                "status_url": {
                    "type": "string",
                    "format": "uri-reference",
                    "description": "Relative URL to poll; also in the `Location` header.",
                },
                "gallery": {
                    "oneOf": [
                        {"type": "null"},
                        {
                            "type": "object",
                            "required": ["id", "withdraw_token"],
                            "additionalProperties": False,
                            "description": "With `share=true`: the gallery id (unrelated to the job id) and the "
                            "token that withdraws it (`DELETE /v1/gallery/{id}`). Shown once: only its SHA-256 is "
                            "kept. `null` without consent.",
                            "properties": {"id": {"type": "string"}, "withdraw_token": {"type": "string"}},
                        },
                    ]
                },
            },
        },
        "PortraitDeleted": {
            "type": "object",
            "required": ["deleted", "gallery_copy", "message"],
            "additionalProperties": False,
            "description": "DELETE /v1/portraits/{id} for a job shared with `share=true` whose gallery copy may "
            "have been made: the job is erased, the copy is not (nothing links the two).",
            "properties": {
                "deleted": {"type": "boolean", "const": True},
                "gallery_copy": {
                    "type": "string",
                    "const": "kept",
                    "description": "The copy stays listed until it expires; withdraw it with "
                    "`DELETE /v1/gallery/{id}` and the `gallery.id` and `withdraw_token` of the upload's 202.",
                },
                "message": {"type": "string", "description": "The same, for people."},
            },
        },
        "GalleryItem": {
            "type": "object",
            "required": ["id", "image_url", "style", "family", "day"],
            "additionalProperties": False,
            "properties": {
                "id": {"type": "string", "description": "The gallery id (not a job id)."},
                "image_url": {
                    "type": "string",
                    "format": "uri",
                    "description": "A presigned GET of the copy (JPEG without metadata), valid at most "
                    "15 minutes: list again for fresh URLs.",
                },
                "style": {"type": "string"},
                "family": {"type": "string"},
                "day": {
                    "type": "string",
                    "format": "date",
                    "description": "The day it joined the gallery (UTC): a day's shared portraits join together, "
                    "after midnight.",
                },
            },
        },
        "GalleryPage": {
            "type": "object",
            "required": ["items", "next_cursor"],
            "additionalProperties": False,
            "properties": {
                "items": {
                    "type": "array",
                    "items": _ref("GalleryItem"),
                    "description": "Newest day first; within a day in no particular order.",
                },
                "next_cursor": _nullable(
                    {
                        "type": "string",
                        "description": "Opaque; pass as `cursor` for the next page. `null` on the last page.",
                    }
                ),
            },
        },
        "Portrait": {
            "type": "object",
            "additionalProperties": False,
            "description": NULL_CONVENTION,
            "required": [
                "id",
                "status",
                "stage",
                "queue_position",
                "created_at",
                "timings",
                "style",
                "family",
                "reason",
                "strength",
                "result_url",
                "expires_at",
                "error",
            ],
            "properties": {
                "id": {"type": "string"},
                "status": {"type": "string", "enum": ["queued", "processing", "done", "failed"]},
                "stage": _nullable({"type": "string", "description": "Pipeline stage while processing."}),
                "queue_position": _nullable(
                    {"type": "integer", "minimum": 0, "description": "Approximate, 0-based; only while queued."}
                ),
                "created_at": {"type": "string", "format": "date-time"},
                "timings": {
                    "type": "object",
                    "additionalProperties": {"type": "number"},
                    "description": "Seconds spent per pipeline stage so far.",
                },
                "style": _nullable({"type": "string", "description": "The style chosen, once known."}),
                "family": _nullable({"type": "string", "enum": [family.value for family in Family] + [None]}),
                "reason": _nullable(
                    {"type": "string", "description": "Why this style was chosen, in plain words (no figures)."}
                ),
                "strength": _nullable(
                    {
                        "type": "number",
                        "minimum": 0,
                        "maximum": 1,
                        "description": "As requested; null means the style's default.",
                    }
                ),
                "result_url": _nullable(
                    {"type": "string", "format": "uri", "description": "When done: a presigned GET of the portrait."}
                ),
                "expires_at": _nullable(
                    {
                        "type": "string",
                        "format": "date-time",
                        "description": "When done: when `result_url` stops working (never "
                        "after the portrait itself is deleted). Poll again "
                        "for a fresh URL.",
                    }
                ),
                "error": {"oneOf": [{"type": "null"}, {"$ref": JOB_ERROR_REF}], "description": "When failed."},
            },
        },
        "JobError": _job_error(),
        "Style": {
            "type": "object",
            "required": ["name", "family", "title", "description", "strength", "painter"],
            "properties": {
                "name": {"type": "string"},
                "family": {"type": "string"},
                "title": {"type": "string"},
                "description": {"type": "string"},
                "strength": {"type": "number", "description": "Default strength."},
                "painter": {
                    "type": "string",
                    "enum": [painter.value for painter in Painter],
                    "description": "`face-gan`: the face is repainted by a GAN and the "
                    "rest painted to match; `style-transfer`: the photo is "
                    "painted over.",
                },
            },
        },
        "Styles": {
            "type": "object",
            "required": ["default", "choices", "families"],
            "properties": {
                "default": {"type": "string", "const": "auto"},
                "choices": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "Every accepted `style` value.",
                },
                "families": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name", "styles"],
                        "properties": {"name": {"type": "string"}, "styles": {"type": "array", "items": _ref("Style")}},
                    },
                },
            },
        },
        "Status": {"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}},
        # The `data` of each live-progress event (#10); `done` and `failed` carry a `Portrait`, `deleted` `{}`.
        "StageEvent": {
            "type": "object",
            "required": ["stage"],
            "additionalProperties": False,
            "properties": {"stage": {"type": "string", "enum": list(EVENT_STAGES)}},
        },
        "QueuePositionEvent": {
            "type": "object",
            "required": ["queue_position"],
            "additionalProperties": False,
            "properties": {"queue_position": {"type": "integer", "minimum": 0}},
        },
        "DeletedEvent": {"type": "object", "additionalProperties": False, "properties": {}},
    }


WEBHOOK_HEADERS = {
    "webhook-id": "The message id (`msg_…`): the same on every retry of one message, so deduplicate on it.",
    "webhook-timestamp": "Unix seconds of this attempt; reject messages more than 5 minutes off.",
    "webhook-signature": "`v1,<base64 HMAC-SHA256>` of `<webhook-id>.<webhook-timestamp>.<body>` with the "
    "deployment's secret (Standard Webhooks; verify with the `standardwebhooks` library).",
}


def _webhooks() -> dict[str, Any]:
    """OpenAPI 3.1 `webhooks`: the POST a `callback_url` receives (#10)."""
    data = {
        "type": "object",
        "additionalProperties": False,
        "required": ["id", "status", "status_url", "style", "family", "reason", "error"],
        "properties": {
            "id": {"type": "string"},
            "status": {"type": "string", "enum": ["done", "failed"]},
            "status_url": {
                "type": "string",
                "format": "uri-reference",
                "description": "Relative URL of the job's status (GET it for a fresh `result_url`).",
            },
            "style": _nullable({"type": "string"}),
            "family": _nullable({"type": "string"}),
            "reason": _nullable({"type": "string"}),
            "error": {"oneOf": [{"type": "null"}, {"$ref": JOB_ERROR_REF}]},
        },
    }
    body = {
        "type": "object",
        "additionalProperties": False,
        "required": ["type", "timestamp", "data"],
        "properties": {
            "type": {"type": "string", "enum": ["portrait.done", "portrait.failed"]},
            "timestamp": {"type": "string", "format": "date-time", "description": "When the job ended."},
            "data": data,
        },
    }
    return {
        "portraitFinished": {
            "post": {
                "operationId": "portraitFinished",
                "summary": "Sent to the upload's `callback_url` when its job is done or failed.",
                "description": "Signed with Standard Webhooks. Answer 2xx within 5 seconds (3 s to connect); any "
                "other answer, a redirect included (never followed), or a timeout is retried after "
                "5 s, 30 s, 2 min, 10 min and 30 min, then given up. Delivery is at least once.",
                "parameters": [
                    {"name": name, "in": "header", "required": True, "description": text, "schema": {"type": "string"}}
                    for name, text in WEBHOOK_HEADERS.items()
                ],
                "requestBody": {"required": True, "content": {_JSON: {"schema": body}}},
                "responses": {"2XX": {"description": "Received; not sent again."}},
            }
        }
    }


EVENT_STAGES = tuple(stage.value for stage in REPORTED_STAGES)  # one stage vocabulary (#12)


def _portrait_events() -> dict[str, Any]:
    """GET /v1/portraits/{id}/events (#10). OpenAPI 3.1 has no schema for the messages of an event stream: each
    event's `data` schema is named under `x-events` and in the description."""
    return {
        "operationId": "getPortraitEvents",
        "summary": "The job's live progress, as server-sent events, until it ends.",
        "description": (
            "A `text/event-stream` (HTML standard, server-sent events; `EventSource` in browsers). Each event has "
            "an `event:` name, one `data:` line of JSON and, except `queue_position`, an `id:`:\n\n"
            "- `stage` (`StageEvent`): the stage the worker started, `fetch` first;\n"
            "- `queue_position` (`QueuePositionEvent`): 0-based place in the queue while queued, when it "
            "changes;\n"
            "- `done` (`Portrait`): the same document as GET /v1/portraits/{id}, then the stream ends;\n"
            "- `failed` (`Portrait`, with `error`), then the stream ends;\n"
            "- `deleted` (`DeletedEvent`, `{}`): erased or expired, then the stream ends.\n\n"
            "A new client first gets where the job is now (its stage, or its queue position, or, for a job that "
            "has ended, its final event at once). A comment line `: keep-alive` is sent after 15 s without an "
            "event (`PORTRAITS_EVENTS_HEARTBEAT_SECONDS`). To resume after a dropped connection, send the last "
            "`id:` received as `Last-Event-ID` (EventSource does) or as `last_event_id`: only what followed it "
            "is sent (a job that has ended answers its final event again). The stream may end without a final "
            "event when a server stops: reconnect and resume. The first message is `retry: 2000`."
        ),
        "parameters": [
            {
                "name": "Last-Event-ID",
                "in": "header",
                "required": False,
                "schema": {"type": "string", "pattern": "^[0-9]+-[0-9]+$"},
                "description": "Resume after this event id (others are ignored).",
            },
            {
                "name": "last_event_id",
                "in": "query",
                "required": False,
                "schema": {"type": "string", "pattern": "^[0-9]+-[0-9]+$"},
                "description": "Same, for clients that cannot set headers; the header wins.",
            },
        ],
        "responses": {
            "200": {
                "description": "The event stream; `Cache-Control: no-store`, `X-Accel-Buffering: no`.",
                "content": {
                    "text/event-stream": {
                        "schema": {"type": "string"},
                        "example": (
                            'retry: 2000\n\nevent: queue_position\ndata: {"queue_position":0}\n\n'
                            'id: 1718000000123-0\nevent: stage\ndata: {"stage":"fetch"}\n\n: keep-alive\n\n'
                        ),
                    }
                },
            },
            **_errors("not_found", "unavailable", *_ALWAYS),
        },
        "x-events": {
            SseEventName.STAGE.value: _ref("StageEvent"),
            SseEventName.QUEUE_POSITION.value: _ref("QueuePositionEvent"),
            SseEventName.DONE.value: _ref("Portrait"),
            SseEventName.FAILED.value: _ref("Portrait"),
            SseEventName.DELETED.value: _ref("DeletedEvent"),
        },
    }


@cache
def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "AI Portraits gateway",
            "version": API_VERSION,
            "description": (
                "Upload a photo, poll its job, fetch the painted portrait. Every error uses the `Error` envelope; "
                "an unknown route answers `not_found` (404) and a known route with the wrong method "
                f"`method_not_allowed` (405, with `Allow`). {NULL_CONVENTION} Every answer carries "
                "`Cache-Control: no-store` and `X-Content-Type-Options: nosniff`. A browser's POST or DELETE "
                "from another site's page is refused (403 `cross_site_request`, from `Sec-Fetch-Site` or "
                "`Origin`); clients that are not browsers send neither header and are not affected."
            ),
        },
        "paths": {
            "/v1/portraits": {
                "post": {
                    "operationId": "createPortrait",
                    "summary": "Upload a photo to be painted.",
                    "description": "Validated before anything is stored; the photo is re-encoded without metadata "
                    "and stored encrypted. Rate limited per client.",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "multipart/form-data": {
                                "schema": _ref("UploadForm"),
                                "encoding": {
                                    "image": {
                                        "contentType": "image/jpeg, image/png, image/webp, image/heic, "
                                        "image/heif, application/octet-stream"
                                    }
                                },
                            }
                        },
                    },
                    "responses": {
                        "202": {
                            **_ok("Queued.", _ref("Accepted")),
                            "headers": {"Location": {"description": "The status URL.", "schema": {"type": "string"}}},
                        },
                        **_errors(*_UPLOAD_ERRORS),
                    },
                }
            },
            "/v1/portraits/{id}": {
                "parameters": [_ID_PARAMETER],
                "get": {
                    "operationId": "getPortrait",
                    "summary": "The job's status and, when done, the portrait's URL.",
                    "responses": {
                        "200": _ok("The job.", _ref("Portrait")),
                        **_errors("not_found", "unavailable", *_ALWAYS),
                    },
                },
                "delete": {
                    "operationId": "deletePortrait",
                    "summary": "Erase the job now: portrait, photo, key and record.",
                    "description": "A gallery copy of a shared portrait is not linked to its job, so it is not "
                    "erased with it: when one may exist the answer is 200 with `PortraitDeleted`, saying how to "
                    "withdraw it; otherwise 204.",
                    "responses": {
                        "200": _ok(
                            "Erased; the portrait was shared and its gallery copy stays.", _ref("PortraitDeleted")
                        ),
                        "204": {"description": "Erased; nothing of the job remains."},
                        **_errors("cross_site_request", "not_found", "unavailable", *_ALWAYS),
                    },
                },
            },
            "/v1/portraits/{id}/events": {"parameters": [_ID_PARAMETER], "get": _portrait_events()},
            "/v1/gallery": {
                "get": {
                    "operationId": "listGallery",
                    "summary": "The public gallery of portraits shared with consent, newest first.",
                    "parameters": [
                        {
                            "name": "cursor",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "string"},
                            "description": "`next_cursor` of the previous page; absent for the first page.",
                        },
                        {
                            "name": "limit",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "integer", "minimum": 1, "maximum": 50, "default": 24},
                        },
                    ],
                    "responses": {
                        "200": _ok("A page of entries.", _ref("GalleryPage")),
                        **_errors("bad_request", "unavailable", *_ALWAYS),
                    },
                }
            },
            "/v1/gallery/{id}": {
                "parameters": [
                    {
                        "name": "id",
                        "in": "path",
                        "required": True,
                        "description": "The gallery id returned by the upload.",
                        "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{32}$"},
                    }
                ],
                "delete": {
                    "operationId": "withdrawFromGallery",
                    "summary": "Withdraw a shared portrait now (before or after it was published).",
                    "description": "Needs `Authorization: Bearer <withdraw_token>`. Without the right token every "
                    "well-formed id answers the same 403, listed or not; with it: 204 (the copy "
                    "is erased, verified and audited at once, or its publication cancelled), "
                    "and 404 once it is gone (withdrawn or expired). Malformed ids: 404.",
                    "security": [{"withdrawToken": []}],
                    "responses": {
                        "204": {"description": "Withdrawn."},
                        **_errors("invalid_token", "cross_site_request", "not_found", "unavailable", *_ALWAYS),
                    },
                },
            },
            "/v1/styles": {
                "get": {
                    "operationId": "listStyles",
                    "summary": "The style catalog.",
                    "responses": {"200": _ok("Families and styles.", _ref("Styles")), **_errors(*_ALWAYS)},
                }
            },
            "/v1/openapi.json": {
                "get": {
                    "operationId": "getOpenApi",
                    "summary": "This document.",
                    "responses": {"200": _ok("OpenAPI 3.1.", {"type": "object"}), **_errors(*_ALWAYS)},
                }
            },
            "/healthz": {
                "get": {
                    "operationId": "healthz",
                    "summary": "Liveness: the process answers (no dependency checked).",
                    "responses": {"200": _ok("Alive.", _ref("Status")), **_errors(*_ALWAYS)},
                }
            },
            "/readyz": {
                "get": {
                    "operationId": "readyz",
                    "summary": "Readiness: Redis answers PING and both buckets are reachable.",
                    "responses": {"200": _ok("Ready.", _ref("Status")), **_errors("unavailable", *_ALWAYS)},
                }
            },
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "summary": "Prometheus metrics (text exposition format).",
                    "responses": {
                        "200": _ok("Metrics.", {"type": "string"}, "text/plain; version=1.0.0"),
                        **_errors(*_ALWAYS),
                    },
                }
            },
        },
        "webhooks": _webhooks(),
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {
                "withdrawToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The `withdraw_token` of an upload with `share=true` (gallery withdrawals only).",
                }
            },
            # Answers any route can give, outside its own operation's list. The HTTP server itself answers
            # malformed requests (bad request line, Content-Length with chunked: 400), over-long request lines
            # (414), oversized headers (431) and unknown transfer codings (501), in the same envelope.
            "responses": {
                "BadRequest": _errors("bad_request")["400"],
                "UriTooLong": _errors("uri_too_long")["414"],
                "HeadersTooLarge": _errors("headers_too_large")["431"],
                "NotImplemented": _errors("not_implemented")["501"],
                "NotFound": _errors("not_found")["404"],
                "MethodNotAllowed": {
                    **_errors("method_not_allowed")["405"],
                    "headers": {"Allow": {"schema": {"type": "string"}}},
                },
            },
        },
    }
