"""POST/GET/DELETE /v1/portraits against real Redis and SeaweedFS: what is stored, what is refused, what is
erased.

About 500 lines, on purpose (#12): the public API's whole contract for a portrait, one short test per case,
sharing the app and the real stores.
"""

from __future__ import annotations

import dataclasses
import io
import time
import urllib.request
from collections.abc import Callable
from datetime import datetime
from typing import Any

import numpy as np
import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image, PngImagePlugin
from pydantic import SecretStr
from werkzeug.test import TestResponse

from scripts.devstack import SeaweedServer
from scripts.support import samples
from services.gateway.app import create_app
from services.gateway.context import EXTENSION_KEY, Gateway
from shared.crypto import unseal
from shared.imaging import DATA_DAMAGED, HEADER_DAMAGED
from shared.jobs import JobState, JobStore, now
from shared.queue import make_celery
from shared.settings import Settings
from shared.source_keys import SourceKeys
from shared.storage import ObjectStore, job_id_of, result_key, source_key
from tests.support import images

pytestmark = pytest.mark.integration

_no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture(scope="module")
def astronaut_bytes() -> bytes:
    return samples.astronaut_path().read_bytes()


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    return Image.open(samples.astronaut_path()).convert("RGB")


def post_photo(
    client: FlaskClient,
    data: bytes | None,
    filename: str = "photo.jpg",
    content_type: str = "image/jpeg",
    **fields: Any,
) -> TestResponse:
    form: dict[str, Any] = dict(fields)
    if data is not None:
        form["image"] = (io.BytesIO(data), filename, content_type)
    return client.post("/v1/portraits", data=form, content_type="multipart/form-data")


def assert_envelope(response: TestResponse, status: int, code: str) -> None:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    assert response.json == {"error": {"code": code, "message": response.json["error"]["message"]}}
    assert response.json["error"]["message"]


def stored_source(settings: Settings, s3_server: SeaweedServer, job_id: str) -> bytes:
    """What a worker would read: the sealed object, opened with the job's key from Redis."""
    blob = s3_server.client().get_object(Bucket=settings.sources_bucket, Key=source_key(job_id))["Body"].read()
    key = SourceKeys(redis.Redis.from_url(settings.redis_url), settings.source_max_age_seconds).load(job_id)
    return unseal(key, blob, job_id)


# ------------------------------------------------------------------------------------------------- uploads


def test_good_upload_is_sealed_recorded_and_queued(
    client: FlaskClient,
    gateway_settings: Settings,
    s3_server: SeaweedServer,
    rdb: redis.Redis,
    queued_tasks: Callable[[], list[str]],
    astronaut_bytes: bytes,
    astronaut: Image.Image,
) -> None:
    response = post_photo(client, astronaut_bytes, "astronaut.png", "image/png", style="oil", strength="0.4")

    assert response.status_code == 202, response.json
    job_id = response.json["id"]
    assert response.json == {
        "id": job_id,
        "status": "queued",
        "status_url": f"/v1/portraits/{job_id}",
        "gallery": None,
    }  # no consent given (#10)
    assert response.headers["Location"] == response.json["status_url"]

    job = JobStore(rdb, gateway_settings.job_ttl_seconds).get(job_id)
    assert job is not None and job.state is JobState.QUEUED
    assert (job.style_requested, job.strength) == ("oil", 0.4)
    assert abs(job.created_at - now()) < 30
    assert 0 < rdb.ttl(JobStore.KEY_PREFIX + job_id) <= gateway_settings.job_ttl_seconds

    head = s3_server.client().head_object(Bucket=gateway_settings.sources_bucket, Key=source_key(job_id))
    assert head["ContentType"] == "application/octet-stream"
    sealed = (
        s3_server.client().get_object(Bucket=gateway_settings.sources_bucket, Key=source_key(job_id))["Body"].read()
    )
    assert not sealed.startswith(b"\xff\xd8")  # encrypted, not a JPEG
    assert 0 < rdb.ttl(SourceKeys.KEY_PREFIX + job_id) <= gateway_settings.source_max_age_seconds

    source = Image.open(io.BytesIO(stored_source(gateway_settings, s3_server, job_id)))
    assert source.format == "JPEG" and source.mode == "RGB" and source.size == astronaut.size
    difference = np.abs(np.asarray(source, dtype=np.int16) - np.asarray(astronaut, dtype=np.int16))
    assert difference.mean() < 2.0  # quality 95, 4:4:4: close to the original

    assert queued_tasks() == [job_id]


