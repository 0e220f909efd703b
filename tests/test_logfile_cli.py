"""``smartlogger logfile info|verify|convert`` through click, with their exit codes."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from smartlogger.cli import main
from smartlogger.logfile.examples import example_pulls


def _files(tmp_path: Path) -> tuple[Path, Path, Path, Path]:
    older, latest, _ = example_pulls("SIM-0001")
    good = tmp_path / "good.slog"
    good.write_bytes(latest)
    bad = tmp_path / "tampered.slog"
    flipped = bytearray(latest)
    flipped[len(latest) // 2] ^= 1
    bad.write_bytes(bytes(flipped))
    junk = tmp_path / "junk.slog"
    junk.write_bytes(b"hello")
    old = tmp_path / "older.slog"
    old.write_bytes(older)
    return good, bad, junk, old


def test_verify_exit_codes(tmp_path: Path) -> None:
    good, bad, junk, old = _files(tmp_path)
    runner = CliRunner()
    res = runner.invoke(main, ["logfile", "verify", str(good)])
    assert res.exit_code == 0 and "VERIFIED" in res.output and "SIMULATED" in res.output
    res = runner.invoke(main, ["logfile", "verify", str(bad), "--json"])
    assert res.exit_code == 5 and json.loads(res.output)["status"] == "tampered"
    res = runner.invoke(main, ["logfile", "verify", str(junk)])
    assert res.exit_code == 4 and "UNREADABLE" in res.output
    nonce = bytes(range(16, 32)).hex()
    res = runner.invoke(main, ["logfile", "verify", str(old), "--expected-nonce", nonce])
    assert res.exit_code == 5 and "stale_pull" in res.output


def test_info_and_convert(tmp_path: Path) -> None:
    good, _, junk, _ = _files(tmp_path)
    runner = CliRunner()
    res = runner.invoke(main, ["logfile", "info", str(good), "--json"])
    assert res.exit_code == 0
    info = json.loads(res.output)
    assert info["serial"] == "SIM-0001" and info["markers"] == ["SIMULATED"] and info["signed"]
    res = runner.invoke(main, ["logfile", "info", str(good)])
    assert "SIM-0001" in res.output and "[SIMULATED]" in res.output
    out = tmp_path / "out.csv"
    res = runner.invoke(main, ["logfile", "convert", str(good), "-o", str(out)])
    assert res.exit_code == 0 and out.read_text().startswith("time_utc,voltage_v,temperature_c\n")
    res = runner.invoke(main, ["logfile", "info", str(junk)])
    assert res.exit_code == 4 and "not a smartlogger logfile" in res.output
