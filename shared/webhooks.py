"""Webhooks (#10): a signed POST to the client's `callback_url` when its job ends done or failed.

Three parts, so that a slow or hostile receiver can never hold up a render:

- `check_callback_url` judges a URL at submit time: absolute http(s), no credentials, and — unless its host is
  allow-listed — port 80 or 443 (or another of `webhook_allowed_ports`) and every address it resolves to
  public. Loopback, private, link-local (the cloud metadata service at 169.254.169.254), multicast, reserved
  and unspecified addresses are refused, also when wrapped in an IPv6 address (IPv4-mapped, 6to4, Teredo,
  NAT64). Otherwise any client could make our servers call our own Redis, S3 or the metadata service
  (server-side request forgery). A refusal names the host the client gave, never what it resolved to: the
  gateway must not answer DNS questions about our internal names (#25).
- `WebhookOutbox` is the Redis outbox the worker and the janitor write to when a job ends (a sorted set of
  delivery ids by next-attempt time + one hash per delivery); writing it is all a render ever waits for.
- `Deliverer` sends one attempt, signed the Standard Webhooks way (`webhook-id`, `webhook-timestamp`,
  `webhook-signature`), with short timeouts, never following a redirect, and connecting only to addresses it
  has checked itself at connect time: a host that resolved to a public address at submit time and to
  127.0.0.1 now (DNS rebinding) is refused, because the check and the connection use the same lookup.

The delivery loop that drives these lives in the janitor (services/janitor/webhooks.py).

Long on purpose: the three parts share the address checks that keep a receiver from
steering our servers (SSRF); in one file, a reader sees that submit time and connect time apply the same rules.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

import redis
import requests
from requests.adapters import HTTPAdapter
from standardwebhooks import Webhook
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.util import connection as urllib3_connection

from shared.claims import CLAIM_DUE
from shared.jobs import Job, JobState
from shared.logging import get_logger
from shared.redis_replies import fields, hash_text

log = get_logger(__name__)

MAX_URL_LENGTH = 2048
SCHEMES = ("http", "https")
DEFAULT_PORTS = {"http": 80, "https": 443}
#: Ports a callback may name unless `webhook_allowed_ports` says otherwise: a public host's SSH, SMTP or Redis
#: port is not ours to knock on (#25).
ALLOWED_PORTS: frozenset[int] = frozenset({80, 443})
CONNECT_TIMEOUT = 3.0
READ_TIMEOUT = 5.0
#: Waits before the 2nd, 3rd… attempt; past the end of the list the last wait repeats.
BACKOFF_SECONDS: tuple[float, ...] = (5, 30, 120, 600, 1800)
STATUS_PATH = "/v1/portraits/{id}"  # the gateway's status route (relative, like the 202's `status_url`)
USER_AGENT = "ai-portraits-webhooks/1"


class EventType(StrEnum):
    DONE = "portrait.done"
    FAILED = "portrait.failed"


# ------------------------------------------------------------------------------------------ URL checks


class CallbackUrlError(ValueError):
    code = "invalid_callback_url"


class InvalidCallbackUrl(CallbackUrlError):
    """Not an absolute http(s) URL we accept (syntax)."""

    code = "invalid_callback_url"


class CallbackRefused(CallbackUrlError):
    """A well-formed URL whose port we never call, or whose host does not resolve or resolves to an address we
    never call. The message is the client's; `address` (what the host resolved to) is for our logs only."""

    code = "callback_url_refused"

    def __init__(self, message: str, address: str = "") -> None:
        super().__init__(message)
        self.address = address


def normalize_host(host: str) -> str:
    return host.strip().lower().strip("[]").rstrip(".")


def host_of(url: str) -> str:
    """The URL's host alone: what logs may show of a callback URL (never its path or query)."""
    try:
        return normalize_host(urlsplit(url).hostname or "") or "?"
    except ValueError:
        return "?"


