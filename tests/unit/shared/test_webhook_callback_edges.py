"""The callback check's edges (#25): IPv4 wrapped in IPv6, ports, and refusals that tell no one what our DNS says.

No test here lets a packet leave this machine: names resolve through a stub (`.test` never resolves for real,
RFC 2606), and at delivery `create_connection` is a stub that records the address and raises, so a check that
wrongly lets a URL through shows as a recorded connect, never as a real one.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

import pytest
from pydantic import ValidationError

from shared import webhooks
from shared.settings import Settings
from shared.webhooks import (
    CallbackRefused,
    Deliverer,
    Delivery,
    EventType,
    InvalidCallbackUrl,
    Outcome,
    check_callback_url,
    refused_address,
)
from tests.support.webhooks import new_secret

PUBLIC = "93.184.216.34"  # example.com's old address; only ever judged or handed to the connect stub
SIXTOFOUR_PUBLIC = "2002:5db8:d822::1"  # 6to4 of PUBLIC
HOST = "hooks.example.test"

# Every IPv6 form below carries a non-public IPv4 address; today's check missed the 6to4 ones (#25).
WRAPPED = [
    ("2002:7f00:1::", "loopback, wrapped in 6to4"),  # 127.0.0.1
    ("2002:a9fe:a9fe::", "link-local, wrapped in 6to4"),  # 169.254.169.254: the metadata service
    ("2002:c0a8:101::1", "private, wrapped in 6to4"),  # 192.168.1.1
    ("2002:a00:5::", "private, wrapped in 6to4"),  # 10.0.0.5
    ("2001:0:5db8:d822:0:ffff:80ff:fffe", "loopback, wrapped in Teredo client"),  # server PUBLIC, client 127.0.0.1
    ("2001:0:5db8:d822:0:ffff:f5ff:fffa", "private, wrapped in Teredo client"),  # client 10.0.0.5
    ("2001:0:a9fe:a9fe:0:ffff:a247:27dd", "link-local, wrapped in Teredo server"),  # server 169.254.169.254
    ("64:ff9b::7f00:1", "loopback, wrapped in NAT64"),  # the well-known NAT64 prefix (RFC 6052)
    ("64:ff9b::a9fe:a9fe", "link-local, wrapped in NAT64"),
]


@dataclass
class StubDns:
    answers: dict[str, list[str]] = field(default_factory=dict)  # an empty list: the name does not resolve
    asked: list[str] = field(default_factory=list)


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> StubDns:
    """Answers for names under our control; every other name (localhost…) goes to the real resolver."""
    stub = StubDns()
    answers = stub.answers
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host not in answers:
            return real(host, port, *args, **kwargs)
        stub.asked.append(host)
        if not answers[host]:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (a, port, 0, 0))
            if ":" in a
            else (socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in answers[host]
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return stub


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Where the deliverer tried to connect; each try fails at once, so nothing is ever sent."""
    tried: list[tuple[str, int]] = []

    def create_connection(address, *args, **kwargs):
        tried.append(address)
        raise ConnectionRefusedError("stub: no connection leaves a unit test")

    monkeypatch.setattr(webhooks.urllib3_connection, "create_connection", create_connection)
    return tried


def _send(url: str, **deliverer: object) -> webhooks.Attempt:
    sender = Deliverer(new_secret(), **deliverer)
    try:
        return sender.send(Delivery("msg_x", "x" * 32, EventType.DONE, url, "{}", 0.0))
    finally:
        sender.close()


# ------------------------------------------------------------------------------------ wrapped IPv4 (item 2)


@pytest.mark.parametrize("address, why", WRAPPED)
def test_ipv6_that_wraps_a_non_public_ipv4_is_refused_for_what_it_wraps(address, why):
    """The reason names the wrapped address's kind: the check unwrapped it, rather than leaning on Python's
    tables (which call 2002::/16 global, and happen to refuse Teredo and NAT64 wholesale today)."""
    assert refused_address(address) == why
    with pytest.raises(CallbackRefused) as refused:
        check_callback_url(f"http://[{address}]/hook")
    assert refused.value.code == "callback_url_refused"


@pytest.mark.parametrize(
    "address, why",
    [
        ("64:ff9b:1::5db8:d822", "local-use NAT64"),  # RFC 8215: leads wherever the local network says
        ("::5db8:d822", "IPv4-compatible"),  # deprecated (RFC 4291)
        ("2001:0:5db8:d822:0:ffff:a247:27de", "Teredo"),  # both ends public: still a NATed client, never a server
    ],
)
def test_prefixes_that_are_never_called_are_refused_whatever_they_wrap(monkeypatch, address, why):
    # Pretend Python's tables call every address global (they differ across versions): our own list still refuses.
    monkeypatch.setattr(webhooks, "_not_public", lambda ip: None)
    assert refused_address(address) == why


@pytest.mark.parametrize("address, _why", WRAPPED)
def test_a_name_resolving_to_a_wrapped_address_is_refused(dns, address, _why):
    dns.answers[HOST] = [address]
    with pytest.raises(CallbackRefused):
        check_callback_url(f"https://{HOST}/hook")


def test_a_6to4_address_wrapping_a_public_ipv4_passes_the_check():
    """Unwrapping is enough: a 6to4 packet ends at the IPv4 host it wraps, and that host is judged (check only:
    nothing is sent to it)."""
    assert refused_address(SIXTOFOUR_PUBLIC) is None
    assert check_callback_url(f"http://[{SIXTOFOUR_PUBLIC}]/hook") == f"http://[{SIXTOFOUR_PUBLIC}]/hook"


