"""Chart reduction: the min/max envelope keeps every extreme, LTTB keeps shape and ends."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smartlogger.export.reduce import lttb, make_buckets, minmax_envelope


def test_buckets_cover_window_and_budget() -> None:
    b = make_buckets(1_000, 37_000_000, 4000)
    assert b.n == 2000
    assert b.edges_ms[0] == 1_000 and b.edges_ms[-1] == 37_000_001
    assert np.all(np.diff(b.edges_ms) > 0)
    x = b.point_times_ms()
    assert len(x) == 4000 and np.all(np.diff(x) >= 0)
    assert x[0] >= 1_000 and x[-1] <= 37_000_000


def test_short_window_gives_fewer_buckets() -> None:
    b = make_buckets(0, 9, 4000)  # 10 ms: at most 10 one-ms buckets
    assert b.n == 10
    with pytest.raises(ValueError):
        make_buckets(10, 0, 100)


def test_envelope_keeps_single_sample_spike_and_order() -> None:
    t = np.arange(36_000, dtype=np.int64) * 1000
    y = np.full(36_000, 12.0)
    y[12_345] = 9.5  # one-sample dip below the alarm line must stay visible
    y[20_000] = 14.9
    b = make_buckets(int(t[0]), int(t[-1]), 400)
    env = minmax_envelope(t, y, b)
    assert env.min() == 9.5 and env.max() == 14.9
    # The bucket holding the dip: min first (it happens before the bucket's max? all
    # other values are 12.0, whose first occurrence is at the bucket start -> max first).
    k = int(np.searchsorted(b.edges_ms, t[12_345], side="right")) - 1
    assert env[2 * k] == 12.0 and env[2 * k + 1] == 9.5


def test_envelope_matches_bruteforce() -> None:
    rng = np.random.default_rng(1)
    t = np.cumsum(rng.integers(1, 5000, 5000)).astype(np.int64)
    y = rng.normal(12, 0.5, 5000)
    b = make_buckets(int(t[0]), int(t[-1]), 300)
    env = minmax_envelope(t, y, b)
    for k in range(b.n):
        sel = (t >= b.edges_ms[k]) & (t < b.edges_ms[k + 1])
        if not sel.any():
            assert np.isnan(env[2 * k]) and np.isnan(env[2 * k + 1])
            continue
        seg = y[sel]
        i_min, i_max = int(np.argmin(seg)), int(np.argmax(seg))
        first, second = (seg[i_min], seg[i_max]) if i_min <= i_max else (seg[i_max], seg[i_min])
        assert env[2 * k] == first and env[2 * k + 1] == second


def test_envelope_gaps_are_nan_and_nan_samples_ignored() -> None:
    t = np.array([0, 1000, 2000, 50_000, 51_000], dtype=np.int64)
    y = np.array([1.0, np.nan, 3.0, 4.0, 5.0])
    b = make_buckets(0, 51_000, 20)  # 10 buckets of ~5.1 s
    env = minmax_envelope(t, y, b)
    assert env[0] == 1.0 and env[1] == 3.0
    assert np.isnan(env[2:-2]).all()  # the 48 s gap stays a gap
    assert env[-2] == 4.0 and env[-1] == 5.0


def test_envelope_outside_window_and_unsorted() -> None:
    b = make_buckets(10_000, 20_000, 10)
    assert np.isnan(minmax_envelope(np.array([0, 1]), np.array([1.0, 2.0]), b)).all()
    with pytest.raises(ValueError):
        minmax_envelope(np.array([10_500, 10_000]), np.array([1.0, 2.0]), b)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=300),
       st.integers(2, 80))
def test_envelope_property_extremes_survive(values: list[float], points: int) -> None:
    y = np.array(values)
    t = np.arange(len(y), dtype=np.int64) * 1000
    env = minmax_envelope(t, y, make_buckets(0, int(t[-1]), points))
    assert len(env) <= points
    assert np.nanmin(env) == y.min() and np.nanmax(env) == y.max()


def test_lttb_keeps_ends_and_peak() -> None:
    x = np.arange(10_000, dtype=np.float64)
    y = np.sin(x / 500.0)
    y[7_777] = 5.0
    xs, ys = lttb(x, y, 500)
    assert len(xs) == 500 and xs[0] == 0 and xs[-1] == 9_999
    assert np.all(np.diff(xs) > 0)
    assert 5.0 in ys
    # short input comes back unchanged
    xs2, ys2 = lttb(x[:100], y[:100], 500)
    assert np.array_equal(xs2, x[:100]) and np.array_equal(ys2, y[:100])
    with pytest.raises(ValueError):
        lttb(x, y, 2)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5_000), st.integers(-2000, 2000)), min_size=0, max_size=400),
       st.integers(2, 60), st.integers(1, 50))
def test_the_envelope_in_pieces_is_the_envelope_in_one(samples: list[tuple[int, int]], points: int,
                                                      piece: int) -> None:
    """``minmax_envelope`` works a piece of samples at a time (a long log's temporaries stay small):
    whatever the pieces, it gives what the whole series at once gives, for the raw integers with
    ``divide`` as for their values."""
    from smartlogger.export import reduce

    t = np.sort(np.array([s[0] for s in samples], dtype=np.int64))
    mv = np.array([s[1] for s in samples], dtype=np.int32)
    b = make_buckets(-100, 4_000, points)
    whole = minmax_envelope(t, mv / 1000.0, b)  # one piece: ENVELOPE_PIECE (2^18) > 400 samples
    default = reduce.ENVELOPE_PIECE
    reduce.ENVELOPE_PIECE = piece
    try:
        assert np.array_equal(minmax_envelope(t, mv, b, divide=1000.0), whole, equal_nan=True)
        assert np.array_equal(minmax_envelope(t, mv / 1000.0, b), whole, equal_nan=True)
    finally:
        reduce.ENVELOPE_PIECE = default
