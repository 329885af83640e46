"""scripts/bench_pair.py's arithmetic and how it starts a side: the paired differences, the sign test's interval for
their median, and the `--serve` command that runs a side from its own tree (#11)."""

from __future__ import annotations

import math
import random
import sys
from pathlib import Path

import pytest

from scripts import bench_pair


def test_differences_are_new_minus_base_pair_by_pair():
    assert bench_pair.paired_differences([0.030, 0.040], [0.028, 0.045]) == pytest.approx([-0.002, 0.005])


def test_differences_need_as_many_values_on_each_side():
    with pytest.raises(ValueError, match="2 base values against 1"):
        bench_pair.paired_differences([1.0, 2.0], [1.0])


def test_the_interval_is_the_sign_tests_order_statistics():
    # n = 20: P(Binomial(20, 1/2) <= 5) = 0.0207 <= 0.025 < P(... <= 6) = 0.0577, so the 6th smallest and the
    # 6th largest value bound the median, with 1 - 2 * 0.0207 = 95.9 % coverage.
    values = [float(v) for v in range(1, 21)]
    random.Random(7).shuffle(values)
    interval = bench_pair.median_interval(values)
    assert (interval.median, interval.low, interval.high) == (10.5, 6.0, 15.0)
    assert interval.confidence == pytest.approx(1 - 2 * sum(math.comb(20, k) for k in range(6)) / 2**20)
    assert interval.confidence >= 0.95


def test_too_few_values_give_the_whole_range():
    # n = 5: even the extremes leave 2 * 1/32 = 6.25 % outside, more than 5 %.
    interval = bench_pair.median_interval([3.0, -1.0, 2.0, 0.5, 4.0])
    assert (interval.median, interval.low, interval.high, interval.confidence) == (2.0, -1.0, 4.0, 1.0)


def test_the_interval_narrows_with_more_pairs():
    rng = random.Random(11)
    few = bench_pair.median_interval([rng.gauss(0, 5) for _ in range(20)])
    many = bench_pair.median_interval([rng.gauss(0, 5) for _ in range(400)])
    assert many.high - many.low < (few.high - few.low) / 2


def test_no_values_is_an_error():
    with pytest.raises(ValueError):
        bench_pair.median_interval([])


def test_a_side_is_served_by_this_file_from_its_own_tree(tmp_path):
    command, env = bench_pair.serve_command(tmp_path / "tree", tmp_path / "ready.json", ["batch_max_size=2"])
    assert command[:2] == [sys.executable, str(Path(bench_pair.__file__).resolve())]
    assert command[2:] == ["--serve", str(tmp_path / "ready.json"), "--set", "batch_max_size=2"]
    # The tree's own modules load first: the base side runs the base revision's stack, not this checkout's.
    assert env["PYTHONPATH"] == str(tmp_path / "tree")
