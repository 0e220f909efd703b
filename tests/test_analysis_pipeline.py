"""End-to-end analysis on synthetic tests with exactly known truth, and the edge cases of issue 7."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from smartlogger.analysis.analyze import AnalysisOptions, analyze_test
from smartlogger.analysis.inputs import (
    BlockLog,
    ConstantCurrent,
    ConstantPower,
    CurrentProfile,
    MetadataError,
    TestMetadata,
    read_datasheet_csv,
)
from smartlogger.analysis.results import TestResult, json_schema
from smartlogger.errors import AnalysisError
from smartlogger.model import BlockType, LoggerConfig
from smartlogger.testing.synthetic import (
    SyntheticTruth,
    synthetic_string_test,
    with_clock_jump,
    with_gap,
)

DATASHEET = Path(__file__).parent / "data" / "datasheet_synthetic_12v100.csv"

# A 2-hour test: 50 A on 100 Ah blocks (rated time at 50 A: 2 h), four healthy-ish
# blocks and two weak ones.
CAPS = [100.0, 78.0, 97.0, 100.0, 61.0, 99.0]


@pytest.fixture(scope="module")
def weak_test() -> tuple[list[BlockLog], SyntheticTruth]:
    return synthetic_string_test(6, current_a=50.0, capacity_ah=CAPS, seed=2)


def _meta(**kw: object) -> TestMetadata:
    return TestMetadata(ConstantCurrent(50.0), rated_time_s=kw.pop("rated_time_s", 7200.0), **kw)  # type: ignore[arg-type]


def test_weak_blocks_ranked_and_capacity_matches_truth(weak_test: tuple[list[BlockLog], SyntheticTruth]) -> None:
    logs, truth = weak_test
    r = analyze_test(logs, _meta())
    assert r.discharge.end_reason == "end_voltage"
    assert r.markers == ["SIMULATED"]
    assert abs(r.discharge.start_ms - truth.load_on_ms) <= 1000
    by_serial = {b.serial: b for b in r.blocks}
    # The two weak blocks reached 1.75 V/cell and are ranked weakest first.
    assert r.ranking[:2] == ["SIM-0005", "SIM-0002"]
    for serial, cap in (("SIM-0005", 61.0), ("SIM-0002", 78.0)):
        b = by_serial[serial]
        assert b.reached_end_voltage and not b.lower_bound
        assert b.capacity_pct == pytest.approx(cap, rel=0.02)
        assert b.soh_pct == pytest.approx(cap, rel=0.02)
        assert b.delivered_ah == pytest.approx(cap * 1.0, rel=0.02)  # 100 Ah rated: % == Ah
        assert b.replace and b.red >= 1
    # Healthy blocks outlasted the string: lower bounds, never flagged for replacement.
    for serial in ("SIM-0001", "SIM-0004"):
        assert by_serial[serial].lower_bound and not by_serial[serial].replace
    assert r.alignment_uncertainty_ms is not None and r.alignment_uncertainty_ms <= 100.0


def test_temperature_correction_uses_logger_temperature() -> None:
    logs, truth = synthetic_string_test(2, current_a=50.0, capacity_ah=[70.0, 100.0], temperature_c=20.0, seed=5)
    r = analyze_test(logs, _meta())
    b = r.blocks[0]
    assert b.temperature_c == pytest.approx(20.0, abs=0.2)
    assert b.k_t == pytest.approx(0.942, abs=0.002)
    tte, kt = truth.time_to_end_s[0], b.k_t
    assert tte is not None and kt is not None
    assert b.capacity_pct == pytest.approx(tte / (7200.0 * kt) * 100, rel=0.002)


def test_block_that_never_reaches_end_voltage() -> None:
    logs, _ = synthetic_string_test(3, current_a=50.0, capacity_ah=[80.0, 80.0, 130.0], seed=6)
    r = analyze_test(logs, _meta())
    strong = r.blocks[2]
    assert not strong.reached_end_voltage and strong.time_to_end_s is None
    assert strong.lower_bound and strong.capacity_pct is not None
    assert strong.capacity_pct >= r.blocks[0].capacity_pct  # type: ignore[operator]
    assert any("did not reach its end voltage" in w for w in strong.warnings)
    assert strong.rank == 3


def test_logger_with_a_gap(weak_test: tuple[list[BlockLog], SyntheticTruth]) -> None:
    logs, _ = weak_test
    gappy = list(logs)
    gappy[1] = with_gap(logs[1], 2000, 2600)  # 10 min power loss mid-discharge
    r = analyze_test(gappy, _meta())
    b = r.block("SIM-0002")
    assert len(b.gaps) == 1 and b.gaps[0].duration_s == pytest.approx(601.0, abs=2.0)
    assert any("gap" in w for w in b.warnings)
    assert b.capacity_pct == pytest.approx(78.0, rel=0.02)  # the end crossing is after the gap
    assert r.ranking[:2] == ["SIM-0005", "SIM-0002"]


def test_test_aborted_early() -> None:
    logs, _ = synthetic_string_test(4, current_a=50.0, capacity_ah=[100.0, 60.0, 100.0, 100.0],
                                    duration_s=3000.0, seed=7)
    r = analyze_test(logs, _meta())
    assert r.discharge.end_reason == "load_removed"
    assert r.discharge.duration_s == pytest.approx(3000.0, abs=2.0)
    assert r.capacity.lower_bound
    assert r.capacity.capacity_pct == pytest.approx(3000.0 / 7200.0 * 100, rel=0.01)
    assert any("aborted" in w for w in r.warnings)
    assert all(not b.reached_end_voltage for b in r.blocks)


def test_missing_logger(weak_test: tuple[list[BlockLog], SyntheticTruth]) -> None:
    logs, _ = weak_test
    present = [g for g in logs if g.position != 3]
    r = analyze_test(present, _meta(string_blocks=6))
    assert r.missing_positions == [3]
    assert len(r.blocks) == 5 and r.string_blocks == 6
    assert any("missing" in w for w in r.warnings)
    assert r.ranking[:2] == ["SIM-0005", "SIM-0002"]


def test_logger_whose_clock_jumped(weak_test: tuple[list[BlockLog], SyntheticTruth]) -> None:
    logs, _ = weak_test
    reference = analyze_test(logs, _meta())
    jumped = list(logs)
    jumped[4] = with_clock_jump(logs[4], 1500, 7_200_000)  # RTC 2 h wrong until a tap mid-test
    jumped[1] = with_clock_jump(logs[1], 1800, -900_000, recorded=False)  # an RTC glitch
    r = analyze_test(jumped, _meta())
    for serial in ("SIM-0005", "SIM-0002"):
        assert r.block(serial).time_to_end_s == pytest.approx(reference.block(serial).time_to_end_s, abs=2.0)
    assert r.block("SIM-0005").clock.observations == 3
    assert not r.block("SIM-0002").clock.drift_fitted


def test_constant_power_load() -> None:
    logs, _truth = synthetic_string_test(3, current_a=50.0, capacity_ah=[90.0, 90.0, 90.0], seed=8)
    # Declare a constant power that equals 50 A at the mean loaded string voltage.
    r = analyze_test(logs, TestMetadata(ConstantPower(50.0 * 3 * 6 * 1.93)))
    assert r.load_kind == "constant_power"
    assert r.discharge.mean_current_a == pytest.approx(50.0, rel=0.03)
    assert r.capacity.method == "none"
    assert any("nominal Ah" in w for w in r.warnings)


def test_current_profile_ends_the_discharge() -> None:
    logs, _ = synthetic_string_test(2, current_a=50.0, capacity_ah=[100.0, 100.0], duration_s=2400.0, seed=9)
    prof = CurrentProfile(np.array([0.0, 1200.0, 2400.0, 2401.0]), np.array([50.0, 50.0, 50.0, 0.0]))
    r = analyze_test(logs, TestMetadata(prof, rated_time_s=7200.0))
    assert r.load_kind == "current_profile"
    assert r.discharge.duration_s == pytest.approx(2400.0, abs=2.0)
    assert r.discharge.delivered_ah == pytest.approx(50.0 * 2400 / 3600, rel=0.002)


def test_rate_adjusted_method_for_short_tests() -> None:
    # 1 C (100 A) on an 80 % block: 48 min < 1 h, so the rate-adjusted method applies.
    logs, _ = synthetic_string_test(2, current_a=100.0, capacity_ah=[80.0, 100.0], seed=10)
    meta = TestMetadata(ConstantCurrent(100.0), datasheet=read_datasheet_csv(DATASHEET))
    r = analyze_test(logs, meta)
    assert r.capacity.method == "rate_adjusted"
    b = r.blocks[0]
    assert b.capacity_pct_rate_adjusted == pytest.approx(80.0, rel=0.01)
    assert b.capacity_pct_time_adjusted == pytest.approx(80.0, rel=0.01)  # rated time 1 h from the table
    assert b.capacity_pct == b.capacity_pct_rate_adjusted
    with pytest.raises(MetadataError, match="datasheet"):
        analyze_test(logs, TestMetadata(ConstantCurrent(100.0)), AnalysisOptions(method="rate_adjusted"))


def test_bad_metadata_is_a_clear_error(weak_test: tuple[list[BlockLog], SyntheticTruth]) -> None:
    logs, _ = weak_test
    cases: list[tuple[list[BlockLog], TestMetadata, str]] = [
        ([], _meta(), "no logger logs"),
        ([logs[0], logs[0]], _meta(), "appears more than once"),
        (logs, _meta(string_blocks=3), "string_blocks"),
        (logs, TestMetadata(ConstantCurrent(50.0), end_v_per_cell=1.3), "end_v_per_cell"),
    ]
    dup = BlockLog(logs[1].identity.__class__("SIM-0099", logs[1].identity.generation, "2.0.0"),
                   logs[1].config.with_changes(block_position=1), logs[1].t_ms, logs[1].mv, logs[1].dc)
    cases.append(([logs[0], dup], _meta(), "position 1"))
    nicd = LoggerConfig.default_for(BlockType("nicd", 10), 100.0)  # type: ignore[arg-type]
    other = BlockLog(dup.identity, nicd, logs[1].t_ms, logs[1].mv, logs[1].dc)
    cases.append(([logs[0], other], _meta(), "different chemistries"))
    for given, meta, message in cases:
        with pytest.raises(AnalysisError, match=message):
            analyze_test(given, meta)


def test_no_discharge_in_the_logs() -> None:
    logs, _ = synthetic_string_test(2, current_a=50.0, duration_s=1.0, pre_s=600.0, post_s=0.0, seed=3)
    flat = [BlockLog(g.identity, g.config, g.t_ms[:500], g.mv[:500], g.dc[:500], (), g.clock_observations)
            for g in logs]
    with pytest.raises(MetadataError, match="no discharge found"):
        analyze_test(flat, _meta())


def test_results_json_round_trip_and_schema(weak_test: tuple[list[BlockLog], SyntheticTruth]) -> None:
    logs, _ = weak_test
    r = analyze_test(logs, _meta())
    text = r.to_json()
    jsonschema.validate(json.loads(text), json_schema())
    back = TestResult.from_json(text)
    assert back == r
    with pytest.raises(MetadataError, match=r"\$\.blocks\[0\]\.rank"):
        data = json.loads(text)
        data["blocks"][0]["rank"] = "first"
        TestResult.from_json(json.dumps(data))
    with pytest.raises(MetadataError, match="schema version"):
        TestResult.from_json('{"schema_version": 99}')


def test_logger_that_stops_mid_discharge_and_one_without_data(
        weak_test: tuple[list[BlockLog], SyntheticTruth]) -> None:
    logs, _ = weak_test
    cut = list(logs)
    g = logs[0]
    cut[0] = BlockLog(g.identity, g.config, g.t_ms[:3600], g.mv[:3600], g.dc[:3600], (), g.clock_observations)
    g = logs[2]
    cut[2] = BlockLog(g.identity, g.config, g.t_ms[:0], g.mv[:0], g.dc[:0], (), g.clock_observations)
    r = analyze_test(cut, _meta())
    stopped, empty = r.block("SIM-0001"), r.block("SIM-0003")
    # Logging started 300 s before the load: 3600 samples cover ~3300 s of the discharge.
    assert stopped.lower_bound and stopped.discharge_time_s == pytest.approx(3300.0, abs=3.0)
    assert any("data ends" in w for w in stopped.warnings)
    assert empty.capacity_pct is None and empty.soh_pct is None and empty.rank is None
    assert any("no data during the discharge" in w for w in empty.warnings)
    assert r.ranking[:2] == ["SIM-0005", "SIM-0002"]
