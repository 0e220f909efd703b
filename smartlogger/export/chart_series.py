"""A logfile's voltage and temperature over a window of device time, reduced for a chart.

Owns ``chart_series``: the series the web app draws (``GET /api/logfiles/{id}/series``)
and ``smartlogger logfile series`` prints, one function for both. At most ``max_points``
points per quantity: every sample if the window holds no more, else per time bucket the
minimum and the maximum of each quantity in the order they occurred
(``export.reduce.minmax_envelope``, as in the Excel charts), so no peak or dip is lost;
empty buckets (gaps) are left out. Only the sample blocks that reach into the window are
decoded, one batch at a time folded into the buckets (memory: one batch plus the answer), so a
day of a 10-year log is cheap and a file declaring millions of samples cannot take more.

Does not own the reduction itself (``export.reduce``) or the decoding (``logfile``).
"""

from __future__ import annotations

import dataclasses
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from smartlogger.errors import LogfileError
from smartlogger.export.reduce import Buckets, make_buckets
from smartlogger.logfile import Logfile, RawRecord, read_logfile
from smartlogger.logfile.format import decode_sample_records, iter_sample_batches
from smartlogger.logfile.records import SAMPLE_HEAD, RecordType
from smartlogger.logfile.samples import read_head

#: Points per quantity when the caller does not say.
DEFAULT_MAX_POINTS = 2000