#: RFC 6052's well-known NAT64 prefix: its last 32 bits are the IPv4 address a translator connects to.
NAT64_PREFIX = ipaddress.IPv6Network("64:ff9b::/96")
#: Refused whatever they carry, without relying on Python's tables (which mark these differently across
#: versions): where a local-use NAT64 prefix leads is the local network's choice (RFC 8215), a Teredo address is a
#: client behind a NAT, never a server (RFC 4380), and IPv4-compatible addresses are deprecated (RFC 4291).
NEVER_CALLED_V6: tuple[tuple[ipaddress.IPv6Network, str], ...] = (
    (ipaddress.IPv6Network("64:ff9b:1::/48"), "local-use NAT64"),
    (ipaddress.IPv6Network("2001::/32"), "Teredo"),
    (ipaddress.IPv6Network("::/96"), "IPv4-compatible"),
)


def wrapped_ipv4(ip: ipaddress.IPv6Address) -> list[tuple[str, ipaddress.IPv4Address]]:
    """The IPv4 addresses an IPv6 address carries, each with the name of its wrapping: a packet sent to the
    IPv6 address is delivered to (or through) them, so each must pass the same check (#25)."""
    found: list[tuple[str, ipaddress.IPv4Address]] = []
    if ip.sixtofour is not None:
        found.append(("6to4", ip.sixtofour))
    if ip.teredo is not None:
        server, client = ip.teredo  # ipaddress has already undone the client's bit-flipping
        found += [("Teredo server", server), ("Teredo client", client)]
    if ip in NAT64_PREFIX:
        found.append(("NAT64", ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)))
    return found


