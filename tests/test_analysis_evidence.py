"""Discharge start and end from all the evidence, on the firmware model over the battery model:
from rest at C/20 (the threshold alone is an hour late), a paused and resumed test, a load bank
cutting off at the end voltage, a load file with clock time stamps (its clock a little off) and
the load files that cannot be used."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from smartlogger.analysis.analyze import analyze_test
from smartlogger.analysis.inputs import (
    BlockLog,
    ConstantCurrent,
    LoadCsvFormat,
    MetadataError,
    TestMetadata,
    block_log_from_records,
    read_load_csv,
)
from smartlogger.device.firmware import Logger
from smartlogger.device.load import CurrentProfile as DeviceProfile
from smartlogger.device.sim import SimulatedTest, simulate_string_test
from smartlogger.errors import InputFileError
from smartlogger.quantities import parse_voltage


def _pulled(logger: Logger, start_ms: int) -> BlockLog:
    phone_ms = start_ms + round(logger.true_s * 1000)
    return block_log_from_records(logger.identity, logger.store.records(), pull=(logger.now_ms(), phone_ms))


def _truth(st: SimulatedTest) -> tuple[float, float, float]:
    """Load on, load off (true ms) and delivered Ah of the battery model."""
    tr = st.trace
    on = st.start_ms + tr.load_on_s * 1000.0
    off = st.start_ms + tr.load_off_s * 1000.0
    i = np.clip(tr.current_a, 0.0, None)
    return on, off, float(np.sum(i) * tr.dt_s / 3600.0)


def test_from_rest_at_c20_the_load_step_not_the_threshold() -> None:
    st = simulate_string_test(6, weak=0, load="5A", seed=7, from_rest=True, max_duration_s=5400.0)
    on, off, ah = _truth(st)
    r = analyze_test([_pulled(lg, st.start_ms) for lg in st.loggers], TestMetadata(ConstantCurrent(5.0)))
    d = r.discharge
    assert d.start_method == "voltage_step" and abs(d.start_ms - on) <= 2000
    assert d.end_method == "voltage_step" and abs(d.end_ms - off) <= 2000
    assert d.delivered_ah == pytest.approx(ah, rel=0.005)
    by = {(e.what, e.source): e for e in d.evidence}
    assert not by[("start", "threshold")].used
    ev = by[("start", "firmware_event")]
    assert ev.time_ms is not None and 0 <= ev.time_ms - on <= 120_000 and not ev.used
    assert by[("start", "voltage_step")].used and "6 of 6 blocks stepped down together" in by[
        ("start", "voltage_step")].detail


def test_pause_and_resume_is_one_test_with_its_pause_not_counted() -> None:
    prof = DeviceProfile(np.array([0.0, 1800.0, 1800.001, 2100.0, 2100.001, 40000.0]),
                         np.array([25.0, 25.0, 0.0, 0.0, 25.0, 25.0]))
    st = simulate_string_test(6, weak=1, load=prof, seed=11)
    on, off, ah = _truth(st)
    r = analyze_test([_pulled(lg, st.start_ms) for lg in st.loggers],
                     TestMetadata(ConstantCurrent(25.0), rated_time_s=4 * 3600.0))
    d = r.discharge
    assert abs(d.start_ms - on) <= 2000 and abs(d.end_ms - off) <= 3000
    assert len(d.interruptions) == 1
    pause = d.interruptions[0]
    assert abs(pause.start_ms - (on + 1800_000)) <= 3000 and pause.duration_s == pytest.approx(300, abs=3)
    assert d.load_time_s == pytest.approx(d.duration_s - pause.duration_s, abs=0.01)
    assert d.delivered_ah == pytest.approx(ah, rel=0.005)
    assert any("interruption" in w for w in r.warnings)


def test_load_bank_cut_off_at_the_end_voltage() -> None:
    st = simulate_string_test(6, weak=0, load="50A", seed=2)
    _, off, ah = _truth(st)
    r = analyze_test([_pulled(lg, st.start_ms) for lg in st.loggers], TestMetadata(ConstantCurrent(50.0)))
    d = r.discharge
    assert d.end_reason == "end_voltage" and abs(d.end_ms - off) <= 2000
    assert d.delivered_ah == pytest.approx(ah, rel=0.005)


def _clock_csv(st: SimulatedTest, *, clock_error_s: float, zone: str, scale: float = 1.0) -> bytes:
    """The load bank's log: local clock time stamps (its clock ``clock_error_s`` off), one row
    every 10 s, decimal commas, semicolons."""
    tr = st.trace
    rows = ["Load bank log;;", "Zeit;Strom [A];Spannung [V]"]
    tz = ZoneInfo(zone)
    for k in range(0, tr.t_s.size, 10):
        when = datetime.fromtimestamp(st.start_ms / 1000.0 + tr.t_s[k] + clock_error_s, UTC).astimezone(tz)
        amps = f"{tr.current_a[k] * scale:.2f}".replace(".", ",")
        volts = f"{tr.string_v[k]:.1f}".replace(".", ",")
        rows.append(f"{when.strftime('%d.%m.%Y %H:%M:%S')};{amps};{volts}")
    return ("\n".join(rows) + "\n").encode("cp1252")


def test_load_csv_with_clock_times_is_aligned_by_time_and_its_clock_error_found() -> None:
    st = simulate_string_test(4, weak=0, load="40A", seed=4, max_duration_s=3600.0)
    on, _, ah = _truth(st)
    logs = [_pulled(lg, st.start_ms) for lg in st.loggers]
    data = _clock_csv(st, clock_error_s=-45.0, zone="Europe/Berlin")
    fmt = LoadCsvFormat(time_column="Zeit", timezone="Europe/Berlin")
    prof = read_load_csv(data, fmt, name="loadbank.csv")
    assert prof.origin_ms is not None and prof.source == "loadbank.csv"
    r = analyze_test(logs, TestMetadata(prof))
    d = r.discharge
    assert d.start_method == "voltage_step" and abs(d.start_ms - on) <= 2000
    assert d.load_shift_s == pytest.approx(45.0, abs=6.0)
    assert any("loadbank.csv: its load came on" in w for w in r.warnings)
    assert d.delivered_ah == pytest.approx(ah, rel=0.01)
    # without the zone the stamps cannot be placed: refused with the option to give
    with pytest.raises(Exception, match="--load-timezone"):
        read_load_csv(data, LoadCsvFormat(time_column="Zeit"), name="loadbank.csv")
    # a file from another day does not overlap the logs
    other = read_load_csv(_clock_csv(st, clock_error_s=86400.0, zone="UTC"),
                          LoadCsvFormat(time_column="Zeit", timezone="UTC"), name="other.csv")
    with pytest.raises(MetadataError, match=r"other\.csv has the load on .* do not overlap"):
        analyze_test(logs, TestMetadata(other))
    # a load that never came on
    with pytest.raises(InputFileError, match=r"off\.csv, column 'current_a': the load never came on"):
        read_load_csv(b"t_s,current_a\n0,0\n60,0\n", name="off.csv")


def test_end_voltage_per_cell_block_or_string_is_the_same_test() -> None:
    st = simulate_string_test(4, weak=1, load="40A", seed=9)
    logs = [_pulled(lg, st.start_ms) for lg in st.loggers]
    results = [analyze_test(logs, TestMetadata(ConstantCurrent(40.0), end_voltage=parse_voltage(text)))
               for text in ("1.8V/cell", "10.8V/block", "43.2V/string")]
    assert [r.discharge.end_v_per_cell for r in results] == pytest.approx([1.8, 1.8, 1.8])
    assert len({r.discharge.end_ms for r in results}) == 1
    with pytest.raises(MetadataError, match=r"10\.8V/string"):
        analyze_test(logs, TestMetadata(ConstantCurrent(40.0), end_voltage=parse_voltage("10.8V/string")))