@dataclass(frozen=True)
class ChartSeries:
    """Points of one logger's log: device time (ms), voltage (mV), temperature (0.1 C).

    ``from_ms``/``to_ms``: the window (the samples' own span where not given; None for a
    log without samples); ``samples``: how many samples the window holds; ``reduced``: the
    points are the min/max envelope of those samples, not the samples. ``configs``: every
    configuration in the log with its thresholds (for the threshold lines), time ordered.
    """

    serial: str
    from_ms: int | None
    to_ms: int | None
    samples: int
    reduced: bool
    t_ms: list[int]
    mv: list[int]
    dc: list[int]
    configs: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def chart_series(source: bytes | Logfile, *, from_ms: int | None = None, to_ms: int | None = None,
                 max_points: int = DEFAULT_MAX_POINTS) -> ChartSeries:
    """The chart series of a logfile (its bytes, or the file read with ``decode=False``).

    Memory and time follow the answer, not the file: the window, the sample count and the
    buckets come from the block heads; the blocks in the window are then decoded one batch at a
    time (``logfile.format.iter_sample_batches``) and each batch is folded into the buckets, so
    memory is one batch plus ``max_points`` whatever the file declares.
    Raises ``LogfileError`` if the file, or the samples in the window, do not decode.
    """
    if max_points < 1:
        raise ValueError("max_points must be at least 1")
    lf = source if isinstance(source, Logfile) else read_logfile(source, decode=False)
    configs = [{"t_ms": c.t_ms, **dataclasses.asdict(c.config.thresholds)} for c in lf.config_history]
    raws = [raw for raw in (lf.streams[0].records if lf.streams else [])
            if raw.record_type == RecordType.SAMPLE_BLOCK]
    heads = [_head(raw.data) for raw in raws]
    if any(h is None for h in heads):
        decode_sample_records(raws)  # a head that does not read: the decoder says what is wrong
    spans = [(s, i, n) for s, i, n in heads if n] if all(h is not None for h in heads) else []  # type: ignore[misc]
    lo = from_ms if from_ms is not None else min((s for s, _, _ in spans), default=None)
    hi = to_ms if to_ms is not None else max((s + (n - 1) * i for s, i, n in spans), default=None)
    # Per block: the index range of its samples inside [lo, hi] (all of them without a window).
    keep: list[tuple[RawRecord, int, int]] = []
    first_t: int | None = None
    last_t: int | None = None
    for raw, (s, i, n) in zip(raws, heads, strict=True):  # type: ignore[misc]
        if not n:
            continue
        k0 = 0 if lo is None or lo <= s else -(-(lo - s) // i)
        k1 = n - 1 if hi is None else min(n - 1, (hi - s) // i)
        if k0 <= k1:
            keep.append((raw, k0, k1))
            first_t = s + k0 * i if first_t is None else min(first_t, s + k0 * i)
            last_t = s + k1 * i if last_t is None else max(last_t, s + k1 * i)
    samples = sum(k1 - k0 + 1 for _, k0, k1 in keep)
    if samples <= max_points:
        t, mv, dc = _exact([raw for raw, _, _ in keep], lo, hi)
        return ChartSeries(lf.identity.serial, lo, hi, samples, False, t.tolist(), mv.tolist(), dc.tolist(),
                           configs)
    assert first_t is not None and last_t is not None
    # Buckets over the samples' own span (the requested window may be far wider).
    buckets = make_buckets(first_t, last_t, max_points)
    env = _Envelope(buckets)
    done = 0
    for _, starts, intervals, bmv, bdc, counts in iter_sample_batches([raw for raw, _, _ in keep]):
        t = _times(starts, intervals, counts)
        _check_dc(bdc)
        inside = (t >= first_t) & (t <= last_t)
        order = done + np.arange(t.size, dtype=np.int64)  # record order, for ties in time
        env.add(t[inside], bmv[inside], bdc[inside], order[inside])
        done += t.size
    pts, env_mv, env_dc = env.result()
    return ChartSeries(lf.identity.serial, lo, hi, samples, True, pts.tolist(), env_mv.tolist(), env_dc.tolist(),
                       configs)


def _head(record: bytes) -> tuple[int, int, int] | None:
    """(start_ms, interval_ms, count) of a SampleBlock record, None if its head does not read."""
    try:
        start, interval = SAMPLE_HEAD.unpack_from(record, 1)
        count, _ = read_head(record, 1 + SAMPLE_HEAD.size)
    except (struct.error, LogfileError):
        return None
    return (int(start), int(interval), int(count)) if interval > 0 else None


def _times(starts: npt.NDArray[np.int64], intervals: npt.NDArray[np.int64],
           counts: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    first_index = np.cumsum(counts) - counts
    index_in_block = np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(first_index, counts)
    out: npt.NDArray[np.int64] = np.repeat(starts, counts) + index_in_block * np.repeat(intervals, counts)
    return out


def _check_dc(dc: npt.NDArray[np.int32]) -> None:
    if dc.size and (int(dc.min()) < -32768 or int(dc.max()) > 32767):
        raise LogfileError("a temperature sample does not fit int16 dC")


def _exact(raws: list[RawRecord], lo: int | None, hi: int | None) -> tuple[
        npt.NDArray[np.int64], npt.NDArray[np.int32], npt.NDArray[np.int32]]:
    """Every sample of ``raws`` inside [lo, hi], time ordered (record order for equal times)."""
    parts_t, parts_mv, parts_dc = [], [], []
    for _, starts, intervals, mv, dc, counts in iter_sample_batches(raws):
        t = _times(starts, intervals, counts)
        _check_dc(dc)
        inside = np.ones(t.size, dtype=bool)
        if lo is not None:
            inside &= t >= lo
        if hi is not None:
            inside &= t <= hi
        parts_t.append(t[inside])
        parts_mv.append(mv[inside])
        parts_dc.append(dc[inside])
    if not parts_t:
        return np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0, np.int32)
    t, mv, dc = np.concatenate(parts_t), np.concatenate(parts_mv), np.concatenate(parts_dc)
    order = np.argsort(t, kind="stable")  # record order; a clock set can put a later block earlier
    return t[order], mv[order], dc[order]


class _Envelope:
    """The min/max envelope of ``export.reduce.minmax_envelope``, folded in batch by batch.

    Per bucket and quantity: the smallest and the largest value with the (time, record order)
    at which each first occurred; the one that occurred first is the bucket's first point.
    """

    def __init__(self, buckets: Buckets) -> None:
        self.buckets = buckets
        n = buckets.n
        big = np.iinfo(np.int64).max
        # per quantity (0 mv, 1 dc) and extreme (0 min, 1 max): value, time, order
        self.val = np.zeros((2, 2, n), dtype=np.int64)
        self.t = np.full((2, 2, n), big, dtype=np.int64)
        self.order = np.full((2, 2, n), big, dtype=np.int64)
        self.seen = np.zeros(n, dtype=bool)

    def add(self, t: npt.NDArray[np.int64], mv: npt.NDArray[np.int32], dc: npt.NDArray[np.int32],
            order: npt.NDArray[np.int64]) -> None:
        if not t.size:
            return
        if t.size > 1 and bool((t[1:] < t[:-1]).any()):  # a clock set: not in time order
            by = np.lexsort((order, t))  # time, then record order
            t, order, mv, dc = t[by], order[by], mv[by], dc[by]
        # Sorted: each bucket's samples are one run, found by searching the few edges in t.
        edges = self.buckets.edges_ms
        bounds = np.searchsorted(t, edges, side="left")
        bounds[-1] = t.size  # the last edge is inclusive (the caller kept only samples inside)
        counts = np.diff(bounds)
        bb = np.flatnonzero(counts)
        run = bounds[bb]
        run_of = np.repeat(np.arange(bb.size), counts[bb])
        for q, values in enumerate((mv.astype(np.int64), dc.astype(np.int64))):
            for e, reduce in enumerate((np.minimum, np.maximum)):
                ext = reduce.reduceat(values, run)
                # first position (in time order) where each run reaches its extreme
                pos = np.minimum.reduceat(np.where(values == ext[run_of], np.arange(t.size), t.size), run)
                cand_t, cand_o = t[pos], order[pos]
                old_v, old_t, old_o = self.val[q, e, bb], self.t[q, e, bb], self.order[q, e, bb]
                better = ext < old_v if e == 0 else ext > old_v
                same = ext == old_v
                earlier = (cand_t < old_t) | ((cand_t == old_t) & (cand_o < old_o))
                take = ~self.seen[bb] | better | (same & earlier)
                self.val[q, e, bb[take]] = ext[take]
                self.t[q, e, bb[take]] = cand_t[take]
                self.order[q, e, bb[take]] = cand_o[take]
        self.seen[bb] = True

    def result(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """(point times, mv, dc) of the filled buckets, two points each."""
        pts = self.buckets.point_times_ms().reshape(-1, 2)[self.seen].reshape(-1)
        out = []
        for q in range(2):
            lo_v, hi_v = self.val[q, 0, self.seen], self.val[q, 1, self.seen]
            min_first = (self.t[q, 0, self.seen] < self.t[q, 1, self.seen]) | (
                (self.t[q, 0, self.seen] == self.t[q, 1, self.seen])
                & (self.order[q, 0, self.seen] <= self.order[q, 1, self.seen]))
            pair = np.empty((lo_v.size, 2), dtype=np.int64)
            pair[:, 0] = np.where(min_first, lo_v, hi_v)
            pair[:, 1] = np.where(min_first, hi_v, lo_v)
            out.append(pair.reshape(-1))
        return pts, out[0], out[1]
