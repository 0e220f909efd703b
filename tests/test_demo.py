"""The demo end to end on a small string: every seam exercised, results checked against truth."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from openpyxl import load_workbook

from smartlogger.cli import main
from smartlogger.demo import DEMO_MARKER, DEMO_OUTPUTS, STEPS, DemoOptions, prepare_output, run_demo


def test_demo_runs_every_step_and_finds_the_weak_block(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    steps: list[str] = []
    summary = run_demo(DemoOptions(blocks=5, weak=1, out=out, seed=3),
                       on_step=lambda key, desc: steps.append(key))
    assert steps == [key for key, _ in STEPS]
    assert list(summary.steps) == steps
    f = summary.facts
    assert f["nfc_programmed"] == 5 and f["ble_pulled"] == 5 and f["verified_simulated"] == 5
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
    assert written["facts"]["verified_simulated"] == 5
    token_file = Path(summary.outputs["api_token"])
    assert token_file.stat().st_mode & 0o077 == 0  # the token is readable by its owner only


def test_demo_rerun_into_the_same_folder_starts_clean(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    first = run_demo(DemoOptions(blocks=4, weak=0, out=out, seed=4, logger_workbooks=False))
    written = {p.name for p in out.iterdir()}
    assert written <= set(DEMO_OUTPUTS) | {DEMO_MARKER}, f"a later demo would not clear {written - set(DEMO_OUTPUTS)}"
    (out / "my notes.txt").write_text("kept")  # not the demo's: it stays, and the folder stays a demo folder
    notes: list[str] = []
    # A smaller string into the same folder: nothing of the first run may leak into the second.
    again = run_demo(DemoOptions(blocks=3, weak=0, out=out, seed=4, logger_workbooks=False),
                     on_note=notes.append)
    assert first.facts["api_uploaded"] == 4
    assert len(notes) == 1 and "starting clean" in notes[0] and "logs" in notes[0]
    assert {"logs", "report.pdf"} <= set(again.facts["cleared_earlier_demo"])
    assert len(list((out / "logs").glob("*.slog"))) == 3
    assert again.facts["api_uploaded"] == 3 and again.facts["ble_pulled"] == 3
    assert (out / "my notes.txt").read_text() == "kept"
    # The CLI clears the folder first (to say so), then run_demo looks again: still a demo folder.
    assert "report.pdf" in prepare_output(out) and prepare_output(out) == []


def test_demo_refuses_a_folder_it_did_not_write(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.docx").write_text("precious")
    r = CliRunner().invoke(main, ["demo", "--blocks", "3", "--out", str(out)])
    assert r.exit_code != 0
    assert "not written by smartlogger demo" in r.output and r.output.count("\n") == 1
    assert (out / "thesis.docx").read_text() == "precious"


def test_demo_names_the_failing_step(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["demo", "--blocks", "3", "--weak", "5", "--out", str(tmp_path / "d")])
    assert r.exit_code != 0
    assert "demo step 'options' failed" in r.output and "--weak 5" in r.output
    r = CliRunner().invoke(main, ["demo", "--blocks", "3", "--load", "20X", "--out", str(tmp_path / "d")])
    assert r.exit_code == 2 and r.output == "error: --load: '20X' is not a current (examples: 20A, 500mA, 1.2kA)\n"
    assert "Traceback" not in r.output