def _not_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why `ip` itself is not public (Python's tables), or None."""
    for label, flagged in (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("private", ip.is_private),
        ("reserved", ip.is_reserved),
    ):
        if flagged:
            return label
    if not ip.is_global:  # e.g. 100.64.0.0/10 (carrier-grade NAT), which is neither private nor public
        return "not globally routable"
    return None


def refused_address(address: str) -> str | None:
    """Why `address` (an IP literal) may not be called, or None for a public unicast address."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id (fe80::1%eth0)
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return _not_public(ip.ipv4_mapped)  # ::ffff:127.0.0.1 is 127.0.0.1 to the socket
        for wrapping, inner in wrapped_ipv4(ip):
            why = _not_public(inner)
            if why is not None:
                return f"{why}, wrapped in {wrapping}"
    why = _not_public(ip)
    if why is None and isinstance(ip, ipaddress.IPv6Address):
        why = next((label for network, label in NEVER_CALLED_V6 if ip in network), None)
    return why


def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (IP literals in any form getaddrinfo accepts, e.g. `2130706433`, too)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise CallbackRefused(_not_callable(host)) from exc
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def check_addresses(host: str, addresses: Iterable[str]) -> None:
    """Refuse if any address is not public: a host with one public and one private address is refused too,
    since which one a connection would use is not ours to choose.

    An IP literal the client wrote is named with the reason; a name gets one message whether it does not
    resolve or resolves to an address we never call, so a refusal tells no one what our DNS says (#25)."""
    found = False
    for address in addresses:
        found = True
        why = refused_address(address)
        if why is None:
            continue
        if _is_ip_literal(host):
            raise CallbackRefused(f"the callback address {host!r} is {why}, which is never called", address)
        raise CallbackRefused(_not_callable(host), address)
    if not found:
        raise CallbackRefused(_not_callable(host))


def _not_callable(host: str) -> str:
    return f"the callback host {host!r} is never called: it must resolve, and to public addresses only"


def check_port(port: int, allowed_ports: Collection[int]) -> None:
    """Refuse a port outside `allowed_ports` (80 and 443 unless the operator allows more)."""
    if port not in allowed_ports:
        allowed = ", ".join(str(p) for p in sorted(allowed_ports))
        raise CallbackRefused(f"the callback port {port} is never called (allowed: {allowed})")


def check_callback_url(
    url: str,
    allowed_hosts: frozenset[str] | Iterable[str] = frozenset(),
    allowed_ports: Collection[int] = ALLOWED_PORTS,
) -> str:
    """The URL, stripped, if we will call it; raises `InvalidCallbackUrl` or `CallbackRefused`.

    An allow-listed host may name any port: the allow-list is the operator's own receiver (the tests' loopback
    one listens on a random port), already exempt from the address rules."""
    url = url.strip()
    if not url:
        raise InvalidCallbackUrl("callback_url is empty")
    if len(url) > MAX_URL_LENGTH:
        raise InvalidCallbackUrl(f"callback_url is longer than {MAX_URL_LENGTH} characters")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise InvalidCallbackUrl("callback_url contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise InvalidCallbackUrl("callback_url is not a valid URL") from None
    if parts.scheme.lower() not in SCHEMES:
        raise InvalidCallbackUrl("callback_url must be an absolute http:// or https:// URL")
    if "@" in parts.netloc:
        raise InvalidCallbackUrl("callback_url must not carry a user name or password")
    if port == 0:  # urlsplit refuses past 65535 itself; 0 is no port anyone listens on
        raise InvalidCallbackUrl("callback_url's port must be 1 to 65535")
    host = normalize_host(parts.hostname or "")
    if not host:
        raise InvalidCallbackUrl("callback_url has no host")
    if host in {normalize_host(h) for h in allowed_hosts}:
        return url
    port = port or DEFAULT_PORTS[parts.scheme.lower()]
    check_port(port, allowed_ports)  # before the lookup: a refused port asks our DNS nothing
    check_addresses(host, resolve(host, port))
    return url


# ------------------------------------------------------------------------------------------ the outbox


@dataclass(frozen=True)
class Delivery:
    id: str  # the Standard Webhooks message id: the same for every attempt, so receivers can deduplicate
    job_id: str
    event: EventType
    url: str
    payload: str  # the JSON body, fixed when the job ended; each attempt signs it afresh
    created_at: float
    attempts: int = 0  # attempts made so far


def delivery_id(job_id: str, event: EventType) -> str:
    # One message per job and outcome: a job ends once, and enqueueing twice (a retried write) is harmless.
    return f"msg_{job_id}_{event.value.rsplit('.', 1)[-1]}"


def payload_for(job: Job, event: EventType, at: float) -> str:
    """The body: the job's public facts and nothing else (no URL of the photo or portrait: those are
    presigned and short-lived; the receiver polls `status_url` for a fresh one)."""
    failed = job.state is JobState.FAILED
    document: dict[str, Any] = {
        "type": event.value,
        "timestamp": datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "data": {
            "id": job.id,
            "status": job.state.value,
            "status_url": STATUS_PATH.format(id=job.id),
            "style": job.style,
            "family": job.family,
            "reason": job.reason,
            "error": {"code": job.error_code or "engine_error", "message": job.error_message or ""} if failed else None,
        },
    }
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False)


class WebhookOutbox:
    DUE = "portraits:webhooks:due"
    PREFIX = "portraits:webhooks:delivery:"
    # A delivery's record expires by itself after the longest retry schedule and then some: an outbox entry
    # (which holds the callback URL) never outlives the need for it, even if no janitor ever runs.
    TTL_SECONDS = 6 * 3600

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client
        self._claim = client.register_script(CLAIM_DUE)

    def key(self, delivery_id: str) -> str:
        return self.PREFIX + delivery_id

    def enqueue(self, delivery: Delivery, when: float) -> None:
        record = {
            "job_id": delivery.job_id,
            "event": delivery.event.value,
            "url": delivery.url,
            "payload": delivery.payload,
            "created_at": repr(delivery.created_at),
            "attempts": str(delivery.attempts),
        }
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.key(delivery.id), mapping=fields(record))
            pipe.expire(self.key(delivery.id), self.TTL_SECONDS)
            pipe.zadd(self.DUE, {delivery.id: when}, nx=True)
            pipe.execute()

    def get(self, delivery_id: str) -> Delivery | None:
        raw = self._redis.hgetall(self.key(delivery_id))
        if not raw:
            return None
        values = hash_text(raw)
        return Delivery(
            id=delivery_id,
            job_id=values["job_id"],
            event=EventType(values["event"]),
            url=values["url"],
            payload=values["payload"],
            created_at=float(values["created_at"]),
            attempts=int(values["attempts"]),
        )

    def claim_due(self, now: float, limit: int, lease_seconds: float) -> list[Delivery]:
        """Due deliveries, each hidden from other claimers for `lease_seconds`."""
        claimed = []
        for member in self._claim(keys=[self.DUE], args=[now, limit, now + lease_seconds]):
            delivery = self.get(member.decode())
            if delivery is None:
                self._redis.zrem(self.DUE, member)  # its record expired: nothing left to send
                continue
            claimed.append(delivery)
        return claimed

    def reschedule(self, delivery: Delivery, when: float) -> Delivery:
        """Count an attempt and set the next one (only if the delivery is still in the outbox)."""
        again = Delivery(
            delivery.id,
            delivery.job_id,
            delivery.event,
            delivery.url,
            delivery.payload,
            delivery.created_at,
            delivery.attempts + 1,
        )
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.key(delivery.id), "attempts", str(again.attempts))
            pipe.zadd(self.DUE, {delivery.id: when}, xx=True)
            pipe.execute()
        return again

    def done(self, delivery_id: str) -> None:
        """Delivered or given up: forget it (and with it the callback URL)."""
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.zrem(self.DUE, delivery_id)
            pipe.delete(self.key(delivery_id))
            pipe.execute()

    def pending(self) -> int:
        return int(self._redis.zcard(self.DUE))


