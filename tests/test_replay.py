"""Replay of recorded CSV traces: blank cells, units, time formats, and errors that name
the line and column."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from smartlogger.device.replay import TraceFormat, read_trace, replay_trace
from smartlogger.errors import ConfigError, InputFileError
from smartlogger.model import Event, EventKind, SampleBlock

# A discharge recorded by a bench meter: voltage and temperature on separate rows,
# a comment line, blank lines, a current column that is only filled when it changes.
TRACE = """\
# bench log, block 7
time,U [V],T [C],I [A]
2026-03-02T08:00:00Z,13.60,,0
2026-03-02T08:00:00Z,,24.0,
2026-03-02T08:00:30Z,13.61,,

2026-03-02T08:01:00Z,,25.0,
2026-03-02T08:02:00Z,13.60,,
2026-03-02T08:02:01Z,12.30,,20
2026-03-02T08:30:00Z,11.90,26.0,
2026-03-02T09:00:00Z,11.00,,
2026-03-02T09:00:01Z,11.60,,0
2026-03-02T09:10:00Z,11.80,27.0,
"""

FMT = TraceFormat(time_column="time", voltage_column="U [V]", temperature_column="T [C]",
                  current_column="I [A]", time_format="iso")


def write(tmp_path: Path, text: str, name: str = "trace.csv") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_blank_cells_interpolated(tmp_path: Path) -> None:
    tr = read_trace(write(tmp_path, TRACE), FMT)
    assert tr.rows == 10
    assert tr.start_ms == 1_772_438_400_000
    assert tr.t_s.tolist() == [0, 30, 120, 121, 1800, 3600, 3601, 4200]
    assert tr.line_of[:3] == [3, 5, 8]
    # temperature rows 24.0 @0 s, 25.0 @60 s, 26.0 @1800 s: interpolated onto voltage rows
    assert tr.temp_c[0] == pytest.approx(24.0)
    assert tr.temp_c[1] == pytest.approx(24.5)
    assert tr.temp_c[2] == pytest.approx(25.0 + 60 / 1740)
    assert tr.temp_c[-1] == pytest.approx(27.0)
    assert tr.current_a is not None and tr.current_a[3] == pytest.approx(20.0)


def test_replay_marks_replayed_and_keeps_recorded_times(tmp_path: Path) -> None:
    res = replay_trace(read_trace(write(tmp_path, TRACE), FMT))
    lg = res.logger
    assert lg.identity.replayed and not lg.identity.simulated
    assert lg.identity.markers == ("REPLAYED",)
    recs = [r for _, r in lg.store.records()]
    start = next(r for r in recs if isinstance(r, Event) and r.kind is EventKind.DISCHARGE_START)
    end = next(r for r in recs if isinstance(r, Event) and r.kind is EventKind.DISCHARGE_END)
    # the load step at 08:02:01 is detected after 3 debounce ticks, on the recorded clock
    assert start.t_ms == 1_772_438_400_000 + 123_000
    assert end.t_ms == 1_772_438_400_000 + 3660_000
    assert end.value == 11000
    blocks = [r for r in recs if isinstance(r, SampleBlock)]
    first = blocks[0]
    assert first.start_ms == 1_772_438_400_000 and first.mv[0] == 13600 and first.dc[0] == 240


def test_millivolts_fahrenheit_seconds_and_strptime(tmp_path: Path) -> None:
    text = "t;mv;temp_f\n0;13600;77\n60;13590;\n120;13580;79\n"
    p = write(tmp_path, text)
    tr = read_trace(p, TraceFormat(time_column="t", voltage_column="mv", voltage_unit="mV",
                                   temperature_column="temp_f", temperature_unit="F", delimiter=";"))
    assert tr.volts.tolist() == [13.6, 13.59, 13.58]
    assert tr.temp_c[0] == pytest.approx(25.0) and tr.temp_c[1] == pytest.approx(25.5555, abs=1e-3)
    assert tr.start_ms is None
    custom = write(tmp_path, "when,v\n02.03.2026 08:00:00,13.6\n02.03.2026 08:01:00,13.6\n", "c.csv")
    tr2 = read_trace(custom, TraceFormat(time_column="when", voltage_column="v", time_format="%d.%m.%Y %H:%M:%S"))
    assert tr2.start_ms == 1_772_438_400_000 and tr2.t_s.tolist() == [0.0, 60.0]


@pytest.mark.parametrize(("text", "fmt", "line", "column", "words"), [
    ("time,voltage\n0,13.6\n60,13.6\n30,13.5\n", TraceFormat(), 4, "time", "backwards"),
    ("time,volts\n0,13.6\n", TraceFormat(), 1, "voltage", "missing column"),
    ("time,voltage\n0,13.6\n60,13.6x\n", TraceFormat(), 3, "voltage", "not a number"),
    ("time,voltage\n0,13.6\n60,abc\n", TraceFormat(), 3, "voltage", "not a number"),
    ("time,voltage\n0,13600\n60,13600\n", TraceFormat(), 2, "voltage", "looks like millivolts"),
    ("time,voltage\n0,13.6\n60,13.6\n", TraceFormat(voltage_unit="mV"), 2, "voltage", "looks like volts"),
    ("time,voltage\n0,13.6\nnoon,13.6\n", TraceFormat(), 3, "time", "time format"),
    ("time,voltage\n0,13.6\n,13.6\n", TraceFormat(), 3, "time", "blank"),
    ("time,voltage,t\n0,13.6,25\n60,13.6,212\n", TraceFormat(temperature_column="t"), 3, "t", "wrong unit"),
])
def test_errors_name_line_and_column(tmp_path: Path, text: str, fmt: TraceFormat, line: int,
                                     column: str, words: str) -> None:
    p = write(tmp_path, text)
    with pytest.raises(InputFileError) as ei:
        read_trace(p, fmt)
    err = ei.value
    assert (err.line, err.column) == (line, column), str(err)
    assert words in err.message
    assert str(p) in str(err) and f"line {line}" in str(err)


def test_too_few_rows_and_empty_file(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="at least two"):
        read_trace(write(tmp_path, "time,voltage\n0,13.6\n0,\n"), TraceFormat())
    with pytest.raises(InputFileError, match="empty"):
        read_trace(write(tmp_path, ""), TraceFormat())


def test_bad_format_options() -> None:
    with pytest.raises(ConfigError) as ei:
        TraceFormat(voltage_unit="kV")
    assert ei.value.field == "voltage_unit"


def test_unit_inference_of_block_class(tmp_path: Path) -> None:
    t = np.arange(0, 600, 60)
    rows = "\n".join(f"{x},{2.27:.2f}" for x in t)
    tr = read_trace(write(tmp_path, "time,voltage\n" + rows + "\n"), TraceFormat())
    assert replay_trace(tr).logger.config.block_type.nominal_mv == 2000
