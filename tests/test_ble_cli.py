"""The ``smartlogger ble`` commands on the virtual radio with a small simulated string."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from smartlogger.cli import main
from smartlogger.logfile.verify import verify_logfile


def test_pull_all_virtual_writes_verified_logfiles_and_state(tmp_path: Path) -> None:
    out = tmp_path / "pulls"
    res = CliRunner().invoke(main, ["ble", "pull", "--all", "-o", str(out), "--virtual",
                                    "--sim-blocks", "3", "-k", "2", "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output)
    assert sorted(summary["pulled"]) == ["VIRT-0001", "VIRT-0002", "VIRT-0003"]
    # simulated loggers: intact and marked read, never "verified" (that is hardware evidence)
    assert all(v["status"] == "simulated" and not v["verified"] and v["marked_read"]
               and v["transfer_complete"] for v in summary["pulled"].values())
    files = sorted(out.glob("*.slog"))
    assert len(files) == 3 and len(list(out.glob("*.pull.json"))) == 3
    report = verify_logfile(files[0])
    assert report.signatures_valid and report.chain_intact


def test_reset_is_refused_with_the_devices_reason() -> None:
    res = CliRunner().invoke(main, ["ble", "reset", "VIRT-0001", "--virtual", "--sim-blocks", "1"])
    assert res.exit_code == 1
    assert "reset refused by the logger" in res.output and "have not been read out" in res.output


def test_pull_needs_serial_or_all(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["ble", "pull", "-o", str(tmp_path)])
    assert res.exit_code == 2 and "give either SERIAL or --all" in res.output
