"""Simulation scenarios on the real battery model, and the ``sim`` / ``device`` commands
through click's CliRunner."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from smartlogger.cli import main
from smartlogger.device.sim import simulate_string_test, simulate_years
from smartlogger.model import ClockSet, ConfigChange, Event, EventKind


def _events(logger, kind: EventKind) -> list[Event]:  # type: ignore[no-untyped-def]
    return [r for _, r in logger.store.records() if isinstance(r, Event) and r.kind is kind]


def test_string_test_scenario() -> None:
    res = simulate_string_test(4, weak=1, load="20A", seed=3)
    assert [lg.identity.serial for lg in res.loggers] == ["SIM-0001", "SIM-0002", "SIM-0003", "SIM-0004"]
    load_on_ms = res.start_ms + res.trace.load_on_s * 1000
    drifts = set()
    for i, lg in enumerate(res.loggers):
        assert lg.identity.simulated and lg.identity.markers == ("SIMULATED",)
        recs = [r for _, r in lg.store.records()]
        tap = next(r for r in recs if isinstance(r, ClockSet))
        assert tap.new_ms == res.start_ms and tap.old_ms != res.start_ms  # factory clock was off
        cfg = [r for r in recs if isinstance(r, ConfigChange)][-1]
        assert cfg.seq == 1 and cfg.config.block_position == i + 1
        start, = _events(lg, EventKind.DISCHARGE_START)
        # detected within seconds of the load, on the logger's own (drifting) clock
        assert 0 <= start.t_ms - load_on_ms <= 10_000
        end, = _events(lg, EventKind.DISCHARGE_END)
        assert end.t_ms > res.start_ms + res.trace.load_off_s * 1000
        drifts.add(lg.rtc.drift_ppm)
    assert len(drifts) == 4
    weak = [t.index for t in res.trace.truth if t.weak]
    alarms = {i for i, lg in enumerate(res.loggers)
              if any(e.quantity is not None and e.quantity.value == "voltage" for e in _events(lg, EventKind.ENTER_ALARM))}
    assert set(weak) <= alarms  # the weak block ran into the low-voltage alarm


def test_years_scenario_detects_every_outage() -> None:
    res = simulate_years(0.5, discharges_per_year=8, seed=4)
    lg = res.logger
    windows = res.trace.discharges
    assert windows, "the scenario should contain outages"
    starts = [e.t_ms for e in _events(lg, EventKind.DISCHARGE_START)]
    assert len(starts) == len(windows)
    for w, got in zip(windows, starts, strict=True):
        expected = lg.rtc.base_ms + lg.rtc.oscillator_ms(w.start_s)
        assert abs(got - expected) <= 90_000  # within the 60-s grid of the trace + debounce


def test_cli_sim_string_writes_logfiles_csv_events_truth(tmp_path: Path) -> None:
    from smartlogger.logfile import load_samples, read_logfile, verify_logfile

    out = tmp_path / "run"
    r = CliRunner().invoke(main, ["sim", "string", "--blocks", "3", "--load", "30A", "--seed", "2",
                                  "-o", str(out), "--csv", "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output.strip().splitlines()[-1])
    assert summary["loggers"] == 3 and summary["logfiles"] == 3 and summary["csv_samples"] > 1000
    lf = read_logfile(out / "SIM-0002.slog")
    assert lf.identity.simulated and lf.metadata.test["load"] == "30A"
    report = verify_logfile(lf)
    assert report.status == "simulated", report.problems
    t, mv, _ = load_samples(lf)
    assert t.size > 1000 and 9000 < int(mv.min()) < int(mv.max()) < 14500
    with open(out / "SIM-0002.csv", encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    assert lines[0].startswith("# serial=SIM-0002 markers=SIMULATED")
    assert lines[1] == "time_utc,voltage_v,temperature_c"
    t, v, c = lines[2].split(",")
    assert t.endswith("Z") and 12.0 < float(v) < 14.5 and 15 < float(c) < 40
    with open(out / "events.csv", encoding="utf-8") as fh:
        kinds = {row["kind"] for row in csv.DictReader(fh)}
    assert {"POWER_ON", "DISCHARGE_START", "DISCHARGE_END", "RATE_CHANGE"} <= kinds
    truth = json.loads((out / "truth.json").read_text())
    assert len(truth["blocks"]) == 3 and truth["markers"] == ["SIMULATED"]


def test_cli_sim_years(tmp_path: Path) -> None:
    from smartlogger.logfile import load_samples, read_logfile

    r = CliRunner().invoke(main, ["sim", "years", "--years", "0.1", "--log-rate", "300", "-o", str(tmp_path),
                                  "--csv", "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output.strip().splitlines()[-1])
    assert summary["csv_samples"] >= int(0.1 * 365 * 288)
    t, _, _ = load_samples(read_logfile(summary["logfile"]))
    assert t.size == summary["csv_samples"]


def test_cli_replay_and_errors(tmp_path: Path) -> None:
    trace = tmp_path / "t.csv"
    rows = ["time,voltage,temp"] + [f"{s},{13.6 if s < 600 else 12.2 - s * 1e-5:.4f},{'' if s % 120 else 25}"
                                    for s in range(0, 3600, 10)]
    trace.write_text("\n".join(rows) + "\n")
    runner = CliRunner()
    r = runner.invoke(main, ["device", "replay", str(trace), "--temperature-column", "temp",
                             "-o", str(tmp_path / "out"), "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output.strip().splitlines()[-1])
    assert summary["markers"] == ["REPLAYED"] and summary["trace_rows"] == 360
    assert (tmp_path / "out" / "REPLAY-0001.slog").exists() and not (tmp_path / "out" / "REPLAY-0001.csv").exists()
    from smartlogger.logfile import read_logfile

    assert read_logfile(tmp_path / "out" / "REPLAY-0001.slog").identity.replayed

    bad = tmp_path / "bad.csv"
    bad.write_text("time,voltage\n0,13.6\n10,13.6\n5,13.6\n")
    r = runner.invoke(main, ["device", "replay", str(bad), "-o", str(tmp_path / "o2")])
    assert r.exit_code == 2
    msg = r.output.strip()
    assert msg.count("\n") == 0 and "line 4" in msg and "'time'" in msg and "Traceback" not in msg
    r = runner.invoke(main, ["device", "replay", str(trace), "--voltage-unit", "mV", "-o", str(tmp_path / "o3")])
    assert r.exit_code == 2 and "looks like volts" in r.output


def test_cli_bad_load_is_one_line(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["sim", "string", "--blocks", "2", "--load", "20X", "-o", str(tmp_path)])
    assert r.exit_code == 2
    assert r.output.strip().startswith("error: --load:") and r.output.strip().count("\n") == 0
    r = CliRunner().invoke(main, ["sim", "string", "--chemistry", "zinc", "-o", str(tmp_path)])
    assert r.exit_code == 2 and "unknown chemistry" in r.output


def test_samples_are_drift_consistent() -> None:
    """Two loggers on the same string disagree on time by their clock drift only."""
    res = simulate_string_test(2, weak=0, load="50A", seed=5)
    a, b = res.loggers
    sa = _events(a, EventKind.DISCHARGE_START)[0].t_ms
    sb = _events(b, EventKind.DISCHARGE_START)[0].t_ms
    assert abs(sa - sb) <= 3000  # same moment (+/- debounce tick), clocks set at the same tap
    assert np.isfinite(res.wall_s) and res.wall_s > 0


def test_cli_flash_images_hold_the_log(tmp_path: Path) -> None:
    from smartlogger.device.blackbox import BlackboxStore

    r = CliRunner().invoke(main, ["sim", "string", "--blocks", "2", "--load", "40A", "-o", str(tmp_path / "o"),
                                  "--flash-image", str(tmp_path / "img.nor"), "--csv", "--json"])
    assert r.exit_code == 0, r.output
    images = json.loads(r.output.strip().splitlines()[-1])["flash_images"]
    assert [Path(p).name for p in images] == ["img-SIM-0001.nor", "img-SIM-0002.nor"]
    store = BlackboxStore.from_image(images[1])
    kinds = [rec.kind for _, rec in store.records() if isinstance(rec, Event)]
    assert EventKind.DISCHARGE_START in kinds and EventKind.DISCHARGE_END in kinds
    with open(tmp_path / "o" / "events.csv", encoding="utf-8") as fh:
        csv_kinds = [row["kind"] for row in csv.DictReader(fh) if row["serial"] == "SIM-0002"]
    assert [k.name for k in kinds] == csv_kinds  # the image holds exactly what was exported
