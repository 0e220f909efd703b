"""``smartlogger test analyze`` on real ``.slog`` files pulled from simulated loggers."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner

from smartlogger.analysis.loading import block_log_from_logfile
from smartlogger.cli import main
from smartlogger.device.sim import simulate_string_test
from smartlogger.device.store import MemoryStore
from smartlogger.logfile import pull_logfile, simulated_credentials
from smartlogger.logfile.container import LogfileMetadata

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def test_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    st = simulate_string_test(4, weak=1, load="10A", seed=3,
                              store_factory=lambda ident: MemoryStore(serial=ident.serial))
    out = tmp_path_factory.mktemp("kit")
    for lg in st.loggers:
        phone_ms = st.start_ms + round(lg.true_s * 1000)
        data = pull_logfile(simulated_credentials(lg.identity), lg.identity, lg.store,
                            device_ms=lg.now_ms(), phone_ms=phone_ms,
                            metadata=LogfileMetadata(f"B{lg.config.block_position}", lg.config.block_position))
        (out / f"{lg.identity.serial}.slog").write_bytes(data)
    (out / "notes.txt").write_text("not a logfile")
    return out


def test_logfile_loader_keeps_clock_observations(test_dir: Path) -> None:
    log = block_log_from_logfile(test_dir / "SIM-0001.slog")
    assert len(log.clock_jumps) == 1  # the NFC tap set the clock
    (pull,) = log.clock_observations
    assert pull.source == "ble" and pull.segment == 1
    assert log.position == 1 and len(log) > 20000


def test_analyze_prints_summary_table(test_dir: Path) -> None:
    res = CliRunner().invoke(main, ["test", "analyze", str(test_dir), "--load", "10A", "--rated-time", "10h",
                                    "--blocks", "5"])
    assert res.exit_code == 0, res.output
    assert "SIMULATED" in res.output
    assert "SIM-0004" in res.output and "yellow" in res.output and "red" in res.output
    assert "missing loggers at positions 5" in res.output


def test_analyze_json_matches_schema(test_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    res = CliRunner().invoke(main, ["test", "analyze", *(str(p) for p in sorted(test_dir.glob("*.slog"))),
                                    "--load", "10A", "--datasheet", str(DATA / "datasheet_synthetic_12v100.csv"),
                                    "--json", "--out", str(out)])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert json.loads(out.read_text()) == data
    jsonschema.validate(data, json.loads(CliRunner().invoke(main, ["test", "schema"]).output))
    assert data["capacity"]["method"] == "time_adjusted"
    assert data["capacity"]["rated_time_s"] == pytest.approx(36000.0)
    assert data["ranking"][0] == "SIM-0004"  # the weak block


@pytest.mark.parametrize(("args", "message"), [
    (["--load", "10A", "--load-power", "100W"], "only one of"),
    (["--load", "10A", "--rated-time", "3fortnights"], "--rated-time: '3fortnights': unknown time unit"),
    (["--load", "10A", "--end-voltage", "10.5"], "10.5V/block"),
    (["--load", "ten"], "--load: 'ten' is not a current"),
    (["--load", "4.8kW"], "use --load-power 4.8kW"),
    (["--load-power", "20A"], "use --load 20A"),
])
def test_bad_metadata_exits_2_with_one_line(test_dir: Path, args: list[str], message: str) -> None:
    res = CliRunner().invoke(main, ["test", "analyze", str(test_dir), *args])
    assert res.exit_code == 2
    assert message in res.output and res.output.count("\n") == 1


def test_trend_command(test_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    args = ["test", "analyze", str(test_dir), "--load", "10A", "--rated-time", "10h", "--out", str(out)]
    assert CliRunner().invoke(main, args).exit_code == 0
    res = CliRunner().invoke(main, ["test", "trend", str(out), "--by", "position", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert [t["key"] for t in data] == ["pos 1", "pos 2", "pos 3", "pos 4"]
    res = CliRunner().invoke(main, ["test", "trend", str(out)])
    assert res.exit_code == 0 and "SIM-0004@pos 4" in res.output


def test_generation1_logfiles_are_analysed(tmp_path: Path) -> None:
    """Gen-1 loggers: fixed 10 s rate, fixed 9.9 V 'empty' alarm, no clock set, unsigned."""
    from smartlogger.logfile.gen1 import write_gen1
    from smartlogger.model import Generation, LoggerIdentity, SampleBlock
    from smartlogger.testing.synthetic import synthetic_string_test

    logs, _ = synthetic_string_test(2, current_a=50.0, capacity_ah=[70.0, 100.0], seed=12)
    for g in logs:
        ident = LoggerIdentity(g.serial.replace("SIM", "G1"), Generation.GEN1, "1.4", simulated=True)
        blk = SampleBlock.of(int(g.t_ms[0]), 10_000, g.mv[::10].tolist(), g.dc[::10].tolist())
        (tmp_path / f"{ident.serial}.slog").write_bytes(write_gen1(ident, [blk]))
    res = CliRunner().invoke(main, ["test", "analyze", str(tmp_path), "--load", "50A", "--rated-time", "2h",
                                    "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    weak = data["blocks"][0]
    assert weak["reached_end_voltage"] and weak["capacity_pct"] == pytest.approx(70.0, rel=0.02)
    assert weak["clock"]["uncertainty_ms"] is None  # gen 1: no tap, no signed pull
    assert data["ranking"][0] == "G1-0001"