def test_the_job_is_sent_while_its_source_is_stored_and_its_key_published_after(
    gateway_settings: Settings,
    rdb: redis.Redis,
    queued_tasks: Callable[[], list[str]],
    astronaut: Image.Image,
) -> None:
    """#11: the S3 put runs beside the Celery publish, not before it: the put waits here until the task is in the
    broker, which a gateway that enqueued after its put would never let happen (the put would time out). The key
    is published only after the put, and the 202 only after that."""
    seen: dict[str, object] = {}

    class WatchedStore(ObjectStore):
        def put(self, bucket: str, key: str, data: bytes, content_type: str) -> None:
            job_id = job_id_of(key)
            deadline = time.monotonic() + 5
            while job_id not in queued_tasks() and time.monotonic() < deadline:
                time.sleep(0.005)
            seen["task_before_put"] = job_id in queued_tasks()
            seen["key_before_put"] = rdb.exists(SourceKeys.KEY_PREFIX + job_id)
            seen["expected_during_put"] = rdb.exists(SourceKeys.EXPECTED_PREFIX + job_id)
            super().put(bucket, key, data, content_type)

    gateway = dataclasses.replace(
        Gateway.from_settings(gateway_settings),
        objects=WatchedStore(gateway_settings, gateway_settings.s3_budget("gateway")),
    )
    response = post_photo(create_app(gateway=gateway).test_client(), images.encode(astronaut, "JPEG"))

    assert response.status_code == 202, response.json
    job_id = response.json["id"]
    assert seen == {"task_before_put": True, "key_before_put": 0, "expected_during_put": 1}
    assert rdb.exists(SourceKeys.KEY_PREFIX + job_id) == 1
    assert rdb.exists(SourceKeys.EXPECTED_PREFIX + job_id) == 0


@pytest.mark.parametrize(
    "build",
    [
        lambda img: images.heic(img),
        lambda img: images.encode(img, "WEBP", quality=90),
        lambda img: images.encode(img, "JPEG", quality=90),
    ],
    ids=["heic", "webp", "jpeg"],
)
def test_type_is_judged_by_content_not_name(
    client: FlaskClient,
    astronaut: Image.Image,
    build: Callable[[Image.Image], bytes],
) -> None:
    response = post_photo(client, build(astronaut), "notes.txt", "text/plain")
    assert response.status_code == 202, response.json


def test_gps_and_orientation_never_reach_storage(
    client: FlaskClient,
    gateway_settings: Settings,
    s3_server: SeaweedServer,
    astronaut: Image.Image,
) -> None:
    upright = astronaut.crop((0, 0, 512, 320))  # landscape, so a sideways result is visible in its size
    exif = Image.Exif()
    exif[images.EXIF_ORIENTATION] = 6
    exif[0x010F] = "PhoneMaker"
    gps = exif.get_ifd(images.EXIF_GPS_IFD)
    gps.update({1: "N", 2: (48.0, 51.0, 24.0), 3: "E", 4: (2.0, 21.0, 3.0)})
    photo = images.encode(upright.transpose(Image.Transpose.ROTATE_90), "JPEG", exif=exif.tobytes(), quality=95)
    assert Image.open(io.BytesIO(photo)).getexif().get_ifd(images.EXIF_GPS_IFD)  # the upload does carry GPS

    response = post_photo(client, photo)

    assert response.status_code == 202, response.json
    data = stored_source(gateway_settings, s3_server, response.json["id"])
    assert b"Exif" not in data and b"PhoneMaker" not in data and b"ICC_PROFILE" not in data
    stored = Image.open(io.BytesIO(data))
    assert len(stored.getexif()) == 0
    assert not {"exif", "icc_profile", "xmp", "comment"} & set(stored.info)
    assert stored.size == upright.size
    difference = np.abs(np.asarray(stored, dtype=np.int16) - np.asarray(upright, dtype=np.int16))
    assert difference.mean() < 3.0  # upright pixels, not merely the right size


