"""Load shedding's arithmetic (#11): the wait a new upload would face, and when it is shed. Pure functions; the
Redis board is tested in tests/integration/shared/test_capacity_board.py."""

from __future__ import annotations

import math

import pytest

from shared.capacity import (
    RETRY_AFTER_MAX_SECONDS,
    RETRY_AFTER_MIN_SECONDS,
    Admit,
    Capacity,
    Shed,
    decide,
    estimate_wait,
)
from shared.settings import Settings

NONE = Capacity(0, 0.0)


def test_pooled_capacity_adds_rates_not_times():
    # 0.5 s and 1.5 s per job: 2 + 2/3 jobs a second together, i.e. 0.75 s per job for each of the two.
    pooled = Capacity.pooled([0.5, 1.5])
    assert pooled.renderers == 2
    assert pooled.seconds_per_job == pytest.approx(0.75)
    assert Capacity.pooled([2.0] * 4) == Capacity(4, 2.0)
    assert Capacity.pooled([]) == NONE


@pytest.mark.parametrize("renderers, seconds", [(-1, 0.0), (1, 0.0), (0, 1.0), (2, -1.0)])
def test_inconsistent_capacity_is_refused(renderers, seconds):
    with pytest.raises(ValueError):
        Capacity(renderers, seconds)


def test_wait_is_the_queue_ahead_at_the_pooled_rate():
    assert estimate_wait(0, Capacity(1, 2.0)) == 0
    assert estimate_wait(10, Capacity(1, 2.0)) == 20.0
    assert estimate_wait(10, Capacity(4, 2.0)) == 5.0
    assert estimate_wait(-3, Capacity(1, 2.0)) == 0  # never negative


def test_no_wait_is_estimated_without_a_renderer():
    with pytest.raises(ValueError):
        estimate_wait(1, NONE)


def test_admitted_while_the_wait_plus_one_render_fits():
    # One process at 2 s a job, limit 96 s: 47 jobs ahead wait 94 s, and 94 + 2 fits exactly.
    assert decide(47, Capacity(1, 2.0), 96.0) == Admit(94.0)
    assert decide(0, Capacity(1, 2.0), 96.0) == Admit(0.0)


def test_shed_once_it_does_not_and_told_when_the_queue_will_have_drained():
    # 48 ahead: 96 + 2 = 98 s, 2 s over the limit; the queue drains 2 s of wait in 2 s.
    assert decide(48, Capacity(1, 2.0), 96.0) == Shed(96.0, 2)
    # 60 ahead at 4 processes × 2 s: 30 s wait, 32 s with the render, 0.5 s over a 31.5 s limit → 1 s.
    assert decide(60, Capacity(4, 2.0), 31.5) == Shed(30.0, 1)


def test_retry_after_is_clamped():
    assert decide(1000, Capacity(1, 2.0), 96.0) == Shed(2000.0, RETRY_AFTER_MAX_SECONDS)
    shed = decide(48, Capacity(1, 2.0), 97.99)
    assert isinstance(shed, Shed) and shed.retry_after == RETRY_AFTER_MIN_SECONDS


def test_a_single_render_too_slow_for_the_limit_is_shed_even_with_an_empty_queue():
    assert decide(0, Capacity(2, 100.0), 96.0) == Shed(0.0, 4)


def test_no_renderer_reporting_admits_whatever_the_queue():
    # Idle, still loading or absent: nothing to estimate from, and shedding would keep the queue empty and
    # the processes idle, so that nothing would ever report again.
    assert decide(0, NONE, 96.0) == Admit(None)
    assert decide(10_000, NONE, 96.0) == Admit(None)


def test_the_limit_defaults_to_seven_tenths_of_the_photo_s_maximum_age():
    assert Settings().shed_max_seconds == 84.0
    assert Settings(source_max_age_seconds=300, shed_wait_fraction=0.5).shed_max_seconds == 150.0


@pytest.mark.parametrize("fraction", [0, -0.1, 1.01, math.nan])
def test_the_fraction_is_validated(fraction):
    with pytest.raises(ValueError):
        Settings(shed_wait_fraction=fraction)
