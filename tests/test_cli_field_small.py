"""The CLI as a technician meets it: one parser per quantity in every command, one-line errors,
self-explaining lists (``nfc profiles``, ``ble scan``) and a ``nfc program`` that says why it
stopped."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from smartlogger.cli import main
from smartlogger.device.nfc_tag import TagEmulator, serve_in_thread, simulated_kit
from smartlogger.field.profiles import load_profile
from smartlogger.protocol.ble import InfoFlags, LoggerInfo


def run(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(main, list(args), prog_name="smartlogger")
    return res.exit_code, res.output


# Every command that takes a load, with the rest of its arguments (nothing runs: parsing fails first).
LOAD_COMMANDS = [
    ["test", "analyze", "."],
    ["export", "xlsx", "--test", ".", "-o", "r.xlsx"],
    ["sim", "string", "--blocks", "2", "-o", "never"],
    ["demo", "--blocks", "2", "--out", "never"],
]


@pytest.mark.parametrize("cmd", LOAD_COMMANDS, ids=lambda c: " ".join(c[:2]))
@pytest.mark.parametrize(("option", "text", "message"), [
    ("--load", "4.8kW", "error: --load: '4.8kW' is a power, not a current; use --load-power 4.8kW"),
    ("--load", "20X", "error: --load: '20X' is not a current (examples: 20A, 500mA, 1.2kA)"),
    ("--load", "-3A", "error: --load: '-3A': a current must be greater than zero"),
    ("--load-power", "20A", "error: --load-power: '20A' is a current, not a power; use --load 20A"),
])
def test_every_command_reads_a_load_the_same_way(cmd: list[str], option: str, text: str, message: str,
                                                  tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, out = run(*cmd, option, text)
    assert code == 2
    assert out == message + "\n"
    assert not (tmp_path / "never").exists()  # refused before anything was written


@pytest.mark.parametrize("cmd", [LOAD_COMMANDS[0], LOAD_COMMANDS[1]], ids=["analyze", "export"])
def test_rated_time_is_one_parser_too(cmd: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, out = run(*cmd, "--load", "20A", "--rated-time", "3 fortnights")
    assert code == 2 and out.startswith("error: --rated-time: ") and out.count("\n") == 1


def test_milliamperes_and_bare_amperes_are_loads_everywhere(tmp_path: Path) -> None:
    code, out = run("sim", "string", "--blocks", "1", "--weak", "0", "--load", "500mA", "-o", str(tmp_path / "a"),
                    "--json")
    assert code == 0, out
    truth = json.loads((tmp_path / "a" / "truth.json").read_text())
    assert truth["load"] == "0.5A"


def test_log_intervals_take_durations(tmp_path: Path) -> None:
    code, out = run("sim", "string", "--blocks", "1", "--weak", "0", "--float-rate", "1min",
                    "--discharge-rate", "1.5", "-o", str(tmp_path))
    assert code == 2 and out == "error: --discharge-rate: '1.5' is not a whole number of seconds\n"


def test_usage_errors_are_one_line() -> None:
    code, out = run("test", "analyze", "no-such-folder")
    assert code == 2 and out.count("\n") == 1
    assert "no-such-folder" in out and "smartlogger test analyze --help" in out


def test_verify_of_a_missing_file_is_not_unreadable(tmp_path: Path) -> None:
    code, out = run("logfile", "verify", str(tmp_path / "typo.slog"))
    assert code == 2 and out == f"error: file not found: {tmp_path / 'typo.slog'}\n"
    assert "Errno" not in out and "UNREADABLE" not in out


def test_nfc_profiles_name_every_level() -> None:
    code, out = run("nfc", "profiles")
    assert code == 0
    rows = out.splitlines()
    assert "alarm<" in out and "warn>" in out and "block voltage, V" in out and "temperature, C" in out
    vrla = next(r for r in rows if r.startswith("vrla-12v"))
    assert vrla.split()[4:8] == ["9.90", "10.80", "14.10", "14.70"]
    code, out = run("nfc", "profiles", "--json")
    levels = next(p for p in json.loads(out) if p["preset"] == "vrla-12v")["levels"]
    assert levels["v_low_alarm_v"] == 9.9 and levels["t_high_alarm_c"] == 45.0


def test_ble_scan_shows_position_label_signal_and_clock() -> None:
    code, out = run("ble", "scan", "--virtual", "--sim-blocks", "3", "--json")
    assert code == 0, out
    rows = json.loads(out)
    assert [r["position"] for r in rows] == [1, 2, 3]
    assert [r["label"] for r in rows] == ["B1", "B2", "B3"]
    assert all(r["rssi_dbm"] is not None and r["unpulled_records"] > 0 for r in rows)
    # The rehearsal's phone lives on the simulation's virtual time: the clocks agree.
    assert all(abs(r["clock_offset_ms"]) < 1000 for r in rows)
    code, out = run("ble", "scan", "--virtual", "--sim-blocks", "2")
    assert code == 0 and "pos" in out and "RSSI" in out and "B2" in out


def test_info_placement_tail_round_trips_and_is_optional() -> None:
    base = LoggerInfo(1_767_225_600_000, InfoFlags.SIMULATED, 55, 0, 0, 3, 0, 1, "SIM-0001", "2.0.0")
    assert LoggerInfo.from_bytes(base.to_bytes()) == base  # an older logger: placement unknown
    placed = LoggerInfo(1_767_225_600_000, InfoFlags(0), 55, 0, 0, 3, 0, 1, "SL2-000123", "2.1.0",
                        7, "B07", "UPS-A-2026")
    data = placed.to_bytes()
    assert data[-17:] == b"\x07\x00\x03B07\x0aUPS-A-2026"
    assert LoggerInfo.from_bytes(data) == placed


def test_nfc_program_says_why_it_stops() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    tags = simulated_kit(1, load_profile("vrla-12v").config)
    emulator = TagEmulator(tags, port=port)
    thread = serve_in_thread(emulator)
    try:
        res = CliRunner().invoke(main, ["nfc", "program", "--device", f"udp:localhost:{port}",
                                        "--count", "3", "--timeout", "3s", "--json"])
    finally:
        emulator.stop()
        thread.join(5)
    assert res.exit_code == 3
    assert "error: timed out after 0:00:03 with 1 of 3 loggers done; tap the rest with " \
           "--start-position 2 --count 2" in res.output


def test_semicolon_trace_gets_a_delimiter_hint(tmp_path: Path) -> None:
    trace = tmp_path / "trace.csv"
    trace.write_text("time;voltage\n0;12,8\n60;12,7\n120;12,6\n")
    # detected (semicolons, decimal commas) ...
    code, out = run("device", "replay", str(trace), "-o", str(tmp_path / "out"))
    assert code == 0, out
    # ... and a wrongly named delimiter gets the hint
    code, out = run("device", "replay", str(trace), "--delimiter", ",", "-o", str(tmp_path / "out"))
    assert code == 2 and out.rstrip().endswith("the file looks ';'-separated: use --delimiter ';'")
    code, out = run("device", "replay", str(trace), "--delimiter", ";", "-o", str(tmp_path / "out"))
    assert code == 0, out
