"""The demo end to end on a small string: every seam exercised, results checked against truth."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from openpyxl import load_workbook

from smartlogger.cli import main
from smartlogger.demo import STEPS, DemoOptions, run_demo


def test_demo_runs_every_step_and_finds_the_weak_block(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    steps: list[str] = []
    summary = run_demo(DemoOptions(blocks=5, weak=1, out=out, seed=3),
                       on_step=lambda key, desc: steps.append(key))
    assert steps == [key for key, _ in STEPS]
    assert list(summary.steps) == steps
    f = summary.facts
    assert f["nfc_programmed"] == 5 and f["ble_pulled"] == 5 and f["verified"] == 5
    assert f["api_uploaded"] == 5 and f["api_report_bytes"] > 10_000
    # The weakest block found by the analysis is the one the battery model made weak.
    assert f["weakest"][0]["position"] in f["weak_blocks_truth"]
    assert f["weakest"][0]["replace"]
    # The analysis' discharge matches the simulated load window within 1 %.
    assert abs(f["discharge_h"] - f["load_on_to_off_h_truth"]) <= 0.01 * f["load_on_to_off_h_truth"]
    assert len(list((out / "logs").glob("*.slog"))) == 5
    assert len(list((out / "workbooks").glob("*.xlsx"))) == 5
    wb = load_workbook(out / "report.xlsx", read_only=True)
    assert "Summary" in wb.sheetnames and "Evidence" in wb.sheetnames
    written = json.loads((out / "summary.json").read_text())
    assert written["facts"]["verified"] == 5
    token_file = Path(summary.outputs["api_token"])
    assert token_file.stat().st_mode & 0o077 == 0  # the token is readable by its owner only


def test_demo_rerun_into_the_same_folder_reuses_the_api_data(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    first = run_demo(DemoOptions(blocks=3, weak=0, out=out, seed=4, logger_workbooks=False))
    again = run_demo(DemoOptions(blocks=3, weak=0, out=out, seed=4, logger_workbooks=False))
    assert first.facts["api_uploaded"] == 3
    # A second pull is new evidence (new nonce, new bytes) for the same test: the server keeps
    # both pulls of every logger, merges them per logger, and its analysis still matches the
    # local one (the api step checks that, or fails).
    assert again.facts["api_test_id"] == first.facts["api_test_id"]
    assert again.facts["api_uploaded"] == 3
    assert again.facts["capacity_pct"] == first.facts["capacity_pct"]


def test_demo_names_the_failing_step(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["demo", "--blocks", "3", "--load", "20X", "--out", str(tmp_path / "d")])
    assert r.exit_code != 0
    assert "demo step 'simulate' failed" in r.output and "load" in r.output
    assert "Traceback" not in r.output
