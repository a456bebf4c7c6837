"""Bootstrap intervals over problems: seeded, around the mean, and paired so that shared difficulty cancels."""

from __future__ import annotations

import numpy as np
import pytest

from daj.eval.intervals import bootstrap_mean, paired_bootstrap, percent


def test_seeded_and_around_the_mean():
    values = np.random.default_rng(0).random(131).round().tolist()
    a, b = bootstrap_mean(values, seed=7), bootstrap_mean(values, seed=7)
    assert a == b and bootstrap_mean(values, seed=8) != a
    assert a[0] < np.mean(values) < a[1]
    assert bootstrap_mean([1.0] * 10, 0) == [1.0, 1.0] and bootstrap_mean([], 0) is None
    assert percent([0.25, 0.5]) == [25.0, 50.0] and percent(None) is None


def test_width_shrinks_like_one_over_root_n():
    rng = np.random.default_rng(1)
    small = bootstrap_mean(rng.integers(0, 2, 100).tolist(), 0)
    large = bootstrap_mean(rng.integers(0, 2, 10000).tolist(), 0, reps=500)
    assert (small[1] - small[0]) / (large[1] - large[0]) == pytest.approx(10, rel=0.3)


def test_paired_interval_cancels_shared_difficulty():
    """Two methods that differ on 2 of 131 problems: the paired interval is tight around 2/131, while
    the difference of two unpaired intervals would straddle zero widely."""
    rng = np.random.default_rng(2)
    base = rng.integers(0, 2, 131).astype(float)
    better = base.copy()
    better[np.flatnonzero(base == 0)[:2]] = 1.0
    low, high = paired_bootstrap(better.tolist(), base.tolist(), seed=0)
    assert 0.0 <= low <= 2 / 131 <= high <= 5 / 131
    alone = bootstrap_mean(better.tolist(), 0)
    assert alone[1] - alone[0] > 3 * (high - low)
    assert paired_bootstrap(base.tolist(), base.tolist(), 0) == [0.0, 0.0]
    with pytest.raises(ValueError):
        paired_bootstrap([1.0], [1.0, 0.0], 0)