def test_an_upright_jpeg_is_stored_as_sent_without_its_metadata(
    client: FlaskClient,
    gateway_settings: Settings,
    s3_server: SeaweedServer,
    astronaut: Image.Image,
) -> None:
    """#11: no second generation of JPEG loss and no re-encoding time for a photo that needs no fix — its own
    bytes are stored, with its EXIF (GPS) and comment dropped."""
    with_gps = images.jpeg_with_gps(astronaut)
    sent = with_gps[:2] + b"\xff\xfe\x00\x09at home" + with_gps[2:]  # and a comment segment
    response = post_photo(client, sent)
    assert response.status_code == 202, response.json
    data = stored_source(gateway_settings, s3_server, response.json["id"])
    assert b"PhoneMaker" in sent and b"PhoneMaker" not in data and b"Exif" not in data and b"at home" not in data
    # The very pixels sent: a re-encode (even at quality 95) would not decode to them.
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), np.asarray(Image.open(io.BytesIO(sent))))


def _text_named_jpg(_: Image.Image) -> bytes:
    return b"these are my holiday notes, not a photo\n" * 20


BAD_UPLOADS: list[tuple[str, Callable[[Image.Image], bytes], int, str]] = [
    ("png-bomb", lambda img: images.png_bomb(), 413, "image_too_large"),
    ("truncated-jpeg", lambda img: images.truncated(images.encode(img, "JPEG", quality=90)), 422, "corrupt_image"),
    ("text-named-jpg", _text_named_jpg, 415, "unsupported_type"),
    ("gif", lambda img: images.encode(img, "GIF"), 415, "unsupported_type"),
    ("10x10-png", lambda img: images.encode(img.resize((10, 10)), "PNG"), 422, "image_too_small"),
    ("empty", lambda img: b"", 400, "empty_upload"),
]


@pytest.mark.parametrize(
    ("build", "status", "code"), [case[1:] for case in BAD_UPLOADS], ids=[case[0] for case in BAD_UPLOADS]
)
def test_bad_photos_are_refused_before_anything_is_stored(
    client: FlaskClient,
    rdb: redis.Redis,
    queued_tasks: Callable[[], list[str]],
    stored_sources: Callable[[], set[str]],
    astronaut: Image.Image,
    build: Callable[[Image.Image], bytes],
    status: int,
    code: str,
) -> None:
    before = stored_sources()
    response = post_photo(client, build(astronaut))
    assert_envelope(response, status, code)
    assert rdb.keys("portraits:*") == []
    assert queued_tasks() == []
    assert stored_sources() == before


def test_a_decoder_crash_is_a_corrupt_image_not_a_500(client: FlaskClient, astronaut: Image.Image) -> None:
    # A HEIC whose first NAL unit claims 4 GiB: libheif raises EOFError, which shared.imaging lets through.
    photo = bytearray(images.heic(astronaut))
    payload = photo.find(b"mdat") + 4
    photo[payload : payload + 4] = b"\xff\xff\xff\xff"
    assert_envelope(post_photo(client, bytes(photo)), 422, "corrupt_image")


def _png_with_a_huge_text_chunk(image: Image.Image) -> bytes:
    # Compressed, the chunk is a few KB; inflated, it is over Pillow's MAX_TEXT_CHUNK, which Pillow refuses.
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "x" * (PngImagePlugin.MAX_TEXT_CHUNK + 1), zip=True)
    return images.encode(image, "PNG", pnginfo=info)


@pytest.mark.parametrize(
    ("build", "internals"),
    [
        (_png_with_a_huge_text_chunk, "MAX_TEXT_CHUNK"),
        (lambda img: images.truncated(images.encode(img, "JPEG", quality=90)), "bytes not processed"),
    ],
    ids=["png-text-chunk", "truncated-jpeg"],
)
def test_a_corrupt_image_is_refused_in_our_words_and_pillows_go_to_the_log(
    client: FlaskClient,
    json_logs: Callable[[], list[dict]],
    astronaut: Image.Image,
    build: Callable[[Image.Image], bytes],
    internals: str,
) -> None:
    response = post_photo(client, build(astronaut))

    assert_envelope(response, 422, "corrupt_image")
    message = response.json["error"]["message"]
    assert message in {HEADER_DAMAGED, DATA_DAMAGED}
    assert internals not in response.get_data(as_text=True)
    assert "Plugin" not in message and "(" not in message  # nothing of Pillow's text, whatever it says
    # The operator still learns what Pillow said.
    assert [line for line in json_logs() if internals in line["message"]]


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"style": "cubism"}, "unknown_style"),
        ({"style": "auto; DROP TABLE"}, "unknown_style"),
        ({"strength": "1.5"}, "invalid_strength"),
        ({"strength": "-0.1"}, "invalid_strength"),
        ({"strength": "strong"}, "invalid_strength"),
        ({"strength": "nan"}, "invalid_strength"),
        ({"strength": "inf"}, "invalid_strength"),
    ],
)
def test_bad_options_are_refused(
    client: FlaskClient,
    rdb: redis.Redis,
    astronaut: Image.Image,
    fields: dict[str, str],
    code: str,
) -> None:
    assert_envelope(post_photo(client, images.encode(astronaut, "JPEG"), **fields), 400, code)
    assert rdb.keys("portraits:*") == []


