"""A logfile's voltage and temperature over a window of device time, reduced for a chart.

Owns ``chart_series``: the series the web app draws (``GET /api/logfiles/{id}/series``)
and ``smartlogger logfile series`` prints, one function for both. At most ``max_points``
points per quantity: every sample if the window holds no more, else per time bucket the
minimum and the maximum of each quantity in the order they occurred
(``export.reduce.minmax_envelope``, as in the Excel charts), so no peak or dip is lost;
empty buckets (gaps) are left out. Only the sample blocks that reach into the window are
decoded (``logfile.load_samples(from_ms=, to_ms=)``), so a day of a 10-year log is cheap.

Does not own the reduction itself (``export.reduce``) or the decoding (``logfile``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from smartlogger.export.reduce import make_buckets, minmax_envelope
from smartlogger.logfile import Logfile, load_samples, read_logfile

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

    Raises ``LogfileError`` if the file, or the samples in the window, do not decode.
    """
    if max_points < 1:
        raise ValueError("max_points must be at least 1")
    lf = source if isinstance(source, Logfile) else read_logfile(source, decode=False)
    t, mv, dc = load_samples(lf, from_ms=from_ms, to_ms=to_ms)  # only the blocks in the window
    order = np.argsort(t, kind="stable")  # record order; a clock set can put a later block earlier
    t, mv, dc = t[order], mv[order], dc[order]
    lo = int(t[0]) if from_ms is None and t.size else from_ms
    hi = int(t[-1]) if to_ms is None and t.size else to_ms
    if lo is not None and hi is not None:
        a, b = np.searchsorted(t, lo, side="left"), np.searchsorted(t, hi, side="right")
        t, mv, dc = t[a:b], mv[a:b], dc[a:b]
    samples = int(t.size)
    reduced = samples > max_points
    if reduced:
        # Buckets over the samples' own span (the requested window may be far wider).
        buckets = make_buckets(int(t[0]), int(t[-1]), max_points)
        pts = buckets.point_times_ms()
        env_mv, env_dc = minmax_envelope(t, mv, buckets), minmax_envelope(t, dc, buckets)
        keep = ~np.isnan(env_mv)  # the same buckets are empty for both quantities
        t, mv, dc = pts[keep], env_mv[keep].astype(np.int64), env_dc[keep].astype(np.int64)
    configs = [{"t_ms": c.t_ms, **dataclasses.asdict(c.config.thresholds)} for c in lf.config_history]
    return ChartSeries(lf.identity.serial, lo, hi, samples, reduced, t.tolist(), mv.tolist(), dc.tolist(),
                       configs)