def notify_finished(outbox: WebhookOutbox | None, job: Job | None, at: float) -> None:
    """Put the webhook of a job that just ended (done or failed) in the outbox, if it asked for one.
    Best effort: an unreachable Redis loses the notification, never the job (the caller's transition already
    happened), and the failure is logged with the job id."""
    if outbox is None or job is None or not job.callback_url:
        return
    if job.state is JobState.DONE:
        event = EventType.DONE
    elif job.state is JobState.FAILED:
        event = EventType.FAILED
    else:
        return
    delivery = Delivery(
        id=delivery_id(job.id, event),
        job_id=job.id,
        event=event,
        url=job.callback_url,
        payload=payload_for(job, event, at),
        created_at=at,
    )
    try:
        outbox.enqueue(delivery, at)
    except redis.RedisError as exc:
        log.warning(
            "webhook not queued: Redis unavailable",
            job_id=job.id,
            webhook_event=event.value,
            error_type=type(exc).__name__,
        )


# ------------------------------------------------------------------------------------------ delivery


class _CheckedConnectionMixin(HTTPConnection):
    """Connects only to addresses it checked itself, from the same lookup (no rebinding between the check and
    the connect), and only on `allowed_ports`. `allowed` hosts skip both checks, as at submit time.

    It subclasses HTTPConnection so that `super()._new_conn()` and the attributes it reads are typed (#12); in
    `_CheckedHTTPSConnection` the MRO still puts HTTPSConnection between this and HTTPConnection."""

    allowed: frozenset[str] = frozenset()
    allowed_ports: frozenset[int] = ALLOWED_PORTS

    def _new_conn(self) -> socket.socket:
        host = normalize_host(self._dns_host)
        if not 0 < self.port < 65536:
            raise CallbackRefused(f"the callback port {self.port} is not a port")
        if host in self.allowed:
            return super()._new_conn()
        # Again at send time: the URL may have been accepted under a wider `webhook_allowed_ports`.
        check_port(self.port, self.allowed_ports)
        addresses = resolve(host, self.port)
        check_addresses(host, addresses)
        last: OSError | None = None
        for address in addresses:
            try:
                return urllib3_connection.create_connection(
                    (address, self.port),
                    self.timeout,
                    source_address=self.source_address,
                    socket_options=self.socket_options,
                )
            except OSError as exc:
                last = exc
        raise last or OSError(f"could not connect to {host}")


