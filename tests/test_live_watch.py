"""Watching a discharge live: the watcher's checks in process, then a virtual site discharged
with ``smartlogger test watch --json`` in another process and a keyless spoofer on the air."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

import numpy as np
import pytest
from site_support import SMARTLOGGER, cleanup, cli

from smartlogger.analysis.inputs import parse_datasheet_csv
from smartlogger.cli.watch import _span_for_test
from smartlogger.field.live import (
    LEAD_ACID_SPAN_V_PER_CELL,
    LiveWatch,
    RateCurve,
    WatchOptions,
    predict_end,
    predict_end_span,
    settled_slope,
    span_for_rate,
)
from smartlogger.protocol.live import COMPANY_ID, KitKey, LiveAdvert, LiveState, tag_for_test
from smartlogger.testinfo import BatteryInfo, TestInfo

KEY = KitKey(bytes(range(16)))
OTHER = KitKey(bytes(16))


def _adv(pos: int, seq: int, t_ds: int, mv: int, *, key: KitKey = KEY, test_id: str = "T1",
         state: LiveState = LiveState.DISCHARGE) -> dict[int, bytes]:
    a = LiveAdvert(state, False, key.key_id, tag_for_test(test_id), pos, seq, t_ds, mv, 250)
    return {COMPANY_ID: a.sealed(key).to_bytes()}


def _watch(**kw: Any) -> LiveWatch:
    return LiveWatch(KEY, WatchOptions(end_v=10.5, test_id="T1", current_a=50.0, blocks=3, **kw))


def test_adverts_are_checked_and_replays_forgeries_and_neighbours_are_counted_not_shown() -> None:
    w = _watch()
    assert w.receive(_adv(1, 5, 100, 12000, state=LiveState.FLOAT), "A", 10_000, 0.0) == "accepted"
    assert w.receive(_adv(1, 5, 100, 12000, state=LiveState.FLOAT), "A", 10_500, 0.1) == "repeat"
    assert w.receive(_adv(1, 6, 110, 11900), "A", 11_000, 0.2) == "accepted"
    assert w.receive(_adv(1, 5, 100, 12000), "X", 11_100, 0.3) == "replay"
    forged = bytearray(_adv(1, 99, 120, 12000)[COMPANY_ID])
    forged[16:18] = (9000).to_bytes(2, "little")  # the voltage, MAC left as it was
    assert w.receive({COMPANY_ID: bytes(forged)}, "X", 11_200, 0.4) == "bad_mac"
    assert w.receive(_adv(1, 100, 130, 9000, key=OTHER), "N", 11_300, 0.5) == "foreign_kit"
    assert w.receive(_adv(1, 101, 140, 9000, test_id="T2"), "A", 11_400, 0.6) == "other_test"
    assert w.receive({COMPANY_ID: b"\x01\x02"}, "X", 11_500, 0.7) == "malformed"
    assert w.receive({0x004C: b"\x02\x15"}, "X", 11_500, 0.7) == "none"
    assert w.rejected == {"replay": 1, "bad_mac": 1, "foreign_kit": 1, "other_test": 1, "malformed": 1}
    snap = w.snapshot(11_600, 0.8)
    assert [b["v"] for b in snap["blocks"]] == [11.9]
    assert snap["alarm"] is None and snap["missing"] == [2, 3]


def test_time_lines_elapsed_delivered_ah_stale_and_the_end_alarm() -> None:
    w = _watch(guard_v=0.1, stale_s=5.0)
    # two loggers tapped at different times: times since tap differ, the phone time is shared
    w.receive(_adv(1, 1, 1000, 13500, state=LiveState.FLOAT), "A", 1_000_000, 0.0)
    w.receive(_adv(2, 1, 400, 13500, state=LiveState.FLOAT), "B", 1_000_000, 0.0)
    w.receive(_adv(1, 2, 1010, 12200), "A", 1_001_000, 1.0)  # load step between 1000 and 1001 s
    w.receive(_adv(2, 2, 410, 12200), "B", 1_001_200, 1.0)  # heard 0.2 s late
    assert w.start_ms == pytest.approx(1_000_500)
    for k in range(1, 3600):  # an hour at 50 A
        w.receive(_adv(1, 2 + k, 1010 + 10 * k, 12200 - k // 3), "A", 1_001_000 + 1000 * k, 1.0 + k)
    snap = w.snapshot(1_001_000 + 3600 * 1000, 3601.0)
    assert snap["elapsed_s"] == pytest.approx(3599.5, abs=0.01)  # to the newest sample
    assert snap["delivered_ah"] == pytest.approx(50.0 * 3599.5 / 3600, abs=1e-3)
    assert snap["stale"] == [2]  # not heard for an hour of wall time
    assert snap["alarm"] is None
    w.receive(_adv(1, 5000, 1010 + 36_000, 10_600), "A", 1_001_000 + 3_600_000, 3601.5)
    alarm = w.snapshot(1_001_000 + 3_601_000, 3602.0)["alarm"]
    assert alarm is not None and alarm["position"] == 1 and alarm["mv"] == 10_600  # in the guard band
    assert alarm["sample_ms"] == 1_001_000 + 3_600_000


def test_the_load_step_is_bounded_by_every_block_not_each_block_alone() -> None:
    # float samples far apart (a site at 60x: 600 site s), staggered over the blocks; load at 1550 s
    w = _watch()
    blocks = ((1, 1000, 1560), (2, 1300, 1580), (3, 1500, 1600))
    for pos, last_float_s, _ in blocks:
        w.receive(_adv(pos, 1, last_float_s * 10, 13500, state=LiveState.FLOAT), "A", last_float_s * 1000, 0.0)
    for pos, _, first_discharge_s in blocks:
        w.receive(_adv(pos, 2, first_discharge_s * 10, 12200), "A", first_discharge_s * 1000, 0.0)
    # after the last float sample of any block (1500 s), before the first discharge sample (1560 s);
    # each block's own midpoint, the earliest, would say 1280 s
    assert w.start_ms == pytest.approx(1_530_000)


def test_prediction_of_a_shepherd_curve_and_refusal_without_data() -> None:
    T, a, b, c = 5000.0, 12.2, 1.2e-4, 0.05
    tau = np.arange(0.0, 2600.0, 10.0)
    x = tau / T
    v = np.round(a - b * tau - c * x / (1 - x), 3)
    fine = np.arange(0.0, T, 0.5)
    xf = fine / T
    truth = fine[np.nonzero(a - b * fine - c * xf / (1 - xf) <= 10.5)[0][0]]
    r = predict_end(tau, v, 10.5)
    assert r is not None and abs(r[0] - truth) / truth < 0.02
    assert predict_end(tau[:5], v[:5], 10.5) is None  # too little to stand behind


def test_span_rule_finds_the_settled_decline_under_the_polarisation_transient() -> None:
    tau = np.arange(0.0, 4000.0, 5.0)
    b = 1.0e-4  # V/s once settled
    v = np.round(12.1 - b * tau - 0.15 * (1 - np.exp(-tau / 900.0)), 3)  # slow polarisation
    slope = settled_slope(tau, v)
    assert slope is not None and slope == pytest.approx(b, rel=0.02)
    assert predict_end_span(tau, v, 0.183 * 6) == pytest.approx(0.183 * 6 / b, rel=0.02)
    flat = np.full_like(tau, 12.0)
    assert predict_end_span(tau, flat, 1.1) is None  # no decline: no end to predict


def test_the_span_falls_with_the_capacity_at_the_rate() -> None:
    curve = RateCurve.typical_vrla(100.0)  # 100 Ah at 10 h; 77.52 A for 1 h, 44.96 A for 2 h
    S = LEAD_ACID_SPAN_V_PER_CELL
    assert span_for_rate(curve, 10.0) == pytest.approx(S)  # the 10-h rate: the span as it is
    assert span_for_rate(curve, 5.0) == pytest.approx(S)  # slower: never more than the span
    assert span_for_rate(curve, 20.0) == pytest.approx(S)  # the 5-h rate: the table's flat part
    assert span_for_rate(curve, 77.52) == pytest.approx(S * 77.52 / 100.0, rel=1e-6)  # 1 h: 77.5 Ah
    assert span_for_rate(curve, 44.96) == pytest.approx(S * 89.92 / 100.0, rel=1e-6)  # 2 h: 89.9 Ah
    assert S * 0.7752 < span_for_rate(curve, 50.0) < S * 0.8992  # between, log-log
    # the same rate relative to the capacity gives the same span
    assert span_for_rate(RateCurve.typical_vrla(200.0), 100.0) == pytest.approx(span_for_rate(curve, 50.0))
    # a datasheet at the end voltage: its own capacities (this synthetic table: none lost to rate)
    sheet = parse_datasheet_csv((Path(__file__).parent / "data" / "datasheet_synthetic_12v100.csv").read_text())
    flat = RateCurve.from_datasheet(sheet, 1.75)
    assert span_for_rate(flat, 50.0) == pytest.approx(S) and span_for_rate(flat, 100.0) == pytest.approx(S)
    with pytest.raises(ValueError):
        RateCurve((3600.0, 7200.0), (10.0, 20.0))  # a longer discharge at a higher rate


def test_a_faster_test_predicts_the_same_decline_ending_sooner() -> None:
    # two watches of the same block, one told the span of a 1-h rate: the end comes that much earlier
    ends = []
    for span in (LEAD_ACID_SPAN_V_PER_CELL, span_for_rate(RateCurve.typical_vrla(100.0), 77.52)):
        w = LiveWatch(KEY, WatchOptions(end_v=10.5, test_id="T1", current_a=77.52, blocks=1, cells=6,
                                        span_v_per_cell=span), predict_budget_s=None)
        w.receive(_adv(1, 1, 0, 12800, state=LiveState.FLOAT), "A", 1_000_000, 0.0)
        for k in range(1, 120):  # 20 min, 0.3 mV/s once settled
            mv = round(12200 - 0.3 * 10 * k - 150 * (1 - np.exp(-10 * k / 600)))
            w.receive(_adv(1, 1 + k, 100 * k, mv), "A", 1_000_000 + 10_000 * k, 0.0)
        snap = w.snapshot(1_000_000 + 10_000 * 119, 1.0)
        ends.append(snap["blocks"][0]["predicted_end_ms"] - snap["discharge_start_ms"])
        assert w.record()["options"]["span_v_per_cell"] == pytest.approx(span, abs=1e-4)
    assert ends[0] == pytest.approx(LEAD_ACID_SPAN_V_PER_CELL * 6 / 0.3e-3 * 1000, rel=0.03)
    assert ends[1] / ends[0] == pytest.approx(0.7752, rel=1e-3)


def test_the_watch_takes_the_span_from_the_test_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    S = LEAD_ACID_SPAN_V_PER_CELL
    rated = TestInfo(battery=BatteryInfo(chemistry="vrla", block_voltage_v=12, rated_ah=100))
    assert _span_for_test(rated, tmp_path, 1.75, 6, 77.52, None, 24) == pytest.approx(S * 0.7752)
    assert _span_for_test(rated, tmp_path, 1.75, 6, None, 4800.0, 24) is None  # power, no table in W
    assert _span_for_test(TestInfo(), tmp_path, 1.75, 6, 50.0, None, 24) is None  # nothing to go by
    (tmp_path / "datasheet.csv").write_text("# unit: W/block\nend_v_per_cell,1h,2h,10h\n1.75,900,520,120\n")
    sheet = TestInfo(datasheet="datasheet.csv")
    # 24 blocks at 12.48 kW: 520 W/block, the table's 2-h rate (1040 Wh of 1200 at 10 h)
    assert _span_for_test(sheet, tmp_path, 1.75, 6, None, 12480.0, 24) == pytest.approx(S * 1040 / 1200)
    assert _span_for_test(sheet, tmp_path, 1.75, 6, 50.0, None, 24) is None  # a current on a W table
    # a table that does not cover the end voltage, or is not there: the watch starts, with a warning
    assert _span_for_test(sheet, tmp_path, 1.60, 6, None, 12480.0, 24) is None
    assert "1.600 V/cell is outside the datasheet's end voltages" in capsys.readouterr().err
    assert _span_for_test(TestInfo(datasheet="gone.csv"), tmp_path, 1.75, 6, 50.0, None, 24) is None
    assert "datasheet gone.csv is not in the folder" in capsys.readouterr().err


# --------------------------------------------------------------------------- across processes


def _lines(stream: IO[str]) -> queue.Queue[str | None]:
    q: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        for line in stream:
            q.put(line)
        q.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return q


def _next_json(q: queue.Queue[str | None], deadline: float, what: str) -> dict[str, Any]:
    left = deadline - time.monotonic()
    if left <= 0:
        raise AssertionError(f"timed out waiting for {what}")
    try:
        line = q.get(timeout=left)
    except queue.Empty:
        raise AssertionError(f"timed out waiting for {what}") from None
    if line is None:
        raise AssertionError(f"the process ended before {what}")
    return dict(json.loads(line))


def test_a_discharge_watched_from_another_process_alarms_on_the_weak_block_and_ignores_a_spoofer(
        tmp_path: Path) -> None:
    site, folder, kit = tmp_path / "site", tmp_path / "test", tmp_path / "kit.key"
    speed = 150.0
    with cleanup(site):
        cli("sim", "site", "start", str(site), "--blocks", "4", "--weak", "1", "--speed", str(speed))
        cli("nfc", "program", "--site", str(site), "--count", "4", "--test-id", "UPS-A",
            "--kit-key", str(kit), "--json")
        status = json.loads(cli("sim", "site", "status", str(site), "--json").stdout)
        truth0 = json.loads(cli("sim", "site", "truth", str(site), "--json").stdout)
        weak = [b["position"] for b in truth0["blocks"] if b["weak"]]
        healthy = next(b["position"] for b in truth0["blocks"] if not b["weak"])
        watcher = subprocess.Popen(
            [SMARTLOGGER, "test", "watch", "--site", str(site), "--kit-key", str(kit), "--test-id", "UPS-A",
             "--end-voltage", "1.75V/cell", "--cells", "6", "--load", "80A", "--blocks", "4", "--json",
             "--stop-after-alarm", "--duration", "90", "--folder", str(folder)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        spoofer = None
        try:
            assert watcher.stdout is not None
            q = _lines(watcher.stdout)
            deadline = time.monotonic() + 60
            while _next_json(q, deadline, "all four blocks on the watcher")["blocks_seen"] < 4:
                pass
            spoofer = subprocess.Popen(
                [sys.executable, "-m", "smartlogger.testing.spoofer", status["ble_transport"],
                 "--position", str(healthy), "--duration", "90"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            assert spoofer.stdout is not None
            ready = _next_json(_lines(spoofer.stdout), time.monotonic() + 30, "the spoofer")
            assert ready["ready"] and ready["replayed_seq"] < ready["genuine_seq"]
            cli("sim", "site", "load", str(site), "80A")
            last: dict[str, Any] = {}
            alarm_line: dict[str, Any] | None = None
            deadline = time.monotonic() + 90
            while True:
                try:
                    msg = _next_json(q, deadline, "the end alarm")
                except AssertionError as err:
                    if "ended" in str(err):
                        break
                    raise
                if msg["type"] == "alarm":
                    alarm_line = msg
                else:
                    last = msg
            assert watcher.wait(timeout=30) == 10, watcher.stderr.read() if watcher.stderr else ""
        finally:
            for proc in (watcher, spoofer):
                if proc is not None and proc.poll() is None:
                    proc.kill()
                    proc.wait()
        truth = json.loads(cli("sim", "site", "truth", str(site), "--json").stdout)["test"]
    # the right block: the first to reach its end voltage in the ground truth
    ends = [(b["time_to_end_s"], b["position"]) for b in truth["blocks"] if b["time_to_end_s"] is not None]
    first_s, first_pos = min(ends)
    assert first_pos in weak
    assert alarm_line is not None and alarm_line["position"] == first_pos
    # at about the right virtual time: the site steps every 0.25 s of wall time and the loggers
    # broadcast every 0.5 s of wall time (speed x 0.5 s of site time between two adverts)
    crossed_ms = truth["start_utc_ms"] + first_s * 1000
    tick_ms = speed * 0.5 * 1000
    assert -60_000 - tick_ms <= alarm_line["sample_ms"] - crossed_ms <= 2 * tick_ms + 60_000
    assert abs(last["discharge_start_ms"] - truth["start_utc_ms"]) <= 2 * tick_ms + 5_000
    # the spoofer was heard and ignored: nothing it sent is on screen
    assert last["rejected"].get("bad_mac", 0) >= 1
    assert last["rejected"].get("replay", 0) >= 1
    assert last["rejected"].get("foreign_kit", 0) >= 1
    row = next(b for b in last["blocks"] if b["position"] == healthy)
    assert row["min_v"] > 9.0 and row["seq"] < ready["forged_seq"]
    record = json.loads((folder / "watch.json").read_text())
    assert record["alarm"]["position"] == first_pos and record["rejected"] == last["rejected"]


def test_the_live_view_shows_every_block_the_alarm_and_the_rejected() -> None:
    from rich.console import Console

    from smartlogger.cli.watch import render

    w = _watch(stale_s=5.0)
    w.receive(_adv(1, 1, 1000, 13500, state=LiveState.FLOAT), "A", 1_000_000, 0.0)
    w.receive(_adv(1, 2, 1010, 12100), "A", 1_001_000, 1.0)
    w.receive(_adv(2, 1, 1010, 10400), "B", 1_001_000, 1.0)
    w.receive(_adv(2, 1, 1000, 9000), "X", 1_001_000, 1.0)  # a conflicting copy of seq 1
    console = Console(width=100, record=True)
    console.print(render(w.snapshot(1_002_000, 10.0)))
    text = console.export_text()
    assert "ALARM: block 2 at 10.400 V" in text
    assert "12.100" in text and "10.400" in text
    assert "stale: blocks 1, 2" in text and "missing: blocks 3" in text
    assert "conflict 1" in text


def test_predictions_are_spread_over_snapshots_within_their_budget() -> None:
    # budget 0: one fit per snapshot (the oldest due first), so a long string never holds the screen
    w = LiveWatch(KEY, WatchOptions(end_v=10.5, test_id="T1", current_a=20.0, blocks=6, cells=6),
                  predict_budget_s=0.0)
    full = LiveWatch(KEY, WatchOptions(end_v=10.5, test_id="T1", current_a=20.0, blocks=6, cells=6),
                     predict_budget_s=None)
    for lw in (w, full):
        for p in range(1, 7):
            lw.receive(_adv(p, 1, 0, 13500, state=LiveState.FLOAT), "A", 1_000_000, 0.0)
        for k in range(1, 80):
            for p in range(1, 7):
                lw.receive(_adv(p, 1 + k, 300 * k, 12200 - k * (3 if p == 4 else 2)), "A", 1_000_000 + 30_000 * k, 0.0)
    counts = []
    for _ in range(6):
        snap = w.snapshot(1_000_000 + 30_000 * 79, 1.0)
        counts.append(sum(b["predicted_end_ms"] is not None for b in snap["blocks"]))
    assert counts == [1, 2, 3, 4, 5, 6]
    ref = full.snapshot(1_000_000 + 30_000 * 79, 1.0)
    assert [b["predicted_end_ms"] for b in snap["blocks"]] == [b["predicted_end_ms"] for b in ref["blocks"]]
    assert snap["predicted_first_block"] == ref["predicted_first_block"] == 4
