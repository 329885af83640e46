"""The one place configuration is read: every service builds a `Settings` from the environment.

Every field maps to an environment variable with the `PORTRAITS_` prefix (e.g. `PORTRAITS_DEVICE=cuda`);
docs/settings.md's table is generated from these fields and their descriptions.

Long on purpose: one validated object is the house rule, so every setting, its description (the table's text) and
its cross-field checks live here together.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.engine_options import Device, FaceUpscaler, Precision
from shared.output_format import OutputFormat

PROJECT_ROOT = Path(__file__).resolve().parent.parent

#: Who makes an S3 call, which decides how long it may wait (`Settings.s3_budget`): a worker or the janitor
#: (`service`), the gateway with a client waiting (`gateway`), or a readiness probe (`probe`).
S3Caller = Literal["service", "gateway", "probe"]


@dataclass(frozen=True)
class S3Budget:
    """How long one S3 call may wait and how often it is tried, as one caller can afford it."""

    connect_timeout: float
    read_timeout: float
    attempts: int  # calls per operation, the first included

    @property
    def per_call_seconds(self) -> float:
        return self.connect_timeout + self.read_timeout


# Readiness probes must answer quickly: one attempt, short timeouts.
_PROBE_S3_BUDGET = S3Budget(connect_timeout=1.0, read_timeout=2.0, attempts=1)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PORTRAITS_", extra="ignore", frozen=True)

    # --- engine: models and devices ---
    model_dir: Path = Field(
        PROJECT_ROOT / "var" / "models",
        description="Directory holding the model files and their manifest (prepared by `make models`).",
    )
    device: Device = Field("auto", description="Where the networks run; `auto` takes CUDA when present, else the CPU.")
    precision: Precision = Field("auto", description="Generator precision; `auto` is fp16 on CUDA and fp32 on the CPU.")
    torch_threads: int = Field(
        0,
        ge=0,
        description="CPU threads for torch; 0: in a worker on the CPU, the cores divided among its "
        "render processes (at least 1); elsewhere (CUDA, the CLI, benchmarks) torch's default, one per core.",
    )
    worker_processes: int = Field(
        0,
        ge=0,
        le=256,
        description="Render processes per worker (Celery's pool); 0: one per available CPU core "
        "on the CPU (the measured default, services/worker/plan.py), one per worker with CUDA.",
    )
    generator: str = Field(
        "gan-portrait",
        description="Registered generator that paints the portrait (see `engine/generators.py`): `gan-portrait` "
        "paints faces with the face GAN and also every style-transfer style; `neural-style` only the latter.",
    )
    face_upscaler: FaceUpscaler = Field(
        "auto",
        description="How GAN-painted faces are enlarged into the portrait: Real-ESRGAN compact (`esrgan`), "
        "the photographic RRDBNet (`esrgan-plus`, GPU only in practice) or `bicubic`; `auto` is `esrgan` on "
        "CUDA and `bicubic` on the CPU, where Real-ESRGAN costs more than the face GAN.",
    )

    # --- engine: pipeline behaviour ---
    max_image_pixels: int = Field(
        40_000_000,
        ge=1_000_000,
        description="Photos with more pixels than this are refused (checked on the header, before decoding).",
    )
    min_image_side: int = Field(
        128, ge=32, description="Photos whose short side is below this many pixels are refused."
    )
    output_size: int = Field(768, ge=512, le=2048, description="Long side of the finished portrait, in pixels.")
    output_format: OutputFormat = Field(OutputFormat.JPEG, description="Encoding of the portrait.")
    output_quality: int = Field(90, ge=50, le=100, description="JPEG/WebP quality of the portrait.")
    detect_max_side: int = Field(
        1024, ge=256, description="Photos are downscaled to this long side before face detection."
    )
    min_face_score: float = Field(
        0.95, gt=0, le=1, description="A detected face needs at least this confidence to count."
    )
    min_face_size: int = Field(
        64, ge=20, description="Smallest face (px, short side of the box in the photo) we will paint."
    )
    detail_blend: float = Field(
        0.35,
        ge=0,
        le=1,
        description="How much of the photo's fine detail is blended back over eyes and mouth.",
    )
    likeness_max_distance: float = Field(
        0.55,
        gt=0,
        le=2,
        description=(
            "Face-recogniser distance between photo and portrait above which a face-GAN portrait the system chose "
            "(auto or a family) is repainted in a style-transfer style; the recogniser's same-person line is 0.6."
        ),
    )

    # --- service: Redis, object storage, jobs ---
    redis_url: str = Field(
        "redis://127.0.0.1:6380/0",
        description="Redis: Celery broker, job records, schedules (default: the one `make run` starts). With "
        "`redis_sentinels` set, only its password and database number are used.",
    )
    redis_sentinels: str = Field(
        "",
        description="Comma-separated `host:port` of Redis Sentinels (#24): every client asks them for the "
        "primary of `redis_sentinel_master` and follows a failover. Empty: `redis_url` is the primary itself "
        "(one server, or a managed service's primary endpoint that moves on failover).",
    )
    redis_sentinel_master: str = Field(
        "portraits", min_length=1, description="The Sentinel-monitored primary's name (`sentinel monitor <name>`)."
    )
    redis_wait_replicas: int = Field(
        0,
        ge=0,
        le=5,
        description="Replicas that must have an upload's job before the gateway answers 202 (Redis WAIT, #24; "
        'docs/architecture.md, "Redis failover"). 0: no wait (a single Redis).',
    )
    redis_wait_timeout_ms: int = Field(
        250,
        ge=1,
        le=5000,
        description="Milliseconds the gateway waits for `redis_wait_replicas`; an upload not copied in time is "
        "undone and answered 503 with Retry-After (`portraits_gateway_unreplicated_uploads_total`).",
    )
    s3_endpoint_url: str = Field("http://127.0.0.1:8333", description="S3 API the services talk to.")
    s3_public_endpoint_url: str | None = Field(
        None, description="S3 address browsers use for presigned result URLs; defaults to `s3_endpoint_url`."
    )
    public_origin: str = Field(
        "http://127.0.0.1:8080",
        description="The page's origin (`scheme://host[:port]`, default: the local run's gateway): the only one "
        "whose browser CORS lets read objects, with GET and HEAD (deploy/seaweedfs: start.sh, bucket_cors.py). "
        "Read by the storage's scripts, not the services; a managed bucket needs no CORS rule (the page uses <img>).",
    )
    s3_region: str = Field("us-east-1", description="Region signed into every S3 request (SigV4).")
    s3_access_key_id: str = Field("", description="S3 access key id.")
    s3_secret_access_key: SecretStr = Field(SecretStr(""), description="S3 secret key.")
    s3_max_attempts: int = Field(
        4,
        ge=1,
        description="Retries of an S3 call after its first attempt, with exponential backoff, in the worker and "
        "the janitor; the gateway has `gateway_s3_max_attempts`.",
    )
    s3_connect_timeout: float = Field(2.0, gt=0, description="Seconds to connect to S3.")
    s3_read_timeout: float = Field(
        5.0,
        gt=0,
        description="Seconds to wait for an S3 response (worker, janitor). With the retries, a hung S3 "
        "fails a call within ~30 s, inside a render's 60 s soft limit (15 s failed renders with `timeout`: #9).",
    )
    sources_bucket: str = Field("portrait-sources", description="Bucket for uploaded photos (cleaned).")
    results_bucket: str = Field("portrait-results", description="Bucket for finished portraits.")
    result_ttl_seconds: int = Field(
        1800, ge=60, description="How long a finished portrait (and its job record) is kept."
    )
    source_max_age_seconds: int = Field(
        120, ge=10, description="No uploaded photo lives longer than this, whatever its job's state."
    )
    gallery_ttl_seconds: int = Field(
        30 * 86_400,
        ge=60,
        description="How long a portrait shared to the public gallery (`share=true`) stays "
        "there before the janitor deletes it (its owner can withdraw it sooner with the withdraw token).",
    )
    queue_name: str = Field("portraits", description="Celery queue the gateway feeds and the workers drain.")

    # --- gateway ---
    max_upload_bytes: int = Field(12 * 1024 * 1024, ge=1024, description="Largest accepted upload.")
    upload_rate_limit: str = Field(
        "30/minute", description="Uploads per client address (Flask-Limiter syntax); empty disables it."
    )
    trusted_proxy_hops: int = Field(
        0,
        ge=0,
        description="Proxies in front whose X-Forwarded-For is trusted (1 behind an ingress); the "
        "rate limit keys on the client address, so 0 behind a proxy puts every client under one limit.",
    )
    trusted_origins: str = Field(
        "",
        description="Comma-separated origins (`https://host[:port]`) besides the gateway's own whose pages may "
        "upload or delete through a visitor's browser; empty: only the gateway's own page (other sites' "
        "requests get 403 `cross_site_request`; clients that are not browsers are never affected).",
    )
    result_url_max_seconds: int = Field(
        900, ge=10, description="Longest life of a presigned result URL (never past the result's own expiry)."
    )
    gateway_bind: str = Field("127.0.0.1:8080", description="Address gunicorn listens on.")
    gateway_workers: int = Field(2, ge=1, description="Gunicorn worker processes.")
    gateway_timeout: int = Field(30, ge=5, description="Gunicorn worker timeout, seconds.")
    # 256 (#10): every open live-progress stream (GET /v1/portraits/<id>/events) holds a thread for as long as it
    # is open. Connections are not spread evenly over the workers (whichever worker's poller wakes first accepts
    # one), so 200 streams may all land on one worker: 200 streams + the 32 threads normal traffic needed before
    # + headroom = 256 per worker (512 for both). An idle stream thread sleeps in a 1 s XREAD (GIL released),
    # so the cost is memory: 200 open streams added 40 MiB to the gateway's resident memory, and uploads and
    # status reads kept their latency (p99 ×1.3 and ×1.6 of a few ms); with 32 threads only 64 streams opened and
    # nothing else was answered. Measured with scripts/sse_load.py: docs/architecture.md, "Live progress".
    gateway_threads: int = Field(
        256,
        ge=1,
        description="Threads per gunicorn worker (gthread): requests in flight per worker, slow "
        "uploads and open live-progress streams included (each holds one); idle keep-alive connections wait "
        "without one.",
    )
    events_heartbeat_seconds: float = Field(
        15.0,
        gt=0,
        description="Seconds between `: keep-alive` comments on an idle live-progress stream, so "
        "proxies and browsers do not close it.",
    )
    redis_timeout: float = Field(
        1.0,
        gt=0,
        description="Seconds every service waits to connect to Redis or for a reply (the gateway's "
        "rate limiter and broker too; shared/backends.py); not retried, so a hung Redis answers 503 after this.",
    )
    gateway_s3_timeout: float = Field(
        1.5,
        gt=0,
        description="The gateway's S3 connect and read timeout, seconds (the worker and janitor "
        "keep `s3_connect_timeout`/`s3_read_timeout`).",
    )
    gateway_s3_max_attempts: int = Field(
        2,
        ge=1,
        description="The gateway's attempts per S3 call (first try included): with "
        "`gateway_s3_timeout`, an upload during an S3 hang answers 503 in about 3 s.",
    )
    gateway_body_timeout: float = Field(
        10.0,
        gt=0,
        description="Seconds a request body may take before `gateway_body_min_rate` applies: "
        "after that it must have arrived at that average rate or the upload answers 408 `upload_timeout`.",
    )
    gateway_body_min_rate: int = Field(
        16 * 1024,
        ge=1,
        description="Slowest accepted average upload rate, bytes per second (after "
        "`gateway_body_timeout`); 16 KiB/s is 128 kbit/s.",
    )
    # Load shedding (#11): a photo is deleted `source_max_age_seconds` after upload, painted or not, so an upload
    # that cannot be painted by then is refused at once (503 `overloaded`, Retry-After) rather than accepted to
    # fail `source_expired` two minutes later. 0.7 of 120 s leaves 36 s for what the estimate does not see: the
    # jobs being painted, the janitor's 5 s sweep, uploads arriving after this one's check, and renders slowing
    # down under the burst itself (0.8 lost 32 and 7 of 300-upload bursts on this 2-core machine, #12's bench
    # runs, where everything shares two cores; 0.7 lost none). shared/capacity.py.
    load_shedding: bool = Field(
        True,
        description="Refuse uploads (503 `overloaded`) whose estimated queue wait plus one render would "
        "outlast `shed_wait_fraction` of `source_max_age_seconds`; false accepts every upload, as before.",
    )
    shed_wait_fraction: float = Field(
        0.7,
        gt=0,
        le=1,
        description="Share of `source_max_age_seconds` an upload's estimated wait plus one "
        "render may take before it is shed; the rest is a safety margin.",
    )
    renderer_stale_seconds: float = Field(
        30.0,
        gt=0,
        description="A render process counts towards the capacity estimate for this long after it "
        "last reported a finished job (it reports after each one): an idle, stuck or dead process drops out.",
    )

    # --- worker ---
    task_soft_time_limit: int = Field(60, ge=5, description="Seconds before a render is asked to stop.")
    task_hard_time_limit: int = Field(90, ge=10, description="Seconds before a render's process is killed.")
    visibility_timeout: int = Field(
        300, ge=30, description="Seconds before Redis redelivers an unacknowledged task (> hard limit)."
    )
    task_max_retries: int = Field(
        5,
        ge=0,
        description="Retries through the broker after transient storage/Redis errors, once a render has "
        "spent its soft time limit retrying in its own process.",
    )
    worker_start_timeout: float = Field(
        120.0,
        gt=0,
        description="Seconds a new render process may take to load its models before Celery "
        "replaces it (Celery's own 4 s default killed 10 of 12 replacements on a busy CPU: issue 9).",
    )
    job_lease_seconds: float = Field(
        10.0,
        ge=1,
        description="A render process renews its job's lease every third of this; a lease not "
        "renewed this long means the worker is gone, and the janitor sends the job again.",
    )
    job_max_restarts: int = Field(
        2,
        ge=0,
        description="Times a job may be restarted after its worker died (killed, OOM, lost) before it "
        "fails `worker_lost`: a photo that kills every worker must not loop.",
    )
    # Dynamic batching across requests (#11): a render process that takes a job also takes up to
    # `batch_max_size - 1` other queued jobs (waiting at most `batch_wait_ms` for them) and paints them in one
    # engine call. 1 on the CPU: there a batch only queues work behind the first photo (2 cores, Grace Hopper:
    # docs/performance.md).
    batch_max_size: int = Field(
        1,
        ge=1,
        le=64,
        description="Most jobs one render process paints in one engine call; 1 turns batching "
        "off (the CPU default, measured in docs/performance.md); a GPU host may take 8 or more.",
    )
    batch_wait_ms: float = Field(
        5.0,
        ge=0,
        le=1000,
        description="Longest a render process waits for more queued jobs to fill a batch "
        "(only with `batch_max_size` > 1): every job of the batch waits this long at most.",
    )
    worker_metrics_port: int = Field(9101, description="Port of the worker's /metrics endpoint.")

    # --- janitor and audit ---
    janitor_interval_seconds: float = Field(5.0, gt=0, description="Seconds between janitor sweeps.")
    janitor_batch_size: int = Field(500, ge=1, description="Most due objects one sweep claims per kind.")
    janitor_lease_seconds: float = Field(
        30.0, gt=0, description="A claimed deletion is hidden from other janitor replicas this long."
    )
    janitor_reconcile_seconds: float = Field(
        60.0, gt=0, description="Seconds between reconciliation passes that list the buckets for orphans."
    )
    janitor_metrics_port: int = Field(9102, description="Port of the janitor's /metrics endpoint.")
    audit_max_entries: int = Field(100_000, ge=100, description="Deletion audit records kept (Redis stream).")

    # --- webhooks (#10) ---
    webhook_secret: SecretStr = Field(
        SecretStr(""),
        description="Signing secret of webhook deliveries (Standard Webhooks: `whsec_` and base64 of "
        "24-64 random bytes), one per deployment; empty disables webhooks, and an upload with a `callback_url` "
        "is then refused (`webhooks_disabled`) rather than silently never called back.",
    )
    webhook_allowed_hosts: str = Field(
        "",
        description="Comma-separated host names or IP addresses a `callback_url` may point at although they "
        "resolve to loopback, private, link-local or other non-public addresses (the tests' local receiver); "
        "empty: only public addresses.",
    )
    webhook_allowed_ports: str = Field(
        "80,443",
        description="Comma-separated ports (1-65535) a `callback_url` may name, its scheme's default included; "
        "any other is refused at upload and at delivery (#25). Allow-listed hosts may name any port. In "
        "Kubernetes, widen the janitor's webhook NetworkPolicy to match.",
    )
    webhook_max_attempts: int = Field(
        6,
        ge=1,
        le=10,
        description="Delivery attempts per webhook, the first included, before it is given up "
        "(retries wait 5 s, 30 s, 2 min, 10 min, then 30 min each).",
    )

    # --- observability ---
    metrics_bind_address: str = Field(
        "127.0.0.1", description="Address the worker's and janitor's /metrics listen on (0.0.0.0 in containers)."
    )
    log_level: str = Field("INFO", description="Log level of every service.")
    log_json: bool = Field(True, description="JSON log lines (false: human-readable console lines).")

    @model_validator(mode="after")
    def _time_limits_nest(self) -> Settings:
        # A task still running when Redis redelivers it would run twice (celery#5306, #5935).
        if not self.task_soft_time_limit < self.task_hard_time_limit < self.visibility_timeout:
            raise ValueError("need task_soft_time_limit < task_hard_time_limit < visibility_timeout")
        return self

    @model_validator(mode="after")
    def _webhook_secret_decodes(self) -> Settings:
        # Checked at start, not at the first delivery: a mistyped secret must not surface as failed webhooks.
        secret = self.webhook_secret.get_secret_value()
        if secret:
            raw = secret.removeprefix("whsec_")
            try:
                key = base64.b64decode(raw, validate=True)
            except ValueError:
                raise ValueError("webhook_secret must be `whsec_` followed by base64") from None
            if not 24 <= len(key) <= 64:
                raise ValueError("webhook_secret must encode 24 to 64 bytes")
        return self

    @model_validator(mode="after")
    def _webhook_ports_parse(self) -> Settings:
        # Checked at start: a mistyped list must fail the deploy, not every upload with a callback.
        _ = self.webhook_allowed_port_set
        return self

    @model_validator(mode="after")
    def _redis_wait_fits_the_timeout(self) -> Settings:
        # The WAIT shares the connection's socket timeout: a wait near it would read as a hung Redis, a 503 for a
        # dependency rather than the counted refusal (#24). Half leaves the round trip and the script their time.
        if self.redis_wait_replicas and self.redis_wait_timeout_ms > self.redis_timeout * 500:
            raise ValueError("need redis_wait_timeout_ms ≤ half of redis_timeout (in ms)")
        return self

    @model_validator(mode="after")
    def _sentinels_without_tls(self) -> Settings:
        # The Sentinel-managed clients take only the URL's credentials and database (#24): a rediss:// URL would
        # silently lose its TLS, and the password would travel in the clear. Refused until that path has TLS.
        if self.redis_sentinels.strip() and self.redis_url.startswith("rediss://"):
            raise ValueError("redis_sentinels cannot be used with a rediss:// redis_url (no TLS to Sentinel sets yet)")
        return self

    @model_validator(mode="after")
    def _redis_sentinels_parse(self) -> Settings:
        # Checked at start: a mistyped list must fail the deploy, not every Redis call.
        _ = self.redis_sentinel_addresses
        return self

    @property
    def redis_sentinel_addresses(self) -> tuple[tuple[str, int], ...]:
        """`redis_sentinels` as (host, port) pairs, empty without Sentinel; raises ValueError for a bad entry."""
        addresses = []
        for part in self.redis_sentinels.split(","):
            text = part.strip()
            if not text:
                continue
            host, _, port = text.rpartition(":")
            if host.startswith("[") and host.endswith("]"):
                host = host[1:-1]  # an IPv6 literal
            if (
                not host
                or any(c.isspace() or c in "[]/@" for c in host)
                or not (port.isascii() and port.isdigit() and 0 < int(port) < 65536)
            ):
                raise ValueError(f"redis_sentinels: {text!r} is not host:port")
            addresses.append((host, int(port)))
        return tuple(addresses)

    @property
    def webhook_allowed_port_set(self) -> frozenset[int]:
        """`webhook_allowed_ports` as numbers; raises ValueError for anything but 1-65535 or an empty list."""
        ports: set[int] = set()
        for part in self.webhook_allowed_ports.split(","):
            text = part.strip()
            if not text:
                continue
            if not (text.isascii() and text.isdigit() and 0 < int(text) < 65536):  # int() would take "+80", "8_0"
                raise ValueError(f"webhook_allowed_ports: {text!r} is not a port (1-65535)")
            ports.add(int(text))
        if not ports:
            raise ValueError("webhook_allowed_ports names no port")
        return frozenset(ports)

    @model_validator(mode="after")
    def _trusted_origins_are_origins(self) -> Settings:
        # A browser's `Origin` is scheme://host[:port] and nothing more: a path or a missing scheme would never match.
        for origin in self.trusted_origin_set:
            parts = urlsplit(origin)
            if (
                parts.scheme not in ("http", "https")
                or not parts.netloc
                or origin != f"{parts.scheme}://{parts.netloc}"
            ):
                raise ValueError(f"trusted_origins: {origin!r} is not an origin like https://example.org[:port]")
        return self

    @property
    def trusted_origin_set(self) -> frozenset[str]:
        """`trusted_origins` lower-cased, without a trailing slash: compared with a browser's `Origin` header."""
        return frozenset(
            origin.strip().lower().rstrip("/") for origin in self.trusted_origins.split(",") if origin.strip()
        )

    @property
    def webhook_allowed_host_set(self) -> frozenset[str]:
        """`webhook_allowed_hosts` as lower-case names (IPv6 literals without brackets)."""
        return frozenset(
            host.strip().lower().strip("[]").rstrip(".")
            for host in self.webhook_allowed_hosts.split(",")
            if host.strip()
        )

    @property
    def shed_max_seconds(self) -> float:
        """The longest estimated wait plus one render an upload may face before it is shed (#11)."""
        return self.shed_wait_fraction * self.source_max_age_seconds

    def s3_budget(self, for_: S3Caller = "service") -> S3Budget:
        """Each S3 caller's budget, derived here only. `s3_max_attempts` counts retries for the worker and the
        janitor, which are patient; the gateway holds a client and has its own, short `gateway_s3_*` (issue 9)."""
        if for_ == "gateway":
            return S3Budget(self.gateway_s3_timeout, self.gateway_s3_timeout, self.gateway_s3_max_attempts)
        if for_ == "probe":
            return _PROBE_S3_BUDGET
        return S3Budget(self.s3_connect_timeout, self.s3_read_timeout, self.s3_max_attempts + 1)

    @property
    def job_ttl_seconds(self) -> int:
        """A job record outlives its source and result slightly; a poll after the result expired gets a 404."""
        return self.result_ttl_seconds + self.source_max_age_seconds + 60


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
