"""The cross-site rule (services/gateway/browsers.py), case by case: Go's CrossOriginProtection's table."""

from __future__ import annotations

import pytest

from services.gateway.browsers import cross_site_refusal

HOST = "portraits.example:8080"
TRUSTED = frozenset({"https://studio.example"})


@pytest.mark.parametrize(
    ("method", "headers", "refused"),
    [
        # Reads are never refused, whoever sends them.
        ("GET", {"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}, False),
        ("HEAD", {"Sec-Fetch-Site": "cross-site"}, False),
        ("OPTIONS", {"Sec-Fetch-Site": "cross-site"}, False),
        # Current browsers: Sec-Fetch-Site decides.
        ("POST", {"Sec-Fetch-Site": "same-origin", "Origin": f"http://{HOST}"}, False),
        ("POST", {"Sec-Fetch-Site": "none"}, False),
        ("POST", {"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}, True),
        ("DELETE", {"Sec-Fetch-Site": "cross-site"}, True),
        ("POST", {"Sec-Fetch-Site": "same-site", "Origin": "https://other.portraits.example"}, True),
        ("POST", {"Sec-Fetch-Site": "Cross-Site"}, True),
        ("POST", {"Sec-Fetch-Site": "cross-site", "Origin": f"http://{HOST}"}, True),  # the browser's word wins
        # Older browsers: Origin must name this host.
        ("POST", {"Origin": f"http://{HOST}"}, False),
        ("POST", {"Origin": f"HTTPS://{HOST.upper()}"}, False),
        ("POST", {"Origin": "https://evil.example"}, True),
        ("POST", {"Origin": "http://portraits.example"}, True),  # another port is another origin
        ("DELETE", {"Origin": "null"}, True),  # a sandboxed frame, a data: URL
        # No browser at all (curl, server-side clients): nothing to judge.
        ("POST", {}, False),
        ("DELETE", {}, False),
        # A configured origin passes either way.
        ("POST", {"Sec-Fetch-Site": "cross-site", "Origin": "https://studio.example"}, False),
        ("POST", {"Origin": "https://studio.example/"}, False),
        ("POST", {"Sec-Fetch-Site": "cross-site", "Origin": "https://studio.example.evil"}, True),
    ],
)
def test_state_changing_requests_from_other_sites_are_refused(
    method: str, headers: dict[str, str], refused: bool
) -> None:
    refusal = cross_site_refusal(
        method, HOST, TRUSTED, sec_fetch_site=headers.get("Sec-Fetch-Site", ""), origin=headers.get("Origin", "")
    )

    assert (refusal is not None) is refused
    if refusal is not None:
        assert (refusal.code, refusal.status) == ("cross_site_request", 403)
        assert method in refusal.message and "evil" not in refusal.message  # nothing the client sent echoed
