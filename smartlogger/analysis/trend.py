"""Trend: the same block across several capacity tests, capacity and SOH over time.

Owns grouping per-test ``BlockResult``s into one history per block and a linear
fit of % capacity over time (least squares on the measured points; lower bounds
are shown but not fitted), with the projected date the block falls below the
replacement limit (for a block already below it: its first test below it, never a
date projected back before the tests). A block is identified by its logger serial, its string
position, or both (clip-on service loggers move between blocks, built-in ones
do not), chosen by ``by``.

The internal resistance is trended alongside: the block's own baseline (its first test with a
value), the latest value against it (warn/fail as in ``resistance.judge``) and a fitted change
in % of the baseline per year.

Does not own the per-test analysis (``analyze``) or storage of past results.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from smartlogger.analysis.capacity import REPLACE_BELOW_PCT
from smartlogger.analysis.resistance import FAIL_FRACTION, WARN_FRACTION, judge
from smartlogger.analysis.results import TestResult

MS_PER_YEAR = 365.25 * 24 * 3600 * 1000


@dataclass
class TrendPoint:
    """One test of one block."""

    test_id: str = field(metadata={"doc": "test id"})
    start_ms: int = field(metadata={"doc": "discharge start, ms since epoch"})
    serial: str = field(metadata={"doc": "logger serial in that test"})
    position: int = field(metadata={"doc": "string position in that test"})
    capacity_pct: float | None = field(metadata={"doc": "% capacity"})
    soh_pct: float | None = field(metadata={"doc": "state of health, %"})
    lower_bound: bool = field(metadata={"doc": "values are lower bounds"})
    delivered_ah: float = field(metadata={"doc": "delivered Ah"})
    resistance_mohm: float | None = field(default=None, metadata={"doc": "internal resistance, mOhm"})
    resistance_uncertainty_mohm: float | None = field(default=None, metadata={
        "doc": "its standard uncertainty, mOhm"})
    evidence: str = field(default="unchecked", metadata={
        "doc": "what that test's numbers for the block rest on: 'verified' (hardware evidence), 'simulated', "
               "'unsigned' or 'unchecked'"})


@dataclass
class BlockTrend:
    """The history of one block."""

    key: str = field(metadata={"doc": "serial, 'pos N' or 'serial@pos N' depending on grouping"})
    points: list[TrendPoint] = field(metadata={"doc": "tests, oldest first"})
    slope_pct_per_year: float | None = field(metadata={"doc": "fitted change of % capacity per year"})
    latest_capacity_pct: float | None = field(metadata={"doc": "% capacity of the newest measured test"})
    below_limit_ms: int | None = field(
        metadata={"doc": "projected time the fit crosses the replacement limit, ms since epoch; for a "
                         "block below it in its latest test, at the latest its first test below it"})
    resistance_baseline_mohm: float | None = field(default=None, metadata={
        "doc": "the block's own baseline: its internal resistance in its first test with one, mOhm"})
    latest_resistance_mohm: float | None = field(default=None, metadata={
        "doc": "internal resistance in the newest test with one, mOhm"})
    resistance_change_pct: float | None = field(default=None, metadata={
        "doc": "latest against the baseline, %"})
    resistance_slope_pct_per_year: float | None = field(default=None, metadata={
        "doc": "fitted change of the internal resistance per year, % of the baseline"})
    resistance_status: str | None = field(default=None, metadata={
        "doc": "latest against the baseline: 'ok', 'warning' (above baseline x (1 + warn)) or 'fail'"})


def block_trends(results: Sequence[TestResult], *, by: Literal["serial", "position", "both"] = "both",
                 limit_pct: float = REPLACE_BELOW_PCT, warn_pct: float = WARN_FRACTION * 100.0,
                 fail_pct: float = FAIL_FRACTION * 100.0) -> list[BlockTrend]:
    """One ``BlockTrend`` per block over ``results`` (any order), sorted by key.

    The internal resistance is judged against the block's own baseline (its first test with a
    value): warning above baseline x (1 + ``warn_pct`` %), fail above x (1 + ``fail_pct`` %)."""
    groups: dict[str, list[TrendPoint]] = {}
    for r in results:
        for b in r.blocks:
            if by == "serial":
                key = b.serial
            elif by == "position":
                if b.position <= 0:
                    continue
                key = f"pos {b.position}"
            else:
                key = f"{b.serial}@pos {b.position}"
            groups.setdefault(key, []).append(TrendPoint(
                r.test_id, r.discharge.start_ms, b.serial, b.position, b.capacity_pct, b.soh_pct,
                b.lower_bound, b.delivered_ah, b.resistance_mohm, b.resistance_uncertainty_mohm,
                b.evidence.status,
            ))
    out = []
    for key in sorted(groups):
        pts = sorted(groups[key], key=lambda p: p.start_ms)
        measured = [p for p in pts if p.capacity_pct is not None and not p.lower_bound]
        slope = crossing = None
        if len({p.start_ms for p in measured}) >= 2:
            x = np.array([p.start_ms for p in measured], dtype=np.float64) / MS_PER_YEAR
            y = np.array([p.capacity_pct for p in measured], dtype=np.float64)
            k, c = np.polyfit(x, y, 1)
            slope = float(k)
            if k < 0:
                crossing = round((limit_pct - c) / k * MS_PER_YEAR)
            below = [p for p in measured if p.capacity_pct is not None and p.capacity_pct < limit_pct]
            if below and measured[-1] in below and (crossing is None or crossing < measured[0].start_ms):
                # Below the limit since its first test below it: a fit is never projected back
                # before the tests (points all below the limit and nearly flat reach it decades ago).
                crossing = below[0].start_ms
        latest = measured[-1].capacity_pct if measured else None
        trend = BlockTrend(key, pts, slope, latest, crossing)
        with_r = [p for p in pts if p.resistance_mohm is not None]
        if with_r:
            base = float(with_r[0].resistance_mohm or 0.0)
            last = float(with_r[-1].resistance_mohm or 0.0)
            trend.resistance_baseline_mohm = base
            trend.latest_resistance_mohm = last
            trend.resistance_change_pct = round((last / base - 1.0) * 100.0, 2)
            trend.resistance_status = judge(last, base, warn_pct / 100.0, fail_pct / 100.0)
            if len({p.start_ms for p in with_r}) >= 2:
                x = np.array([p.start_ms for p in with_r], dtype=np.float64) / MS_PER_YEAR
                y = np.array([p.resistance_mohm for p in with_r], dtype=np.float64) / base * 100.0
                trend.resistance_slope_pct_per_year = round(float(np.polyfit(x, y, 1)[0]), 3)
        out.append(trend)
    return out
