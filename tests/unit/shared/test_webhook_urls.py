"""Webhooks without servers (#10): which callback URLs are refused, the payload, the signature, the settings."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError
from standardwebhooks import Webhook, WebhookVerificationError

from shared.jobs import Job, JobState
from shared.settings import Settings
from shared.webhooks import (
    BACKOFF_SECONDS,
    CallbackRefused,
    Deliverer,
    Delivery,
    EventType,
    InvalidCallbackUrl,
    backoff,
    check_callback_url,
    delivery_id,
    host_of,
    payload_for,
    refused_address,
)
from tests.support.webhooks import new_secret

EVERY_PORT = range(1, 65536)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",  # loopback
        "http://127.1.2.3:8080/",
        "http://10.0.0.5/hook",  # private
        "http://172.16.0.1/",
        "http://192.168.1.1/",
        "http://169.254.169.254/latest/meta-data/",  # link-local: the cloud metadata service
        "http://[::1]/hook",  # IPv6 loopback
        "http://[::ffff:127.0.0.1]/",  # IPv4-mapped IPv6 of loopback
        "http://[::ffff:169.254.169.254]/",
        "http://[fe80::1]/",  # IPv6 link-local
        "http://[fc00::1]/",  # IPv6 unique local
        "http://0.0.0.0/",  # unspecified
        "http://224.0.0.1/",  # multicast
        "http://240.0.0.1/",  # reserved
        "http://100.64.0.1/",  # carrier-grade NAT: not public
        "http://2130706433/",  # 127.0.0.1 as one number: judged by what it resolves to
        "http://0x7f.1/",
        "http://localhost:9000/hook",  # a name that resolves to loopback
        "http://does-not-exist.invalid/hook",  # does not resolve at all
    ],
)
def test_non_public_destinations_are_refused(url):
    with pytest.raises(CallbackRefused) as refused:
        check_callback_url(url, allowed_ports=EVERY_PORT)  # judged by address, not by the port rule (#25)
    assert refused.value.code == "callback_url_refused"


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/x",
        "file:///etc/passwd",
        "gopher://example.com/",
        "javascript:alert(1)",
        "/relative/path",
        "example.com/hook",
        "http://",
        "http:///path",
        "http://user:pass@example.com/hook",
        "https://user@example.com/",
        "http://example.com:99999/",
        "http://exa mple.com/",
        "http://example.com/\nX-Injected: 1",
        "http://[::1/",
        "https://example.com/" + "a" * 2048,
    ],
)
def test_malformed_urls_are_invalid(url):
    with pytest.raises(InvalidCallbackUrl) as invalid:
        check_callback_url(url)
    assert invalid.value.code == "invalid_callback_url"


@pytest.mark.parametrize(
    "url, allowed",
    [
        ("http://127.0.0.1:8000/hook", {"127.0.0.1"}),
        ("http://localhost:8000/hook", {"localhost"}),
        ("http://LOCALHOST./hook", {"localhost"}),
        ("http://[::1]:8000/", {"[::1]"}),
    ],
)
def test_the_allow_list_admits_named_hosts_only(url, allowed):
    assert check_callback_url(url, allowed) == url
    with pytest.raises(CallbackRefused):
        check_callback_url(url, {"example.com"}, allowed_ports=EVERY_PORT)


def test_public_addresses_pass():
    assert refused_address("93.184.216.34") is None
    assert refused_address("2606:4700:4700::1111") is None
    assert check_callback_url(" https://93.184.216.34/hook?x=1 ") == "https://93.184.216.34/hook?x=1"


def test_logs_see_the_host_only():
    assert host_of("https://Hooks.Example.com:8443/secret/path?token=abc") == "hooks.example.com"


def _job(state: JobState, **fields: object) -> Job:
    return Job(id="a" * 32, state=state, created_at=0.0, callback_url="https://example.com/hook", **fields)


def test_payloads_carry_the_public_facts_only():
    done = json.loads(
        payload_for(
            _job(JobState.DONE, style="ink-wash", family="ink", reason="because", result_key="results/x.jpg"),
            EventType.DONE,
            1_700_000_000,
        )
    )
    assert done == {
        "type": "portrait.done",
        "timestamp": "2023-11-14T22:13:20Z",
        "data": {
            "id": "a" * 32,
            "status": "done",
            "status_url": f"/v1/portraits/{'a' * 32}",
            "style": "ink-wash",
            "family": "ink",
            "reason": "because",
            "error": None,
        },
    }
    failed = json.loads(
        payload_for(_job(JobState.FAILED, error_code="no_face", error_message="no face"), EventType.FAILED, 0)
    )
    assert failed["type"] == "portrait.failed"
    assert failed["data"]["error"] == {"code": "no_face", "message": "no face"}
    assert "example.com" not in json.dumps(failed)  # the callback URL is not echoed


def test_signature_verifies_with_the_librarys_own_verifier():
    secret = new_secret()
    delivery = Delivery(
        delivery_id("a" * 32, EventType.DONE),
        "a" * 32,
        EventType.DONE,
        "https://example.com/hook",
        payload_for(_job(JobState.DONE), EventType.DONE, 0),
        0.0,
    )
    deliverer = Deliverer(secret)
    headers = deliverer.signed_headers(delivery, datetime.now(UTC))
    assert headers["webhook-id"] == "msg_" + "a" * 32 + "_done"
    assert Webhook(secret).verify(delivery.payload.encode(), headers)["data"]["id"] == "a" * 32
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(delivery.payload.encode(), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(delivery.payload.replace("done", "gone").encode(), headers)
    deliverer.close()


def test_backoff_follows_the_schedule_then_repeats_its_last_wait():
    assert [backoff(n) for n in range(1, 8)] == [5, 30, 120, 600, 1800, 1800, 1800]
    assert BACKOFF_SECONDS == (5, 30, 120, 600, 1800)


def test_settings_check_the_secret():
    secret = new_secret()
    assert Settings(webhook_secret=secret).webhook_secret.get_secret_value() == secret
    assert Settings().webhook_secret.get_secret_value() == ""  # disabled by default
    for bad in ("whsec_not base64!", "whsec_" + "QUFB", "plain-text-secret"):
        with pytest.raises(ValidationError):
            Settings(webhook_secret=bad)


def test_settings_parse_the_allow_list():
    settings = Settings(webhook_allowed_hosts=" 127.0.0.1, Receiver.Local. ,[::1],")
    assert settings.webhook_allowed_host_set == frozenset({"127.0.0.1", "receiver.local", "::1"})