@pytest.mark.parametrize(
    ("fields", "style", "strength"),
    [
        ({}, "auto", None),
        ({"style": "", "strength": " "}, "auto", None),
        ({"style": "Watercolor", "strength": "0"}, "watercolor", 0.0),
        ({"style": "sumi-e", "strength": "1"}, "sumi-e", 1.0),
    ],
)
def test_good_options_are_recorded(
    client: FlaskClient,
    gateway_settings: Settings,
    rdb: redis.Redis,
    astronaut: Image.Image,
    fields: dict[str, str],
    style: str,
    strength: float | None,
) -> None:
    response = post_photo(client, images.encode(astronaut, "JPEG"), **fields)
    assert response.status_code == 202, response.json
    job = JobStore(rdb, gateway_settings.job_ttl_seconds).get(response.json["id"])
    assert job is not None and (job.style_requested, job.strength) == (style, strength)


def test_missing_image_field(client: FlaskClient, astronaut_bytes: bytes) -> None:
    assert_envelope(client.post("/v1/portraits"), 400, "missing_image")
    assert_envelope(client.post("/v1/portraits", json={"image": "aGVsbG8="}), 400, "missing_image")
    wrong_name = {"photo": (io.BytesIO(astronaut_bytes), "a.png")}
    assert_envelope(client.post("/v1/portraits", data=wrong_name), 400, "missing_image")
    as_text = {"image": "not a file part"}  # no filename: a text field, not an upload
    assert_envelope(
        client.post("/v1/portraits", data=as_text, content_type="multipart/form-data"), 400, "missing_image"
    )


def test_oversize_body_is_413_in_the_envelope(
    make_app: Callable[..., Flask],
    rdb: redis.Redis,
    astronaut_bytes: bytes,
) -> None:
    client = make_app(max_upload_bytes=100_000).test_client()  # the astronaut is ~790 KB
    assert_envelope(post_photo(client, astronaut_bytes, "a.png", "image/png"), 413, "too_large")
    assert rdb.keys("portraits:*") == []


def test_file_part_over_the_cap_is_413_even_when_the_body_fits(
    make_app: Callable[..., Flask],
    astronaut_bytes: bytes,
) -> None:
    # Just over the file cap but within the multipart allowance: only the file-part check can catch it.
    client = make_app(max_upload_bytes=len(astronaut_bytes) - 10).test_client()
    assert_envelope(post_photo(client, astronaut_bytes, "a.png", "image/png"), 413, "too_large")


def test_oversize_text_field_is_413(client: FlaskClient, astronaut: Image.Image) -> None:
    response = post_photo(client, images.encode(astronaut, "JPEG"), style="x" * 200_000)
    assert_envelope(response, 413, "too_large")


@pytest.mark.parametrize("parts", [17, 41])
def test_too_many_form_fields_is_a_400_of_its_own(client: FlaskClient, rdb: redis.Redis, parts: int) -> None:
    # Issue 9: this was the 413 `too_large` of an oversize body, which told the client to send a smaller photo.
    extra = {f"field{index}": "x" for index in range(parts - 1)}
    response = post_photo(client, samples.grace_hopper_path().read_bytes(), **extra)
    assert_envelope(response, 400, "too_many_fields")
    assert rdb.keys("portraits:*") == []


def test_sixteen_form_parts_are_still_accepted(client: FlaskClient) -> None:
    extra = {f"field{index}": "x" for index in range(13)}
    response = post_photo(client, samples.grace_hopper_path().read_bytes(), style="auto", strength="0.5", **extra)
    assert response.status_code == 202, response.json


