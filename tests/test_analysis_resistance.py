"""Each block's internal resistance from the load steps, against the battery model's truth
(``LoadStep.resistance_mohm``: cells x r_T x (r_ohm + knee) at the step); its uncertainty must
cover the error; the warn/fail rule; the trend against the block's own baseline; the workbook."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from smartlogger.analysis.analyze import AnalysisOptions, analyze_test
from smartlogger.analysis.inputs import (
    BlockLog,
    ConstantCurrent,
    TestMetadata,
    block_log_from_records,
)
from smartlogger.analysis.resistance import judge
from smartlogger.analysis.results import TestResult
from smartlogger.analysis.trend import block_trends
from smartlogger.device.firmware import Logger
from smartlogger.device.load import CurrentProfile as DeviceProfile
from smartlogger.device.sim import SimulatedTest, simulate_string_test


def _pulled(logger: Logger, start_ms: int) -> BlockLog:
    phone_ms = start_ms + round(logger.true_s * 1000)
    return block_log_from_records(logger.identity, logger.store.records(), pull=(logger.now_ms(), phone_ms))


def _errors(st: SimulatedTest, r: TestResult) -> list[tuple[str, float, float]]:
    """(kind, relative error, error / uncertainty) of every step resistance against the model."""
    out = []
    for b in r.blocks:
        for rs in b.resistance_steps:
            truth = min(st.trace.steps, key=lambda s: abs(st.start_ms + s.t_s * 1000.0 - rs.time_ms))
            assert abs(st.start_ms + truth.t_s * 1000.0 - rs.time_ms) < 3000
            tr = float(truth.resistance_mohm[b.position - 1])
            out.append((rs.kind, rs.resistance_mohm / tr - 1.0, (rs.resistance_mohm - tr) / rs.uncertainty_mohm))
    return out


@pytest.fixture(scope="module")
def one_c() -> tuple[SimulatedTest, TestResult]:
    st = simulate_string_test(6, weak=1, load="100A", seed=5, max_duration_s=900.0)
    return st, analyze_test([_pulled(lg, st.start_ms) for lg in st.loggers], TestMetadata(ConstantCurrent(100.0)))


def test_resistance_from_the_load_steps_matches_the_model(one_c: tuple[SimulatedTest, TestResult]) -> None:
    st, r = one_c
    errs = _errors(st, r)
    assert {k for k, _, _ in errs} == {"on", "off"}
    # every block's load-on; the load-off of all but the weak block, which lies at its logger's
    # measuring-range floor by then (a clipped step gives no value)
    assert [k for k, _, _ in errs].count("on") == 6 and [k for k, _, _ in errs].count("off") >= 5
    assert max(abs(e) for _, e, _ in errs) < 0.10  # 1C: within 10 % of the model
    assert max(abs(z) for _, _, z in errs) < 3.0  # and the stated uncertainty covers the error
    weak = next(i for i, t in enumerate(st.trace.truth) if t.weak)
    b = r.blocks[weak]
    assert b.resistance_step == "on" and b.resistance_status == "fail"
    assert r.resistance_reference == "string_median" and r.resistance_rule == {"warn_pct": 20.0, "fail_pct": 50.0}
    others = [x for i, x in enumerate(r.blocks) if i != weak]
    assert all(x.resistance_status == "ok" for x in others)
    assert b.resistance_change_pct is not None and b.resistance_change_pct > 50.0


def test_pause_and_resume_give_two_more_steps_and_the_uncertainty_is_honest() -> None:
    prof = DeviceProfile(np.array([0.0, 600.0, 600.001, 900.0, 900.001, 1500.0]),
                         np.array([25.0, 25.0, 0.0, 0.0, 25.0, 25.0]))
    st = simulate_string_test(6, weak=1, load=prof, seed=5)
    r = analyze_test([_pulled(lg, st.start_ms) for lg in st.loggers], TestMetadata(ConstantCurrent(25.0)))
    errs = _errors(st, r)
    kinds = {k for k, _, _ in errs}
    assert {"pause", "resume", "off"} <= kinds
    assert sum(abs(z) < 3.0 for _, _, z in errs) >= 0.9 * len(errs)
    resumed = [e for k, e, _ in errs if k == "resume"]
    assert resumed and max(abs(e) for e in resumed) < 0.06


def test_datasheet_reference_and_the_rule() -> None:
    assert judge(3.59, 3.0) == "ok" and judge(3.61, 3.0) == "warning"  # Fluke's example: 3.00 mOhm, 20/50 %
    assert judge(4.49, 3.0) == "warning" and judge(4.51, 3.0) == "fail"
    assert judge(4.0, 3.0, warn=0.5, fail=1.0) == "ok"


def test_reference_given_trend_baseline_and_old_results(one_c: tuple[SimulatedTest, TestResult],
                                                        tmp_path: Path) -> None:
    st, r = one_c
    logs = [_pulled(lg, st.start_ms) for lg in st.loggers]
    r2 = analyze_test(logs, TestMetadata(ConstantCurrent(100.0)), AnalysisOptions(resistance_reference_mohm=4.0))
    assert r2.resistance_reference == "datasheet" and r2.resistance_reference_mohm == 4.0
    assert [b.resistance_status for b in r2.blocks].count("ok") < 6  # 4 mOhm is below the blocks' 4.5-5
    # a year later the same string, every block 30 % up: warned against its own baseline
    later = TestResult.from_json(r.to_json())
    later.discharge.start_ms += 365 * 86_400_000
    for b in later.blocks:
        assert b.resistance_mohm is not None
        b.resistance_mohm *= 1.3
    trends = block_trends([later, r], by="serial")
    assert all(t.resistance_status == "warning" and t.resistance_change_pct == pytest.approx(30.0, abs=0.01)
               for t in trends)
    assert all(t.resistance_slope_pct_per_year == pytest.approx(30.0, rel=1e-3) for t in trends)
    # results written before the resistance existed still load
    import json

    data = json.loads(r.to_json())
    for b in data["blocks"]:
        for k in [k for k in b if k.startswith("resistance")]:
            del b[k]
    for k in ("resistance_reference", "resistance_reference_mohm", "resistance_rule"):
        del data[k]
    for k in ("start_method", "evidence", "interruptions", "load_time_s"):
        del data["discharge"][k]
    old = TestResult.from_json(json.dumps(data))
    assert old.blocks[0].resistance_mohm is None and old.discharge.start_method == "threshold"
    assert block_trends([old, r])[0].resistance_baseline_mohm == r.blocks[0].resistance_mohm


def test_string_report_shows_the_resistance(one_c: tuple[SimulatedTest, TestResult], tmp_path: Path) -> None:
    import openpyxl

    from smartlogger.export.adapters import string_report_inputs
    from smartlogger.export.string_report import write_string_report

    st, r = one_c
    logs = [_pulled(lg, st.start_ms) for lg in st.loggers]
    outcome, series, exceed = string_report_inputs(r, logs)
    path = write_string_report(tmp_path / "report.xlsx", outcome, series, exceedances=exceed, chart_points=200)
    ws = openpyxl.load_workbook(path, read_only=True)["Summary"]
    rows = [list(row) for row in ws.iter_rows(values_only=True)]
    header = next(row for row in rows if row and row[0] == "Position")
    col = header.index("IR (mOhm)")
    assert header[col + 1] == "IR +/- (mOhm)" and header[col + 2] == "IR status"
    body = rows[rows.index(header) + 1:rows.index(header) + 7]
    assert [round(x[col], 3) for x in body] == [round(b.resistance_mohm or 0, 3) for b in r.blocks]
    assert any("start from the blocks' load step" in str(c) for row in rows for c in row if c)
