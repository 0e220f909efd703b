"""The README's rehearsal on a virtual site, walked command by command as written, each in its
own process, with a check of what every step should have done (tests/rehearsal.py walks it)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from rehearsal import commands, stop_sites, walk
from site_support import cli


def test_the_readme_rehearsal_covers_the_field_day() -> None:
    """The walk has what the issue asks of it: a restart in the middle, a second pull with
    nothing new, a reset after the pull and a clock-reset fault."""
    cmds = commands()
    assert cmds[0].startswith("smartlogger sim site start site/")
    starts = [i for i, c in enumerate(cmds) if c.startswith("smartlogger sim site start")]
    stops = [i for i, c in enumerate(cmds) if c.startswith("smartlogger sim site stop")]
    pulls = [i for i, c in enumerate(cmds) if c.startswith("smartlogger ble pull --site site/ --all")]
    resets = [i for i, c in enumerate(cmds) if c.startswith("smartlogger ble reset")]
    faults = [i for i, c in enumerate(cmds) if "clock-reset" in c]
    assert len(starts) == 2 and stops[0] < starts[1] < len(cmds) - 1  # a restart in the middle
    assert len(pulls) == 2 and pulls[1] == pulls[0] + 1  # the second pull right after the first
    assert resets and resets[0] > pulls[1]
    assert faults and cmds[-1].startswith("smartlogger sim site stop")


def _slogs(logs: Path) -> set[str]:
    return {p.name for p in logs.glob("*.slog")}


def test_the_readme_rehearsal_runs_as_written(tmp_path: Path) -> None:
    site, logs = tmp_path / "site", tmp_path / "logs"
    seen: dict[str, object] = {}

    def after(i: int, command: str, proc: subprocess.CompletedProcess[str]) -> None:
        if command.startswith("smartlogger sim site status"):
            st = json.loads(cli("sim", "site", "status", str(site), "--json").stdout)
            assert len(st["loggers"]) == 12 and st["nfc_device"].startswith("udp:127.0.0.1:")
            assert st["nfc_device"] in proc.stdout  # the human output says how to reach it
        elif command.startswith("smartlogger nfc program"):
            st = json.loads(cli("sim", "site", "status", str(site), "--json").stdout)
            assert all(lg["config_seq"] == 1 and lg["test_id"] == "REHEARSAL-1"
                       and abs(lg["clock_offset_ms"]) < 1000 for lg in st["loggers"])
        elif "--until-load-off" in command:
            assert "switched off at its cutoff" in proc.stdout
        elif command.startswith("smartlogger sim site start") and "seen_start" in seen:
            assert "started" in proc.stdout and "recovered" not in proc.stdout  # a clean resume
        elif command.startswith("smartlogger ble pull --site site/ --all"):
            if "first_pull" not in seen:
                seen["first_pull"] = _slogs(logs)
                assert len(seen["first_pull"]) == 12  # type: ignore[arg-type]
            else:
                assert _slogs(logs) == seen["first_pull"]  # nothing new: no new file
        elif command.startswith("smartlogger test analyze"):
            result = json.loads((logs / "result.json").read_text())
            truth = json.loads(cli("sim", "site", "truth", str(site), "--json").stdout)["test"]
            # what the analysis found is what the site's battery did
            assert abs(result["discharge"]["duration_s"] - truth["duration_s"]) <= 60
            assert {b["position"] for b in result["blocks"] if b["reached_end_voltage"]} == \
                {b["position"] for b in truth["blocks"] if b["reached_end_voltage"]} != set()
            for b in result["blocks"]:
                t = truth["blocks"][b["position"] - 1]
                assert abs(b["delivered_ah"] - t["delivered_ah"]) <= 0.01 * t["delivered_ah"]
                assert abs(b["resistance_mohm"] - t["step_resistance_mohm"]) <= 0.1 * t["step_resistance_mohm"]
        elif command.startswith("smartlogger ble reset"):
            assert "reset for reuse" in proc.stdout
        elif command.startswith("smartlogger ble pull --site site/ SIM-0005"):
            new = _slogs(logs) - seen["first_pull"]  # type: ignore[operator]
            assert len(new) == 1 and next(iter(new)).startswith("SIM-0005-")
            state = json.loads((logs / "SIM-0005.pull.json").read_text())
            assert "CLOCK DISAGREES" in proc.stdout + proc.stderr, proc.stdout
            assert state["next_seq"]["0"] > 0
        if command.startswith("smartlogger sim site start"):
            seen["seen_start"] = True

    try:
        walk(tmp_path, after=after)
    finally:
        stop_sites(tmp_path)
    assert not (site / "run.json").exists()  # the walk ends with the site stopped