def test_negative_zero_strength_is_zero(client: FlaskClient) -> None:
    accepted = post_photo(client, samples.grace_hopper_path().read_bytes(), strength="-0")
    assert accepted.status_code == 202, accepted.json
    status = client.get(accepted.json["status_url"])
    assert status.json["strength"] == 0.0
    assert '"strength":0.0' in status.get_data(as_text=True).replace(" ", "")  # not -0.0


# --------------------------------------------------------------------------------------------- status


def test_queued_job_reports_its_place_in_the_queue(client: FlaskClient, astronaut: Image.Image) -> None:
    photo = images.encode(astronaut, "JPEG")
    first, second = (post_photo(client, photo).json["id"] for _ in range(2))

    response = client.get(f"/v1/portraits/{second}")

    assert response.status_code == 200
    body = response.json
    assert body["id"] == second and body["status"] == "queued" and body["queue_position"] == 1
    assert client.get(f"/v1/portraits/{first}").json["queue_position"] == 0
    assert datetime.fromisoformat(body["created_at"]).utcoffset().total_seconds() == 0
    assert body["timings"] == {}
    for field in ("stage", "style", "family", "reason", "strength", "result_url", "expires_at", "error"):
        assert field in body and body[field] is None


def _fake_worker_finishes(
    rdb: redis.Redis, settings: Settings, s3_server: SeaweedServer, job_id: str, result_expires_at: float
) -> bytes:
    """Do what a worker does when it finishes: store the result, move the job to done."""
    jobs = JobStore(rdb, settings.job_ttl_seconds)
    portrait = images.encode(Image.new("RGB", (64, 80), "sienna"), "JPEG")
    key = result_key(job_id, "jpg")
    s3_server.client().put_object(Bucket=settings.results_bucket, Key=key, Body=portrait, ContentType="image/jpeg")
    jobs.transition(job_id, JobState.PROCESSING, stage="generate", started_at=now())
    jobs.transition(
        job_id,
        JobState.DONE,
        stage=None,
        finished_at=now(),
        result_key=key,
        result_expires_at=result_expires_at,
        style="fauve",
        family="oil",
        reason="warm, saturated photo",
        timings={"detect": 0.12, "generate": 1.5},
    )
    return portrait


def test_done_job_links_its_result_until_the_result_expires(
    client: FlaskClient,
    gateway_settings: Settings,
    s3_server: SeaweedServer,
    rdb: redis.Redis,
    astronaut: Image.Image,
) -> None:
    job_id = post_photo(client, images.encode(astronaut, "JPEG")).json["id"]
    expires = now() + 120
    portrait = _fake_worker_finishes(rdb, gateway_settings, s3_server, job_id, expires)

    body = client.get(f"/v1/portraits/{job_id}").json

    assert body["status"] == "done" and body["queue_position"] is None and body["error"] is None
    assert (body["style"], body["family"], body["reason"]) == ("fauve", "oil", "warm, saturated photo")
    assert body["timings"] == {"detect": 0.12, "generate": 1.5}
    assert datetime.fromisoformat(body["expires_at"]).timestamp() <= expires
    assert "X-Amz-Expires=" in body["result_url"]
    assert int(body["result_url"].split("X-Amz-Expires=")[1].split("&")[0]) <= 120
    with _no_proxy.open(body["result_url"], timeout=5) as response:
        assert response.read() == portrait

    # Once the result's own expiry has passed, the job is gone for the client.
    rdb.hset(JobStore.KEY_PREFIX + job_id, "result_expires_at", str(now() - 1))
    assert_envelope(client.get(f"/v1/portraits/{job_id}"), 404, "not_found")


def test_failed_job_reports_its_error(
    client: FlaskClient,
    gateway_settings: Settings,
    rdb: redis.Redis,
    astronaut: Image.Image,
) -> None:
    job_id = post_photo(client, images.encode(astronaut, "JPEG")).json["id"]
    JobStore(rdb, gateway_settings.job_ttl_seconds).transition(
        job_id, JobState.FAILED, error_code="no_face", error_message="no face found in the photo"
    )
    body = client.get(f"/v1/portraits/{job_id}").json
    assert body["status"] == "failed"
    assert body["error"] == {"code": "no_face", "message": "no face found in the photo"}
    assert body["result_url"] is None


