"""The verdict on a capacity test (``analysis.verdict``): pass / fail / inconclusive, one sentence."""

from __future__ import annotations

import copy
import json

import pytest

from smartlogger.analysis.analyze import analyze_test
from smartlogger.analysis.inputs import ConstantCurrent, TestMetadata
from smartlogger.analysis.results import TestResult
from smartlogger.analysis.verdict import (
    RANKING_RULE,
    apply_verdict,
    blocks_phrase,
    ensure_verdict,
    verdict_of,
)
from smartlogger.testing.synthetic import synthetic_string_test


@pytest.fixture(scope="module")
def stopped_by_weak_blocks() -> TestResult:
    """Four 100 Ah blocks at 10 A, rated 10 h; blocks 2 and 4 are weak and the load is removed
    right after block 2 (the weaker) reached its end voltage: the others outlasted the test."""
    logs, _ = synthetic_string_test(4, current_a=10.0, capacity_ah=[100.0, 45.0, 100.0, 60.0],
                                    duration_s=6.5 * 3600, seed=5)
    return analyze_test(logs, TestMetadata(ConstantCurrent(10.0), rated_time_s=10 * 3600.0))


def test_weak_blocks_fail_and_the_others_are_lower_bounds_not_failures(stopped_by_weak_blocks: TestResult) -> None:
    r = stopped_by_weak_blocks
    v = r.verdict
    assert v is not None and v.outcome == "fail"
    assert [r.block(s).position for s in v.failed] == [2, 4]  # weakest first
    by_pos = {b.position: b for b in r.blocks}
    assert by_pos[2].disposition == "fail" and by_pos[4].disposition == "fail"
    # The strong blocks' capacity (~65 %) is below 80 %, but only a lower bound: never "fail".
    for p in (1, 3):
        assert by_pos[p].lower_bound and by_pos[p].capacity_pct is not None and by_pos[p].capacity_pct < 80
        assert by_pos[p].disposition == "not_determined"
        assert "retest" in by_pos[p].recommendation
    assert "blocks 2 and 4 fail (45 %, 60 %)" in v.sentence
    assert "the other 2 blocks held 64 % or more (not determined further)" in v.sentence
    assert v.sentence.startswith("The string reached its end voltage (42.0 V) after 6 h 28 min; "
                                 "the string delivered 65 % of rated capacity;")
    assert v.ranking_rule == RANKING_RULE
    # Stored with the result, and read back.
    again = TestResult.from_json(r.to_json())
    assert again.verdict == v and again.block(r.blocks[1].serial).disposition == "fail"


def test_load_bank_cutoff_after_weak_blocks(stopped_by_weak_blocks: TestResult) -> None:
    r = copy.deepcopy(stopped_by_weak_blocks)
    r.discharge.end_reason, r.capacity.lower_bound = "load_removed", True
    v = verdict_of(r)
    assert v.outcome == "fail"  # the weak blocks ended the test: the string as it stands cannot carry it
    assert v.sentence.startswith("Test stopped after 6 h 28 min when the load was removed, most likely by the "
                                 "load bank's end-voltage cutoff, after blocks 2 and 4 had reached their end "
                                 "voltage; blocks 2 and 4 fail (45 %, 60 %); the other 2 blocks held")


def test_measured_string_decides(stopped_by_weak_blocks: TestResult) -> None:
    r = copy.deepcopy(stopped_by_weak_blocks)
    r.capacity.capacity_pct, r.capacity.lower_bound = 85.0, False
    for b in r.blocks:  # every block measured at or above 80 %
        b.capacity_pct, b.lower_bound, b.reached_end_voltage = 90.0, False, True
    v = verdict_of(r)
    assert v.outcome == "pass" and "the string delivered 85 % of rated capacity" in v.sentence
    r.capacity.capacity_pct = 79.0
    assert verdict_of(r).outcome == "fail"


def test_lower_bound_below_criterion_without_failed_blocks_is_inconclusive(stopped_by_weak_blocks: TestResult) -> None:
    r = copy.deepcopy(stopped_by_weak_blocks)
    r.discharge.end_reason, r.capacity.lower_bound = "load_removed", True
    for b in r.blocks:
        b.lower_bound, b.reached_end_voltage, b.time_to_end_s = True, False, None
    v = verdict_of(r)
    assert v.outcome == "inconclusive"
    assert "when the load was removed before the string reached its end voltage" in v.sentence
    assert "all 4 blocks held" in v.sentence and "retest" in v.sentence
    # A lower bound that already meets the criterion passes: it did at least that.
    r.capacity.capacity_pct = 82.0
    for b in r.blocks:
        b.capacity_pct = 85.0
    assert verdict_of(r).outcome == "pass"


def test_no_rating_is_inconclusive(stopped_by_weak_blocks: TestResult) -> None:
    r = copy.deepcopy(stopped_by_weak_blocks)
    r.capacity.method, r.capacity.capacity_pct = "none", None
    for b in r.blocks:
        b.capacity_pct = None
    v = verdict_of(r)
    assert v.outcome == "inconclusive" and "no rated time or datasheet" in v.sentence


def test_a_result_without_verdict_gets_one_with_the_same_rules(stopped_by_weak_blocks: TestResult) -> None:
    data = json.loads(stopped_by_weak_blocks.to_json())
    del data["verdict"]
    for b in data["blocks"]:
        del b["disposition"], b["recommendation"]
    old = TestResult.from_data(data)
    assert old.verdict is None
    assert ensure_verdict(old).verdict == stopped_by_weak_blocks.verdict


def test_criterion_is_a_parameter(stopped_by_weak_blocks: TestResult) -> None:
    r = apply_verdict(copy.deepcopy(stopped_by_weak_blocks), 40.0)
    assert r.verdict is not None and r.verdict.acceptance_pct == 40.0
    assert r.verdict.outcome == "pass"  # the string's lower bound (~64 %) meets 40 %
    assert "40 %" in r.verdict.criterion


def test_blocks_phrase() -> None:
    class B:
        def __init__(self, p: int) -> None:
            self.position, self.serial = p, f"S{p}"

    assert blocks_phrase([B(3)]) == "block 3"  # type: ignore[list-item]
    assert blocks_phrase([B(3), B(5)]) == "blocks 3 and 5"  # type: ignore[list-item]
    assert blocks_phrase([B(i) for i in range(1, 11)]) == "blocks 1, 2, 3, 4, 5, 6 and 4 more"  # type: ignore[misc]


def test_analyze_prints_the_verdict_first_against_the_given_criterion(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from click.testing import CliRunner

    from smartlogger.cli import main
    from smartlogger.testing.api import simulated_logfiles

    for i, data in enumerate(simulated_logfiles(3)):
        (tmp_path / f"b{i + 1}.slog").write_bytes(data)
    runner = CliRunner()
    res = runner.invoke(main, ["test", "analyze", str(tmp_path), "--load", "50A", "--rated-time", "2h",
                               "--acceptance", "85"])
    assert res.exit_code == 0, res.output
    r = TestResult.from_json((tmp_path / "result.json").read_text())
    assert r.verdict is not None and r.verdict.acceptance_pct == 85.0
    head = f"{r.verdict.outcome.upper()} against capacity at least 85 % of rated"
    assert head in res.output and res.output.index(head) < res.output.index("Evidence:")  # the verdict first
    assert " ".join(r.verdict.sentence.split()) in " ".join(res.output.split())
    bad = runner.invoke(main, ["test", "analyze", str(tmp_path), "--acceptance", "0"])
    assert bad.exit_code == 2
