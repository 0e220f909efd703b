"""Threshold exceedances per block and quantity, classified yellow or red.

Owns the interval detection (vectorised run-length detection on each block's
own samples in true time) and the classification rule ``ExceedanceRule``.

An *exceedance* is a maximal interval in which a block's voltage or temperature
is beyond its warning level on one side (low or high); intervals separated by
less than ``merge_within_s`` are one exceedance, so a value chattering around
the level gives one entry. It is **red** ("massive or long") when any of:

- it was beyond the alarm level for at least ``red_alarm_duration_s`` in total;
- it went beyond the alarm level by at least ``red_voltage_excess_pct`` % of that
  level (voltage) or ``red_temperature_excess_c`` degrees (temperature);
- it was beyond the warning level for at least ``red_warning_duration_s``;

otherwise **yellow** ("slight or brief"). Defaults are product choices,
documented in docs/CAPACITY.md; they are not from a standard.

Does not own the thresholds (``model.Thresholds``) or the time alignment.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from smartlogger.model import Level, Quantity, Side, Thresholds

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class ExceedanceRule:
    """When an exceedance is red rather than yellow (see module docstring). Units: s, %, C."""

    red_alarm_duration_s: float = 60.0
    red_voltage_excess_pct: float = 5.0
    red_temperature_excess_c: float = 5.0
    red_warning_duration_s: float = 3600.0
    merge_within_s: float = 10.0
    min_duration_s: float = 0.0


@dataclass(frozen=True)
class Interval:
    """One exceedance of one block. Times are true ms since epoch; durations s.

    ``worst`` is the extreme value (V for voltage, C for temperature);
    ``level`` the highest level reached; ``severity`` "yellow" or "red";
    ``reason`` why it is red (empty for yellow).
    """

    quantity: Quantity
    side: Side
    start_ms: float
    duration_s: float
    worst: float
    level: Level
    alarm_duration_s: float
    severity: str
    reason: str


def _runs(mask: npt.NDArray[np.bool_]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Start and end (inclusive) indices of the runs of true values."""
    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    return np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0] - 1


def find_exceedances(t_ms: FloatArray, values: FloatArray, quantity: Quantity,
                     thresholds: Thresholds, rule: ExceedanceRule | None = None) -> list[Interval]:
    """All exceedances of one quantity of one block.

    ``t_ms``: true sample times (ms, increasing); ``values``: V for voltage, C for
    temperature. Each sample stands for the time until the next sample (the last
    one for the median interval).
    """
    rule = rule or ExceedanceRule()
    n = t_ms.size
    if n == 0:
        return []
    dt = np.empty(n)
    dt[:-1] = np.diff(t_ms)
    dt[-1] = float(np.median(dt[:-1])) if n > 1 else 1000.0
    scale = 1000.0 if quantity is Quantity.VOLTAGE else 10.0  # thresholds in mV / dC
    out: list[Interval] = []
    for side in (Side.LOW, Side.HIGH):
        warn = thresholds.level(quantity, side, Level.WARNING) / scale
        alarm = thresholds.level(quantity, side, Level.ALARM) / scale
        sign = -1.0 if side is Side.LOW else 1.0
        # "beyond" in one direction: x = sign*value grows away from nominal.
        x = sign * values
        beyond_w = x > sign * warn
        if not beyond_w.any():
            continue
        beyond_a = x > sign * alarm
        starts, ends = _runs(beyond_w)
        if rule.merge_within_s > 0 and starts.size > 1:
            gap_s = (t_ms[starts[1:]] - t_ms[ends[:-1]]) / 1000.0
            keep = np.concatenate(([True], gap_s >= rule.merge_within_s))
            ends = np.concatenate((ends[:-1][keep[1:]], ends[-1:]))
            starts = starts[keep]
        stop = np.minimum(ends + 1, n - 1)
        dur = np.where(ends + 1 < n, t_ms[stop] - t_ms[starts], t_ms[ends] + dt[ends] - t_ms[starts]) / 1000.0
        worst_x = np.maximum.reduceat(x, starts)
        # Time beyond alarm (s) inside each interval; reduceat sums each [start, next start).
        alarm_s = np.add.reduceat(np.where(beyond_a, dt, 0.0), starts) / 1000.0
        alarm_s = np.minimum(alarm_s, dur)
        worst = sign * worst_x
        if quantity is Quantity.VOLTAGE:
            excess = (worst_x - sign * alarm) / abs(alarm) * 100.0
            excess_limit = rule.red_voltage_excess_pct
            excess_unit = "%"
        else:
            excess = worst_x - sign * alarm
            excess_limit = rule.red_temperature_excess_c
            excess_unit = " C"
        for i in range(starts.size):
            if dur[i] < rule.min_duration_s:
                continue
            reasons = []
            if alarm_s[i] >= rule.red_alarm_duration_s:
                reasons.append(f"beyond alarm for {alarm_s[i]:.0f} s")
            if excess[i] >= excess_limit:
                reasons.append(f"{excess[i]:.1f}{excess_unit} beyond alarm")
            if dur[i] >= rule.red_warning_duration_s:
                reasons.append(f"beyond warning for {dur[i]:.0f} s")
            out.append(Interval(
                quantity, side, float(t_ms[starts[i]]), float(dur[i]), float(worst[i]),
                Level.ALARM if alarm_s[i] > 0 else Level.WARNING, float(alarm_s[i]),
                "red" if reasons else "yellow", "; ".join(reasons),
            ))
    out.sort(key=lambda e: e.start_ms)
    return out
