"""Shape-preserving reduction of long time series for charts.

Owns the two reducers the exporters use so a chart holds a few thousand
points however long the log is:

- ``minmax_envelope``: time buckets shared by all series; per bucket the
  minimum and the maximum, in the order they occurred. Fully vectorised
  (``ufunc.reduceat``), so 240 blocks x 10 h at 1 Hz reduce in milliseconds,
  and because the buckets are shared, every series of a report can use ONE
  x column. A spike of one sample survives (it is a bucket extreme), which is
  the point: a threshold exceedance must stay visible on the chart.
- ``lttb``: Largest-Triangle-Three-Buckets (Steinarsson 2013) for a single
  series when exact sample times are wanted (one numpy step per output point).

Does not own alignment of loggers for analysis (``analysis``) nor any
spreadsheet writing. Data sheets are never reduced: only chart ranges are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Buckets:
    """Shared time buckets: ``edges_ms`` has ``n + 1`` increasing edges (ms)."""

    edges_ms: IntArray

    @property
    def n(self) -> int:
        return int(len(self.edges_ms) - 1)

    def point_times_ms(self) -> IntArray:
        """Two x positions per bucket (at 1/4 and 3/4 of its width), interleaved.

        The envelope puts the first-occurring extreme at the first position and
        the other at the second, so time is quantised to half a bucket (for a
        10 h log in 1,000 buckets: 18 s, below one pixel of a printed chart).
        """
        lo = self.edges_ms[:-1]
        width = np.diff(self.edges_ms)
        out = np.empty(2 * self.n, dtype=np.int64)
        out[0::2] = lo + width // 4
        out[1::2] = lo + (3 * width) // 4
        return out


def make_buckets(t0_ms: int, t1_ms: int, max_points: int) -> Buckets:
    """Buckets covering ``[t0_ms, t1_ms]`` so an envelope has at most ``max_points`` points.

    Buckets are at least 1 ms wide; a window shorter than ``max_points / 2`` ms
    gets fewer buckets.
    """
    if max_points < 2:
        raise ValueError("max_points must be at least 2")
    if t1_ms < t0_ms:
        raise ValueError(f"window end {t1_ms} is before its start {t0_ms}")
    span = int(t1_ms) - int(t0_ms) + 1  # inclusive end: the last sample falls in the last bucket
    n = max(1, min(max_points // 2, span))
    edges = t0_ms + (np.arange(n + 1, dtype=np.int64) * span) // n
    return Buckets(edges.astype(np.int64))


#: Samples per piece of ``minmax_envelope``'s work (a few MB of temporaries per piece).
ENVELOPE_PIECE = 1 << 18


def minmax_envelope(t_ms: npt.ArrayLike, y: npt.ArrayLike, buckets: Buckets, *,
                    divide: float | None = None) -> FloatArray:
    """The min/max envelope of ``y`` (sampled at increasing ``t_ms``) over ``buckets``.

    Returns ``2 * buckets.n`` values aligned with ``buckets.point_times_ms()``:
    per bucket the extreme that occurred first, then the other one. Buckets
    without samples (gaps, or outside this series' window) give NaN, which the
    writers leave as empty cells so the chart line breaks instead of drawing a
    false straight line across a gap. NaN samples are ignored.

    ``divide``: the values are ``y / divide`` (``y`` e.g. the int32 millivolts of a log): converted
    a piece at a time, as the whole work is done (``ENVELOPE_PIECE`` samples), so the temporaries
    do not grow with the series; the result is what the envelope of ``y / divide`` would be.
    """
    t = np.asarray(t_ms, dtype=np.int64)
    raw = np.asarray(y)
    if t.shape != raw.shape or t.ndim != 1:
        raise ValueError(f"t_ms and y must be 1-D of equal length, got {t.shape} and {raw.shape}")

    def values(a: int, b: int) -> FloatArray:
        piece = raw[a:b].astype(np.float64)
        return piece / divide if divide is not None else piece

    if raw.dtype.kind not in "iub":
        ok = ~np.isnan(raw)
        if not ok.all():  # NaN samples are dropped first
            t, raw = t[ok], raw[ok]
    out = np.full(2 * buckets.n, np.nan)
    if len(t) == 0:
        return out
    if len(t) > 1 and bool(np.any(t[1:] < t[:-1])):
        raise ValueError("t_ms must be non-decreasing")
    edges = buckets.edges_ms
    # Index of the first sample of each bucket; samples outside the window are dropped.
    starts = np.searchsorted(t, edges[:-1], side="left")
    stop = int(np.searchsorted(t, edges[-1], side="left"))
    counts = np.diff(np.append(starts, stop))
    filled = counts > 0
    if not filled.any():
        return out
    s = starts[filled]
    nb = s.size
    big = np.int64(np.iinfo(np.int64).max)
    mins = np.zeros(nb)
    maxs = np.zeros(nb)
    i_min = np.full(nb, big)
    i_max = np.full(nb, big)
    first = int(s[0])
    for a in range(first, stop, ENVELOPE_PIECE):
        b = min(a + ENVELOPE_PIECE, stop)
        # the buckets this piece of samples meets: the one holding sample a, and those starting after it
        k0 = int(np.searchsorted(s, a, side="right")) - 1
        k1 = int(np.searchsorted(s, b, side="left"))
        local = np.concatenate(([a], s[k0 + 1:k1])) - a
        seg = values(a, b)
        lo = np.minimum.reduceat(seg, local)
        hi = np.maximum.reduceat(seg, local)
        of = np.repeat(np.arange(local.size), np.diff(np.append(local, seg.size)))
        idx = np.arange(a, b, dtype=np.int64)
        lo_at = np.minimum.reduceat(np.where(seg == lo[of], idx, big), local)
        hi_at = np.minimum.reduceat(np.where(seg == hi[of], idx, big), local)
        ks = np.arange(k0, k0 + local.size)
        # A bucket met by an earlier piece keeps its extreme unless this one is beyond it (its
        # first occurrence is then in this piece); on a tie the earlier occurrence stays.
        new_lo = (i_min[ks] == big) | (lo < mins[ks])
        new_hi = (i_max[ks] == big) | (hi > maxs[ks])
        mins[ks[new_lo]], i_min[ks[new_lo]] = lo[new_lo], lo_at[new_lo]
        maxs[ks[new_hi]], i_max[ks[new_hi]] = hi[new_hi], hi_at[new_hi]
    min_first = i_min <= i_max
    pos = np.flatnonzero(filled)
    out[2 * pos] = np.where(min_first, mins, maxs)
    out[2 * pos + 1] = np.where(min_first, maxs, mins)
    return out


def lttb(x: npt.ArrayLike, y: npt.ArrayLike, n_out: int) -> tuple[FloatArray, FloatArray]:
    """Largest-Triangle-Three-Buckets down-sampling of one series to ``n_out`` points.

    Keeps the first and last point; from each of the ``n_out - 2`` inner buckets
    keeps the point forming the largest triangle with the previously kept point
    and the mean of the next bucket. Returns the kept ``(x, y)`` (original values,
    so exact sample times survive). Input shorter than ``n_out`` is returned as is.
    """
    xs = np.asarray(x, dtype=np.float64)
    ys = np.asarray(y, dtype=np.float64)
    if xs.shape != ys.shape or xs.ndim != 1:
        raise ValueError(f"x and y must be 1-D of equal length, got {xs.shape} and {ys.shape}")
    n = len(xs)
    if n_out < 3:
        raise ValueError("n_out must be at least 3")
    if n <= n_out:
        return xs.copy(), ys.copy()
    # Inner bucket boundaries over indices 1 .. n-2 (first/last point are fixed).
    bounds = 1 + (np.arange(n_out - 1, dtype=np.int64) * (n - 2)) // (n_out - 2)
    keep = np.empty(n_out, dtype=np.int64)
    keep[0] = 0
    keep[-1] = n - 1
    # Means of each "next" bucket, precomputed vectorised (the last one is the end point).
    csx = np.concatenate(([0.0], np.cumsum(xs)))
    csy = np.concatenate(([0.0], np.cumsum(ys)))
    lo, hi = bounds[:-1], bounds[1:]
    mean_x = np.append((csx[hi[1:]] - csx[lo[1:]]) / (hi[1:] - lo[1:]), xs[-1])
    mean_y = np.append((csy[hi[1:]] - csy[lo[1:]]) / (hi[1:] - lo[1:]), ys[-1])
    a = 0
    for b in range(n_out - 2):
        i0, i1 = int(lo[b]), int(hi[b])
        ax, ay = xs[a], ys[a]
        # Twice the triangle area; the constant factor does not change the argmax.
        area = np.abs((ax - mean_x[b]) * (ys[i0:i1] - ay) - (ax - xs[i0:i1]) * (mean_y[b] - ay))
        a = i0 + int(np.argmax(area))
        keep[b + 1] = a
    return xs[keep], ys[keep]
