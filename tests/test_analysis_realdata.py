"""Replay of a real lead-acid constant-current discharge (public data, not redistributed).

See ``smartlogger.testing.realdata`` for the data, why it is not committed (no licence) and the
independent reference (the voltage step and the last labelled row, trapezoid on the raw time
stamps). Skipped when neither ``$SMARTLOGGER_LEADACID_XLSX`` nor a local mirror is available.
"""

from __future__ import annotations

import numpy as np
import pytest

from smartlogger.testing import realdata


@pytest.fixture(scope="module")
def columns(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    path = realdata.find_workbook(tmp_path_factory.mktemp("realdata"))
    if path is None:
        pytest.skip("real lead-acid workbook not available (set SMARTLOGGER_LEADACID_XLSX)")
    return realdata.read_columns(path)


def test_replayed_discharge_delivered_ah_matches_trapezoid(columns: dict[str, np.ndarray]) -> None:
    t, v = columns["t_ms"], columns["volts"]
    on, last, ref_ah = realdata.reference(columns)
    assert v[on - 1] - v[on] > 0.1 and v[last + 1] - v[last] > 0.3  # the steps are really there
    r = realdata.analyse(columns)
    assert r.markers == ["REPLAYED"]
    # The load was cut at 10.45 V (1.742 V/cell), below the analysis' 1.70 V/cell end voltage.
    assert r.discharge.end_reason == "load_removed"
    # Found from the load steps the voltage shows, not the start-voltage threshold.
    assert r.discharge.start_method == "voltage_step" and r.discharge.end_method == "voltage_step"
    assert abs(r.discharge.start_ms - t[on]) <= 5000
    assert abs(r.discharge.end_ms - t[last]) <= 5000
    print(f"replay: analysis {r.discharge.delivered_ah:.3f} Ah, trapezoid reference {ref_ah:.3f} Ah")
    assert r.discharge.delivered_ah == pytest.approx(ref_ah, rel=0.01)
    b = r.blocks[0]
    assert b.delivered_ah == pytest.approx(ref_ah, rel=0.01)
    assert b.min_voltage_v == pytest.approx(float(v[on:last + 1].min()), abs=0.01)
    assert b.clock.uncertainty_ms is None  # no tap/pull: the recorder's clock is the time base
    assert b.temperature_c == pytest.approx(float(columns["temp_c"][on:on + 12].mean()), abs=0.2)
    # The load-on step gives the block's resistance (10 A into a 100 Ah block: a few mOhm).
    assert b.resistance_mohm is not None and 1.0 < b.resistance_mohm < 30.0


def test_the_same_discharge_from_a_csv_trace_sorted_and_replayed(columns: dict[str, np.ndarray]) -> None:
    """The trace as two instruments would export it (voltage and temperature rows merged by time
    stamp, a few of them up to 0.1 s out of order, ISO time stamps) goes through ``device
    replay``'s reader and the firmware, and gives the same Ah."""
    from smartlogger.analysis.analyze import analyze_test
    from smartlogger.analysis.inputs import ConstantCurrent, TestMetadata, block_log_from_records
    from smartlogger.device.replay import TraceFormat, read_trace, replay_trace

    t, v, c = columns["t_ms"], columns["volts"], columns["temp_c"]
    on, last, ref_ah = realdata.reference(columns)
    lo, hi = max(on - 720, 0), min(last + 240, t.size)
    iso = np.datetime_as_string(t[lo:hi].astype("datetime64[ms]"), unit="ms")
    rows = [f"{s}Z,{x:.4f}," for s, x in zip(iso.tolist(), v[lo:hi].tolist(), strict=True)]
    # temperature on its own rows, stamped 0.1 s early every 50th row: out of order by 0.1 s
    t_iso = np.datetime_as_string((t[lo:hi] - 100).astype("datetime64[ms]"), unit="ms")
    for k in range(0, hi - lo, 50):
        rows.insert(k + k // 50 + 1, f"{t_iso[k]}Z,,{c[lo + k]:.2f}")
    text = "time,voltage,temperature\n" + "\n".join(rows) + "\n"
    trace = read_trace(text.encode(), TraceFormat(temperature_column="temperature"), name="bench.csv")
    assert trace.reordered > 0 and trace.max_disorder_s <= 0.1 + 1e-9
    lg = replay_trace(trace, serial="REPLAY-UB121000", rated_ah=100.0).logger
    log = block_log_from_records(lg.identity, lg.store.records(), config=lg.config.with_changes(block_position=1))
    r = analyze_test([log], TestMetadata(ConstantCurrent(10.0), end_v_per_cell=1.70))
    assert r.discharge.start_method == "voltage_step"
    assert abs(r.discharge.start_ms - t[on]) <= 6000
    assert r.discharge.delivered_ah == pytest.approx(ref_ah, rel=0.01)
