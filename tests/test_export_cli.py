"""``smartlogger export`` on real signed logfiles (built by the logfile package from a store)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from openpyxl import load_workbook

from smartlogger.cli import main
from smartlogger.device.store import MemoryStore
from smartlogger.export.adapters import load_test_dir, logger_export_inputs
from smartlogger.export.check import check_workbook
from smartlogger.logfile import LogfileMetadata, pull_logfile, simulated_credentials
from smartlogger.model import ConfigChange, SampleBlock
from smartlogger.testing.synthetic import synthetic_string_test


@pytest.fixture(scope="module")
def test_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two loggers of a 100 A test of 50 Ah blocks (~30 min), pulled into signed .slog files."""
    logs, _ = synthetic_string_test(2, current_a=100.0, capacity_ah=[50.0, 42.0], rated_ah=50.0,
                                    pre_s=120, post_s=120, seed=4)
    d = tmp_path_factory.mktemp("test")
    for log in logs:
        store = MemoryStore(serial=log.serial)
        store.append(ConfigChange(int(log.t_ms[0]) - 1000, log.config, 1))
        for k in range(0, len(log), 600):
            seg = slice(k, k + 600)
            # Each block's own sample times: the synthetic RTC runs at exactly 1 s steps.
            assert np.all(np.diff(log.t_ms[seg]) == 1000)
            store.append(SampleBlock.of(int(log.t_ms[k]), 1000, log.mv[seg].tolist(), log.dc[seg].tolist()))
        end = int(log.t_ms[-1]) + 1000
        data = pull_logfile(simulated_credentials(log.identity), log.identity, store, device_ms=end,
                            phone_ms=end, metadata=LogfileMetadata(
                                test={"load": "100 A", "rated_time": "30min", "test_id": "CLI-1"}))
        (d / f"{log.serial}.slog").write_bytes(data)
    return d


def test_adapters_read_verify_and_classify(test_dir: Path) -> None:
    inputs = logger_export_inputs(test_dir / "SIM-0002.slog")
    assert inputs.evidence.status == "simulated" and inputs.evidence.serial == "SIM-0002"
    assert not inputs.evidence.verified  # a simulated logger is never hardware evidence
    assert inputs.evidence.key_fingerprint.count(":") == 7
    assert len(inputs.evidence.sha256) == 64
    assert inputs.series.identity.markers == ("SIMULATED",)
    # The weak block runs below its alarm level; the colour is the analysis' yellow/red verdict.
    alarm = [e for e in inputs.exceedances if e.level.value == "alarm"]
    assert alarm and alarm[0].extreme < alarm[0].limit == 9900
    assert alarm[0].colour == alarm[0].severity
    t = load_test_dir(test_dir)
    assert t.outcome.test_id == "CLI-1" and len(t.series) == 2
    assert [b.position for b in t.outcome.blocks] == [1, 2]
    assert t.outcome.weakest[0] == 2


def test_cli_logger_workbook(test_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "logger.xlsx"
    res = CliRunner().invoke(main, ["export", "xlsx", str(test_dir / "SIM-0001.slog"), "-o", str(out),
                                    "--tz", "Europe/Berlin", "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.output)
    assert info["kind"] == "logger" and info["verified"] is False and info["path"] == str(out)
    assert info["evidence"] == "simulated"
    assert check_workbook(out) == []
    wb = load_workbook(out, read_only=True)
    assert wb["Data"].max_row - 1 == info["samples"]


def test_cli_string_report(test_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.xlsx"
    res = CliRunner().invoke(main, ["export", "xlsx", "--test", str(test_dir), "-o", str(out),
                                    "--resolution", "30", "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.output)
    assert info == {**info, "kind": "string_report", "blocks": 2, "all_verified": False}
    assert check_workbook(out) == []
    wb = load_workbook(out, read_only=True)
    assert wb.sheetnames[:5] == ["Summary", "Overview", "Exceedances", "Data", "Evidence"]


def test_cli_longterm_and_data(test_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "lt.xlsx"
    csv = tmp_path / "raw.csv"
    res = CliRunner().invoke(main, ["export", "longterm", str(test_dir / "SIM-0001.slog"), "-o", str(out),
                                    "--samples", str(csv), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["days"] >= 1
    assert check_workbook(out) == []
    assert csv.read_text().count("\n") > 1000
    pq = tmp_path / "raw.parquet"
    res = CliRunner().invoke(main, ["export", "data", str(test_dir / "SIM-0001.slog"), "-o", str(pq)])
    assert res.exit_code == 0 and pq.exists()


def test_cli_errors_are_one_line(test_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(main, ["export", "xlsx", "-o", str(tmp_path / "x.xlsx")])
    assert res.exit_code == 2 and "give either LOGFILE or --test DIR" in res.output
    res = runner.invoke(main, ["export", "xlsx", str(test_dir / "SIM-0001.slog"), "-o", str(tmp_path / "x.xls")])
    assert res.exit_code == 1 and "must end in .xlsx" in res.output
    bad = tmp_path / "bad.slog"
    bad.write_bytes(b"\x89SLOG\r\n\x1a\x02\x00\x00\x00garbage")
    res = runner.invoke(main, ["export", "xlsx", str(bad), "-o", str(tmp_path / "y.xlsx")])
    assert res.exit_code == 4 and res.output.startswith("error: ")
    assert not (tmp_path / "y.xlsx").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    res = runner.invoke(main, ["export", "xlsx", "--test", str(empty), "-o", str(tmp_path / "z.xlsx")])
    assert res.exit_code == 1 and "no .slog logfiles" in res.output