class _CheckedHTTPConnection(_CheckedConnectionMixin, HTTPConnection):
    pass


class _CheckedHTTPSConnection(_CheckedConnectionMixin, HTTPSConnection):
    pass  # TLS still verifies the certificate against the URL's host name, not the address


class _CheckedAdapter(HTTPAdapter):
    def __init__(self, allowed: frozenset[str], allowed_ports: frozenset[int]) -> None:
        self._allowed = allowed
        self._allowed_ports = allowed_ports
        super().__init__(max_retries=0)  # retries are the outbox's, with backoff

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        checks = {"allowed": self._allowed, "allowed_ports": self._allowed_ports}
        http_conn = type("Http", (_CheckedHTTPConnection,), checks)
        https_conn = type("Https", (_CheckedHTTPSConnection,), checks)
        self.poolmanager.pool_classes_by_scheme = {
            "http": type("HttpPool", (HTTPConnectionPool,), {"ConnectionCls": http_conn}),
            "https": type("HttpsPool", (HTTPSConnectionPool,), {"ConnectionCls": https_conn}),
        }


class Outcome(StrEnum):
    DELIVERED = "delivered"  # a 2xx
    FAILED = "failed"  # worth another attempt: non-2xx (3xx included), timeout, connection error
    REFUSED = "refused"  # the URL now resolves to an address, or names a port, we never call: not retried


@dataclass(frozen=True)
class Attempt:
    outcome: Outcome
    status: int | None = None  # the receiver's HTTP status, when it answered
    detail: str = ""  # for logs: never the URL, never the body
    address: str = ""  # refused: what the host resolved to, for the operator's logs (never told the client)


class Deliverer:
    def __init__(
        self,
        secret: str,
        allowed_hosts: frozenset[str] = frozenset(),
        allowed_ports: frozenset[int] = ALLOWED_PORTS,
        connect_timeout: float = CONNECT_TIMEOUT,
        read_timeout: float = READ_TIMEOUT,
    ) -> None:
        self._webhook = Webhook(secret)
        self._allowed = frozenset(normalize_host(h) for h in allowed_hosts)
        self._timeout = (connect_timeout, read_timeout)
        self._session = requests.Session()
        # No proxies, .netrc or CA bundles from the environment: the address checked is the one connected to.
        self._session.trust_env = False
        adapter = _CheckedAdapter(self._allowed, frozenset(allowed_ports))
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)

    def signed_headers(self, delivery: Delivery, at: datetime) -> dict[str, str]:
        """Standard Webhooks headers, signed at send time (receivers reject timestamps over 5 min old)."""
        return {
            "webhook-id": delivery.id,
            "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": self._webhook.sign(delivery.id, at, delivery.payload),
            "content-type": "application/json",
            "user-agent": USER_AGENT,
        }

    def send(self, delivery: Delivery) -> Attempt:
        headers = self.signed_headers(delivery, datetime.now(UTC).replace(microsecond=0))
        try:
            with self._session.post(
                delivery.url,
                data=delivery.payload.encode(),
                headers=headers,
                timeout=self._timeout,
                allow_redirects=False,
                stream=True,
            ) as response:
                status = response.status_code  # the body is never read: nothing in it matters to us
        except CallbackRefused as exc:
            return Attempt(Outcome.REFUSED, detail=str(exc), address=exc.address)
        except requests.RequestException as exc:
            return Attempt(Outcome.FAILED, detail=type(exc).__name__)
        if 200 <= status < 300:
            return Attempt(Outcome.DELIVERED, status)
        # 3xx included: a redirect is never followed (it could point anywhere, our own network included).
        return Attempt(Outcome.FAILED, status, f"HTTP {status}")

    def close(self) -> None:
        self._session.close()


def backoff(attempts: int, schedule: tuple[float, ...] = BACKOFF_SECONDS) -> float:
    """Seconds to wait after the `attempts`-th failed attempt (1-based)."""
    return schedule[min(attempts, len(schedule)) - 1]


def now() -> float:
    return time.time()
