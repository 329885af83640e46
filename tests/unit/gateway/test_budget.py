"""The gateway's budget is resolved once from Settings, and hands out what each collaborator needs."""

from __future__ import annotations

import pytest

from services.gateway.budget import GatewayBudget
from shared.settings import S3Budget, Settings
from shared.storage import longest_call_seconds


def test_the_gateway_budget_comes_from_the_gateway_settings() -> None:
    settings = Settings(
        gateway_s3_timeout=1.5,
        gateway_s3_max_attempts=2,
        redis_timeout=1.0,
        gateway_threads=256,
        gateway_body_timeout=10.0,
        gateway_body_min_rate=16384,
    )
    budget = GatewayBudget.from_settings(settings)
    assert budget.s3 == S3Budget(1.5, 1.5, 2)
    assert budget.probe_s3 == S3Budget(1.0, 2.0, 1)
    assert budget.redis_max_connections == 256 + 8
    assert (budget.body_seconds, budget.body_min_rate) == (10.0, 16384)


def test_a_source_is_expected_for_its_longest_put_and_the_publication() -> None:
    settings = Settings(gateway_s3_timeout=1.5, gateway_s3_max_attempts=2, redis_timeout=1.0)
    budget = GatewayBudget.from_settings(settings)
    # Two attempts and four more request timeouts of 3 s each, the longest backoff (2 s), two Redis round trips.
    assert longest_call_seconds(budget.s3) == pytest.approx(3.0 * (2 + 4) + 2.0)
    assert budget.source_expected_seconds == pytest.approx(20.0 + 2 * 1.0)
