"""The Celery app both sides share: the gateway only sends by task name (it never imports the worker's torch
code); the worker registers the task under that name.

Delivery settings follow the lessons in docs/architecture.md ("Delivery, leases and rescue"): acks late + reject on
worker loss (a killed worker's job is redelivered, not lost), prefetch 1, results ignored (our own job records
carry state, with TTLs), and a Redis visibility timeout above the hard time limit so a slow task is never handed
to a second worker.
"""

from __future__ import annotations

from urllib.parse import quote

from celery import Celery
from redis import Redis

from shared.backends import redis_credentials, redis_database
from shared.settings import Settings

RENDER_TASK = "portraits.render"


def broker_url(settings: Settings) -> str:
    """kombu's broker URL: `redis_url`, or one `sentinel://` address per Sentinel (kombu's Sentinel transport
    asks them for the primary named in the transport options; #24) with `redis_url`'s credentials and database."""
    if not settings.redis_sentinel_addresses:
        return settings.redis_url
    # The database and credentials as redis-py reads them (a `?db=` wins over the path), so the broker and every
    # other client agree; quoted, so that a `;` or `@` in a password cannot split kombu's list (kombu unquotes).
    credentials = redis_credentials(settings)
    auth = ":".join(quote(str(credentials.get(name, "")), safe="") for name in ("username", "password"))
    auth = f"{auth}@" if credentials else ""
    hosts = [
        f"[{host}]:{port}" if ":" in host else f"{host}:{port}" for host, port in settings.redis_sentinel_addresses
    ]
    return ";".join(f"sentinel://{auth}{host}/{redis_database(settings)}" for host in hosts)


def _sentinel_options(settings: Settings) -> dict[str, object]:
    if not settings.redis_sentinel_addresses:
        return {}
    return {
        "master_name": settings.redis_sentinel_master,
        # The Sentinels' own connections: the services' budget, and redis_url's credentials (shared/backends.py).
        "sentinel_kwargs": {
            "socket_timeout": settings.redis_timeout,
            "socket_connect_timeout": settings.redis_timeout,
            **redis_credentials(settings),
        },
    }


def make_celery(settings: Settings) -> Celery:
    app = Celery("portraits", broker=broker_url(settings))
    app.conf.update(
        task_default_queue=settings.queue_name,
        task_routes={RENDER_TASK: {"queue": settings.queue_name}},
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_soft_time_limit=settings.task_soft_time_limit,
        task_time_limit=settings.task_hard_time_limit,
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout,
            # kombu looks for expired unacknowledged messages only every interval × throttle seconds (100 s
            # by default): a task whose worker node died would wait that long on top of the visibility timeout.
            "unacked_restore_interval": 10,
            "unacked_restore_throttle": 1,
            **_sentinel_options(settings),
        },
        broker_connection_retry_on_startup=True,
        # A demoted primary answers READONLY, which kombu counts as a channel error, not a connection error: without
        # this the worker's consumer would stop on it rather than reconnect to the new primary (celery#7946, #24).
        broker_channel_error_retry=True,
        task_serializer="json",
        accept_content=["json"],
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        enable_utc=True,
    )
    return app


def enqueue_render(app: Celery, settings: Settings, job_id: str) -> None:
    """Send the job's render task. The task id is the job id, so a message found in the broker names its job
    (the janitor's search for jobs whose message a Redis failover lost, #24); a job sent twice (a rescue, a
    resend) is two messages with one id, and the second start finds the job over (shared/job_start.py)."""
    app.send_task(RENDER_TASK, args=[job_id], queue=settings.queue_name, task_id=job_id)


def queue_depth(redis_client: Redis, settings: Settings) -> int:
    """Tasks waiting in the broker (kombu keeps a Redis list named after the queue)."""
    return int(redis_client.llen(settings.queue_name))
