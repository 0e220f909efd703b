"""Block trends across tests (smartlogger.analysis.trend)."""

from __future__ import annotations

import dataclasses

import pytest

from smartlogger.analysis.analyze import analyze_test
from smartlogger.analysis.inputs import ConstantCurrent, TestMetadata
from smartlogger.analysis.results import TestResult
from smartlogger.analysis.trend import MS_PER_YEAR, block_trends
from smartlogger.testing.synthetic import synthetic_string_test


@pytest.fixture(scope="module")
def yearly() -> list[TestResult]:
    """Three yearly tests of the same 3-block string; block 2 fades 10 points a year."""
    out = []
    for year, cap2 in enumerate((90.0, 80.0, 70.0)):
        logs, _ = synthetic_string_test(3, current_a=50.0, capacity_ah=[100.0, cap2, 100.0], seed=20 + year)
        r = analyze_test(logs, TestMetadata(ConstantCurrent(50.0), rated_time_s=7200.0, test_id=f"y{year}"))
        # Same string, tested a year apart.
        out.append(dataclasses.replace(r, discharge=dataclasses.replace(
            r.discharge, start_ms=r.discharge.start_ms + round(year * MS_PER_YEAR))))
    return out


def test_fading_block_trend(yearly: list[TestResult]) -> None:
    trends = {t.key: t for t in block_trends(yearly[::-1], by="position")}
    t2 = trends["pos 2"]
    assert [p.test_id for p in t2.points] == ["y0", "y1", "y2"]
    assert t2.slope_pct_per_year == pytest.approx(-10.0, abs=0.5)
    assert t2.latest_capacity_pct == pytest.approx(70.0, rel=0.02)
    # 90 % in year 0, -10 %/year: crosses 80 % about one year after the first test.
    assert t2.below_limit_ms is not None
    assert (t2.below_limit_ms - yearly[0].discharge.start_ms) / MS_PER_YEAR == pytest.approx(1.0, abs=0.1)
    # Healthy blocks outlast every test: only lower bounds, so no fitted trend.
    assert trends["pos 1"].slope_pct_per_year is None and len(trends["pos 1"].points) == 3


def test_grouping_by_serial_and_both(yearly: list[TestResult]) -> None:
    assert [t.key for t in block_trends(yearly, by="serial")] == ["SIM-0001", "SIM-0002", "SIM-0003"]
    assert block_trends(yearly)[0].key == "SIM-0001@pos 1"