def test_the_deliverer_refuses_a_wrapped_address_before_connecting(dns, connects):
    """DNS rebinding to 6to4-of-loopback after the upload was accepted: refused at connect time, not tried."""
    dns.answers[HOST] = ["2002:7f00:1::"]
    attempt = _send(f"https://{HOST}/hook")
    assert attempt.outcome is Outcome.REFUSED
    assert connects == []
    assert attempt.address == "2002:7f00:1::"  # for the operator's log line
    assert "2002:7f00:1::" not in attempt.detail


# ------------------------------------------------------------------------------------ ports (item 3)


@pytest.mark.parametrize("port", [22, 25, 6379, 8080, 8443])
def test_ports_other_than_80_and_443_are_refused_without_asking_dns(dns, port):
    dns.answers[HOST] = [PUBLIC]
    with pytest.raises(CallbackRefused) as refused:
        check_callback_url(f"https://{HOST}:{port}/hook")
    assert refused.value.code == "callback_url_refused"
    assert f"port {port}" in str(refused.value)
    assert dns.asked == []


@pytest.mark.parametrize("port", ["0", "65536", "99999"])
def test_a_port_that_is_no_port_is_invalid_even_for_allow_listed_hosts(port):
    for allowed in (frozenset(), frozenset({"127.0.0.1"})):
        with pytest.raises(InvalidCallbackUrl):
            check_callback_url(f"http://127.0.0.1:{port}/hook", allowed)


@pytest.mark.parametrize("netloc", [HOST, f"{HOST}:80", f"{HOST}:443"])
@pytest.mark.parametrize("scheme", ["http", "https"])
def test_80_and_443_pass_explicit_or_by_default(dns, scheme, netloc):
    dns.answers[HOST] = [PUBLIC]
    assert check_callback_url(f"{scheme}://{netloc}/hook") == f"{scheme}://{netloc}/hook"


def test_the_setting_can_allow_another_port(dns):
    dns.answers[HOST] = [PUBLIC]
    ports = Settings(webhook_allowed_ports=" 443, 8443 ,").webhook_allowed_port_set
    assert ports == frozenset({443, 8443})
    assert check_callback_url(f"https://{HOST}:8443/hook", allowed_ports=ports)
    with pytest.raises(CallbackRefused):
        check_callback_url(f"http://{HOST}/hook", allowed_ports=ports)  # 80 is no longer allowed


def test_an_allow_listed_host_may_name_any_port():
    """The operator's own receiver (the tests' loopback one listens on a random port)."""
    assert check_callback_url("http://127.0.0.1:6379/", {"127.0.0.1"}) == "http://127.0.0.1:6379/"


@pytest.mark.parametrize("value", ["", " , ", "0", "65536", "http", "+80", "8_0", "80;443", "80,-1"])
def test_the_port_setting_is_checked_at_start(value):
    with pytest.raises(ValidationError):
        Settings(webhook_allowed_ports=value)
    assert Settings().webhook_allowed_port_set == frozenset({80, 443})


def test_the_deliverer_checks_the_port_again_before_connecting(dns, connects):
    """A URL accepted under a wider setting is refused once the setting narrows; with the port allowed, the
    connection is tried (here: recorded by the stub and failed, never made)."""
    dns.answers[HOST] = [PUBLIC]
    refused = _send(f"https://{HOST}:8443/hook")
    assert refused.outcome is Outcome.REFUSED and connects == []
    tried = _send(f"https://{HOST}:8443/hook", allowed_ports=frozenset({443, 8443}))
    assert tried.outcome is Outcome.FAILED and connects == [(PUBLIC, 8443)]


# ------------------------------------------------------------------------------------ refusals (item 4)


def test_a_refusal_never_says_what_a_name_resolved_to(dns):
    dns.answers["vm"] = ["127.0.0.1"]
    with pytest.raises(CallbackRefused) as refused:
        check_callback_url("http://vm/hook")
    assert "'vm'" in str(refused.value)
    assert "127.0.0.1" not in str(refused.value)
    assert "loopback" not in str(refused.value)
    assert refused.value.address == "127.0.0.1"  # kept for our logs


def test_a_refusal_does_not_tell_an_internal_name_from_a_missing_one(dns):
    """Otherwise the gateway would still answer 'does `redis` exist in your network?'."""
    dns.answers["redis"] = ["10.0.0.5"]
    dns.answers["nothing"] = []
    messages = []
    for host in ("redis", "nothing"):
        with pytest.raises(CallbackRefused) as refused:
            check_callback_url(f"http://{host}/hook")
        messages.append(str(refused.value).replace(repr(host), "HOST"))
    assert messages[0] == messages[1]


def test_localhost_refusal_names_no_address():
    with pytest.raises(CallbackRefused) as refused:
        check_callback_url("http://localhost/hook")  # the real resolver: localhost never leaves the machine
    assert "127.0.0.1" not in str(refused.value) and "::1" not in str(refused.value)


def test_an_ip_literal_refusal_may_name_the_address_the_client_wrote():
    with pytest.raises(CallbackRefused) as refused:
        check_callback_url("http://[2002:7f00:1::]/hook")
    assert "2002:7f00:1::" in str(refused.value) and "loopback" in str(refused.value)