@pytest.mark.parametrize("job_id", ["A" * 32, "short", "x" * 33, "has.dots.in.it.xxxxxxxxxxxxxxxxxx"])
def test_unknown_or_malformed_id_is_404(client: FlaskClient, job_id: str) -> None:
    assert_envelope(client.get(f"/v1/portraits/{job_id}"), 404, "not_found")
    assert_envelope(client.delete(f"/v1/portraits/{job_id}"), 404, "not_found")


def test_a_real_id_with_a_trailing_newline_is_the_uniform_404_and_never_looked_up(
    app: Flask, client: FlaskClient, astronaut: Image.Image, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = post_photo(client, images.encode(astronaut, "JPEG")).json["id"]
    looked_up: list[str] = []
    jobs = app.extensions[EXTENSION_KEY].jobs
    real_get = jobs.get
    monkeypatch.setattr(jobs, "get", lambda id_: looked_up.append(id_) or real_get(id_))
    unknown = client.get(f"/v1/portraits/{'A' * 32}")
    looked_up.clear()

    # `re.match(...$)` let "<id>\n" through to Redis (#25); malformed ids never reach it.
    for response in (
        client.get(f"/v1/portraits/{job_id}%0A"),
        client.delete(f"/v1/portraits/{job_id}%0A"),
        client.get(f"/v1/portraits/{job_id}%0A/events"),
        client.get(f"/portraits/{job_id}%0A/download"),
    ):
        assert_envelope(response, 404, "not_found")
        assert response.json == unknown.json
    assert looked_up == []
    assert client.get(f"/v1/portraits/{job_id}").status_code == 200  # the job itself is untouched


# ------------------------------------------------------------------------------------------------ erasure


def test_delete_erases_everything_now(
    client: FlaskClient,
    gateway_settings: Settings,
    s3_server: SeaweedServer,
    rdb: redis.Redis,
    astronaut: Image.Image,
) -> None:
    job_id = post_photo(client, images.encode(astronaut, "JPEG")).json["id"]
    _fake_worker_finishes(rdb, gateway_settings, s3_server, job_id, now() + 600)
    s3 = s3_server.client()

    response = client.delete(f"/v1/portraits/{job_id}")

    assert response.status_code == 204 and response.data == b""
    assert_envelope(client.get(f"/v1/portraits/{job_id}"), 404, "not_found")
    for bucket, key in (
        (gateway_settings.sources_bucket, source_key(job_id)),
        (gateway_settings.results_bucket, result_key(job_id, "jpg")),
    ):
        assert s3.list_objects_v2(Bucket=bucket, Prefix=key).get("KeyCount") == 0
    assert rdb.exists(SourceKeys.KEY_PREFIX + job_id, JobStore.KEY_PREFIX + job_id) == 0
    assert rdb.zscore(JobStore.QUEUE_KEY, job_id) is None
    assert_envelope(client.delete(f"/v1/portraits/{job_id}"), 404, "not_found")


def test_deleting_a_shared_job_says_its_gallery_copy_stays_and_how_to_withdraw_it(
    client: FlaskClient,
    gateway_settings: Settings,
    s3_server: SeaweedServer,
    rdb: redis.Redis,
    astronaut: Image.Image,
) -> None:
    accepted = post_photo(client, images.encode(astronaut, "JPEG"), share="true").json
    job_id = accepted["id"]
    _fake_worker_finishes(rdb, gateway_settings, s3_server, job_id, now() + 600)
    # What the worker does once the copy is made: the record forgets its gallery id, so nothing links the two.
    JobStore(rdb, gateway_settings.job_ttl_seconds).forget_gallery(job_id)

    response = client.delete(f"/v1/portraits/{job_id}")

    # A 204 said nothing of the copy that outlives the job (#25).
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert response.json["deleted"] is True and response.json["gallery_copy"] == "kept"
    assert "DELETE /v1/gallery/{gallery id}" in response.json["message"]
    assert "withdraw_token" in response.json["message"]
    assert accepted["gallery"]["id"] not in response.get_data(as_text=True)  # the job still cannot name it
    assert rdb.exists(SourceKeys.KEY_PREFIX + job_id, JobStore.KEY_PREFIX + job_id) == 0  # erased all the same
    assert_envelope(client.get(f"/v1/portraits/{job_id}"), 404, "not_found")


def test_deleting_a_job_without_a_gallery_copy_is_still_204(client: FlaskClient, astronaut: Image.Image) -> None:
    for fields in ({}, {"share": "true"}):  # shared but not painted yet: the publication is cancelled instead
        job_id = post_photo(client, images.encode(astronaut, "JPEG"), **fields).json["id"]
        response = client.delete(f"/v1/portraits/{job_id}")
        assert response.status_code == 204 and response.data == b"", fields
    # Shared, then withdrawn with its token before any copy was made: nothing outlives the job either.
    accepted = post_photo(client, images.encode(astronaut, "JPEG"), share="true").json
    grant = accepted["gallery"]
    withdrawn = client.delete(
        f"/v1/gallery/{grant['id']}", headers={"Authorization": f"Bearer {grant['withdraw_token']}"}
    )
    assert withdrawn.status_code == 204
    response = client.delete(f"/v1/portraits/{accepted['id']}")
    assert response.status_code == 204 and response.data == b""


def test_interrupted_erasure_can_be_finished(
    client: FlaskClient,
    gateway_settings: Settings,
    rdb: redis.Redis,
    s3_server: SeaweedServer,
    astronaut: Image.Image,
) -> None:
    job_id = post_photo(client, images.encode(astronaut, "JPEG")).json["id"]
    JobStore(rdb, gateway_settings.job_ttl_seconds).transition(job_id, JobState.DELETED)  # storage failed after
    assert_envelope(client.get(f"/v1/portraits/{job_id}"), 404, "not_found")
    assert client.delete(f"/v1/portraits/{job_id}").status_code == 204
    assert (
        s3_server.client()
        .list_objects_v2(Bucket=gateway_settings.sources_bucket, Prefix=source_key(job_id))
        .get("KeyCount")
        == 0
    )


# ---------------------------------------------------------------------------------------- dependencies down


def test_storage_down_is_503_and_leaves_the_source_to_the_janitor(
    make_app: Callable[..., Flask],
    assert_abandoned: Callable[..., str],
    closed_url: Callable[[str], str],
    astronaut: Image.Image,
) -> None:
    client = make_app(s3_endpoint_url=closed_url("http")).test_client()
    response = post_photo(client, images.encode(astronaut, "JPEG"))
    assert_envelope(response, 503, "unavailable")
    assert response.headers["Retry-After"] == "5"
    assert_abandoned(stored=False, sent=True)  # the task went out beside the put, and finds no record


def test_storage_refusing_our_credentials_is_503_not_500(
    make_app: Callable[..., Flask],
    assert_abandoned: Callable[..., str],
    astronaut: Image.Image,
) -> None:
    # shared/storage.py raises a refusal as it is (a configuration bug, not retried); to the client it is still
    # an outage of ours, never a 500 (#11: obstore's PermissionDeniedError replaced botocore's ClientError).
    client = make_app(s3_secret_access_key=SecretStr("not-the-secret")).test_client()
    response = post_photo(client, images.encode(astronaut, "JPEG"))
    assert_envelope(response, 503, "unavailable")
    assert_abandoned(stored=False, sent=True)


def test_redis_down_is_503(
    make_app: Callable[..., Flask],
    stored_sources: Callable[[], set[str]],
    closed_url: Callable[[str], str],
    astronaut: Image.Image,
) -> None:
    before = stored_sources()
    client = make_app(redis_url=closed_url("redis")).test_client()
    assert_envelope(post_photo(client, images.encode(astronaut, "JPEG")), 503, "unavailable")
    assert_envelope(client.get(f"/v1/portraits/{'A' * 32}"), 503, "unavailable")
    assert stored_sources() == before


def test_broker_down_shreds_the_source_and_drops_the_record(
    gateway_settings: Settings,
    assert_abandoned: Callable[..., str],
    stored_sources: Callable[[], set[str]],
    closed_url: Callable[[str], str],
    astronaut: Image.Image,
) -> None:
    # Everything works except the broker, so the source, key and record are written before the enqueue fails.
    broken_broker = make_celery(gateway_settings.model_copy(update={"redis_url": closed_url("redis")}))
    gateway = dataclasses.replace(Gateway.from_settings(gateway_settings), celery=broken_broker)
    client = create_app(gateway=gateway).test_client()

    assert_envelope(post_photo(client, images.encode(astronaut, "JPEG")), 503, "unavailable")

    job_id = assert_abandoned()
    assert source_key(job_id) in stored_sources()  # written: unreadable now, and the janitor's next
