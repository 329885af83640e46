"""Each S3 caller's budget is derived in one place (`Settings.s3_budget`), from the same environment variables the
deployments set: the worker and the janitor count `s3_max_attempts` as retries, the gateway has its own."""

from __future__ import annotations

import pytest

from shared.settings import S3Budget, Settings


def test_a_service_counts_its_attempts_as_retries_after_the_first() -> None:
    settings = Settings(s3_max_attempts=4, s3_connect_timeout=2.0, s3_read_timeout=5.0)
    assert settings.s3_budget() == S3Budget(connect_timeout=2.0, read_timeout=5.0, attempts=5)
    assert settings.s3_budget(for_="service") == settings.s3_budget()
    assert settings.s3_budget().per_call_seconds == 7.0


def test_the_gateway_has_its_own_short_budget() -> None:
    settings = Settings(gateway_s3_timeout=1.5, gateway_s3_max_attempts=2, s3_max_attempts=9, s3_read_timeout=30.0)
    assert settings.s3_budget(for_="gateway") == S3Budget(connect_timeout=1.5, read_timeout=1.5, attempts=2)


def test_a_readiness_probe_tries_once_quickly() -> None:
    assert Settings(s3_max_attempts=9).s3_budget(for_="probe") == S3Budget(1.0, 2.0, 1)


def test_the_budgets_read_the_documented_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "PORTRAITS_S3_MAX_ATTEMPTS": "3",
        "PORTRAITS_S3_CONNECT_TIMEOUT": "0.5",
        "PORTRAITS_S3_READ_TIMEOUT": "4",
        "PORTRAITS_GATEWAY_S3_TIMEOUT": "0.75",
        "PORTRAITS_GATEWAY_S3_MAX_ATTEMPTS": "3",
    }.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.s3_budget() == S3Budget(0.5, 4.0, 4)
    assert settings.s3_budget(for_="gateway") == S3Budget(0.75, 0.75, 3)


def test_a_budget_is_frozen() -> None:
    budget = Settings().s3_budget()
    with pytest.raises(AttributeError):
        budget.attempts = 1  # type: ignore[misc]
