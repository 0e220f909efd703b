"""Exceedance intervals and the yellow/red rule (smartlogger.analysis.exceedances)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smartlogger.analysis.exceedances import ExceedanceRule, find_exceedances
from smartlogger.model import Level, Quantity, Side, Thresholds

# 12 V block: low alarm 9.9 V, low warning 10.8 V, high warning 14.1 V, high alarm 14.7 V;
# temperature low 0/5 C, high 35/45 C.
TH = Thresholds(9900, 10800, 14100, 14700, 0, 50, 350, 450)


def _series(segments: list[tuple[int, float]]) -> tuple[np.ndarray, np.ndarray]:
    """1 Hz samples: (count, value) segments."""
    v = np.concatenate([np.full(n, x) for n, x in segments])
    return np.arange(v.size, dtype=np.float64) * 1000.0 + 1e12, v


def test_brief_slight_dip_is_yellow() -> None:
    t, v = _series([(100, 12.0), (5, 10.7), (100, 12.0)])
    (e,) = find_exceedances(t, v, Quantity.VOLTAGE, TH)
    assert (e.side, e.level, e.severity) == (Side.LOW, Level.WARNING, "yellow")
    assert e.start_ms == t[100] and e.duration_s == pytest.approx(5.0)
    assert e.worst == pytest.approx(10.7) and e.alarm_duration_s == 0.0


def test_long_alarm_is_red_and_reports_alarm_time() -> None:
    t, v = _series([(10, 12.0), (30, 10.5), (70, 9.8), (10, 12.0)])
    (e,) = find_exceedances(t, v, Quantity.VOLTAGE, TH)
    assert e.level is Level.ALARM and e.severity == "red"
    assert e.duration_s == pytest.approx(100.0) and e.alarm_duration_s == pytest.approx(70.0)
    assert "beyond alarm for 70 s" in e.reason


def test_massive_brief_excursion_is_red() -> None:
    # 2 s at 9.0 V: 9.1 % below the 9.9 V alarm (rule: >= 5 %).
    t, v = _series([(10, 12.0), (2, 9.0), (10, 12.0)])
    (e,) = find_exceedances(t, v, Quantity.VOLTAGE, TH)
    assert e.severity == "red" and "9.1% beyond alarm" in e.reason


def test_brief_slight_alarm_is_yellow_and_rule_is_configurable() -> None:
    t, v = _series([(10, 12.0), (5, 9.85), (10, 12.0)])
    (e,) = find_exceedances(t, v, Quantity.VOLTAGE, TH)
    assert e.level is Level.ALARM and e.severity == "yellow"
    strict = ExceedanceRule(red_alarm_duration_s=3.0)
    (e2,) = find_exceedances(t, v, Quantity.VOLTAGE, TH, strict)
    assert e2.severity == "red"


def test_long_warning_only_is_red() -> None:
    t, v = _series([(10, 12.0), (3700, 10.7), (10, 12.0)])
    (e,) = find_exceedances(t, v, Quantity.VOLTAGE, TH)
    assert e.level is Level.WARNING and e.severity == "red"


def test_chatter_is_merged_but_separate_events_are_not() -> None:
    t, v = _series([(10, 12.0), (2, 10.7), (3, 11.0), (2, 10.7), (60, 12.0), (2, 10.7), (5, 12.0)])
    es = find_exceedances(t, v, Quantity.VOLTAGE, TH)
    assert len(es) == 2
    assert es[0].duration_s == pytest.approx(7.0)


def test_temperature_high_and_low() -> None:
    t, temp = _series([(10, 25.0), (20, 47.0), (10, 25.0), (10, 3.0), (10, 25.0)])
    es = find_exceedances(t, temp, Quantity.TEMPERATURE, TH)
    assert [(e.side, e.level, e.severity) for e in es] == [
        (Side.HIGH, Level.ALARM, "yellow"),  # 2 C over the 45 C alarm for 20 s
        (Side.LOW, Level.WARNING, "yellow"),
    ]
    assert es[0].worst == pytest.approx(47.0)


def test_exceedance_at_end_of_data_and_nothing_to_report() -> None:
    t, v = _series([(10, 12.0), (5, 10.0)])
    (e,) = find_exceedances(t, v, Quantity.VOLTAGE, TH)
    assert e.duration_s == pytest.approx(5.0)
    t, v = _series([(50, 12.0)])
    assert find_exceedances(t, v, Quantity.VOLTAGE, TH) == []
    assert find_exceedances(t[:0], v[:0], Quantity.VOLTAGE, TH) == []


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=9000, max_value=15500), min_size=1, max_size=300),
       st.integers(min_value=1, max_value=60))
def test_exceedance_invariants(mv: list[int], step_s: int) -> None:
    """Any series: intervals are ordered per side, their worst value is beyond the warning
    level, alarm time never exceeds duration, and red intervals satisfy the rule."""
    t = np.arange(len(mv), dtype=np.float64) * step_s * 1000.0
    v = np.asarray(mv, dtype=np.float64) / 1000.0
    rule = ExceedanceRule()
    es = find_exceedances(t, v, Quantity.VOLTAGE, TH, rule)
    for side in (Side.LOW, Side.HIGH):
        mine = [e for e in es if e.side is side]
        for a, b in itertools.pairwise(mine):
            assert b.start_ms >= a.start_ms + a.duration_s * 1000.0 - 1e-6
    for e in es:
        warn = TH.level(Quantity.VOLTAGE, e.side, Level.WARNING) / 1000.0
        assert (e.worst < warn) if e.side is Side.LOW else (e.worst > warn)
        assert 0.0 <= e.alarm_duration_s <= e.duration_s + 1e-9
        assert (e.level is Level.ALARM) == (e.alarm_duration_s > 0)
        assert (e.severity == "red") == bool(e.reason)
    n_beyond = int(np.count_nonzero((v < 10.8) | (v > 14.1)))
    assert (n_beyond == 0) == (es == [])
