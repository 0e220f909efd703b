"""Workbooks read back with openpyxl: sheets, values, fills, chart ranges and colours."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from openpyxl import load_workbook

from smartlogger.errors import ExportError
from smartlogger.export import logger_workbook as lw
from smartlogger.export.charts import ALARM_COLOUR, WARNING_COLOUR
from smartlogger.export.check import check_workbook, inspect_workbook
from smartlogger.export.data import write_samples, write_samples_many
from smartlogger.export.examples import (
    ExampleTest,
    example_longterm,
    example_string_test,
    example_thresholds,
)
from smartlogger.export.inputs import LoggerSamples
from smartlogger.export.logger_workbook import write_logger_workbook
from smartlogger.export.longterm import daily_rows, write_longterm_workbook
from smartlogger.export.string_report import align_blocks, write_string_report
from smartlogger.export.timeaxis import SiteTime
from smartlogger.model import Thresholds

BERLIN = "Europe/Berlin"


@pytest.fixture(scope="module")
def small_test() -> ExampleTest:
    # 3 blocks, 5 min float + 20 min discharge at 1 Hz: small enough to read back quickly.
    return example_string_test(3, duration_s=1200, pre_s=300)


def _rows(ws: Any) -> list[tuple[Any, ...]]:
    return [r for r in ws.iter_rows(values_only=True) if any(v is not None for v in r)]


def _find(ws: Any, label: str) -> Any:
    for r in ws.iter_rows():
        if r[0].value == label:
            return r
    raise AssertionError(f"no row {label!r}")


def test_logger_workbook_round_trip(tmp_path: Path, small_test: ExampleTest) -> None:
    s = small_test.series[2]
    exc = [e for e in small_test.exceedances if e.serial == s.identity.serial]
    assert {e.colour for e in exc} == {"yellow", "red"}
    out = write_logger_workbook(tmp_path / "logger.xlsx", s, exceedances=exc,
                                evidence=small_test.evidence[2], tz=BERLIN)
    assert check_workbook(out) == []
    wb = load_workbook(out)
    assert wb.sheetnames == ["Summary", "Charts", "Data", "Chart data"]
    assert wb["Chart data"].sheet_state == "hidden"

    summary = wb["Summary"]
    texts = [str(v) for r in _rows(summary) for v in r if v is not None]
    assert any("SIMULATED" in t and "not evidence" in t for t in texts)
    assert _find(summary, "Serial")[1].value == s.identity.serial
    assert _find(summary, "Time zone")[1].value == "Time (Europe/Berlin, UTC+01:00)"
    v_row = _find(summary, "Voltage (V)")  # first one: the threshold table
    assert [c.value for c in v_row[1:5]] == [10.5, 11.0, 14.1, 14.7]
    # Exceedance rows: yellow and red fills by the row's colour.
    fills = {}
    for r in summary.iter_rows():
        if r[0].value in ("yellow", "red"):
            fills[r[0].value] = r[0].fill.fgColor.rgb[-6:]
    assert fills == {"yellow": "FFEB84", "red": "FF7C80"}
    # simulated data: intact but not evidence -> yellow, never the green of hardware evidence
    assert _find(summary, "Verification")[1].fill.fgColor.rgb[-6:] == "FFEB84"
    assert _find(summary, "Evidence status")[1].value == "simulated"

    data = wb["Data"]
    rows = list(data.iter_rows(min_row=2, values_only=True))
    assert len(rows) == len(s.t_ms)
    got_v = np.array([r[1] for r in rows])
    got_c = np.array([r[2] for r in rows])
    got_t = np.array([r[3] for r in rows], dtype=np.int64)
    assert np.array_equal(np.round(got_v * 1000).astype(np.int64), s.mv)
    assert np.array_equal(np.round(got_c * 10).astype(np.int64), s.dc)
    assert np.array_equal(got_t, s.t_ms)
    # Local time column: 2026-03-14 is winter time in Berlin, UTC+1.
    first = rows[0][0]
    assert isinstance(first, dt.datetime)
    utc = dt.datetime(1970, 1, 1) + dt.timedelta(milliseconds=int(s.t_ms[0]))
    assert first == utc + dt.timedelta(hours=1)
    assert data.cell(1, 1).value == "Time (Europe/Berlin, UTC+01:00)"

    info = inspect_workbook(out)
    volt, temp = info.charts
    assert volt.kind == temp.kind == "scatter"
    assert volt.series[0].points <= lw.DEFAULT_CHART_POINTS
    colours = {x.title.split(" (")[0]: x.colour for x in volt.series[1:]}
    assert colours == {"warning low": WARNING_COLOUR, "warning high": WARNING_COLOUR,
                       "alarm low": ALARM_COLOUR, "alarm high": ALARM_COLOUR}
    assert all(x.dash == "dash" for x in volt.series[1:])
    # The voltage envelope keeps the extremes of the full data.
    env = [r[1] for r in wb["Chart data"].iter_rows(min_row=2, values_only=True) if r[1] is not None]
    assert min(env) == s.mv.min() / 1000 and max(env) == s.mv.max() / 1000


def test_chart_reduction_and_data_split(tmp_path: Path, small_test: ExampleTest,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    s = small_test.series[0]
    monkeypatch.setattr(lw, "DATA_ROWS_PER_SHEET", 600)
    out = write_logger_workbook(tmp_path / "split.xlsx", s, chart_points=200)
    wb = load_workbook(out, read_only=True)
    data_sheets = [n for n in wb.sheetnames if n.startswith("Data")]
    assert data_sheets == ["Data", "Data (2)", "Data (3)"]
    total = sum(wb[n].max_row - 1 for n in data_sheets)
    assert total == len(s.t_ms)
    info = inspect_workbook(out)
    assert info.charts[0].series[0].points <= 200
    assert check_workbook(out) == []


def test_threshold_change_is_a_step(tmp_path: Path, small_test: ExampleTest) -> None:
    s = small_test.series[0]
    mid = int(s.t_ms[len(s.t_ms) // 2])
    th2 = Thresholds(10800, 11500, 14100, 14700, 0, 50, 350, 450)
    s2 = LoggerSamples(s.identity, s.config, s.t_ms, s.mv, s.dc,
                       [(int(s.t_ms[0]) - 10_000, example_thresholds()), (mid, th2)])
    out = write_logger_workbook(tmp_path / "step.xlsx", s2)
    wb = load_workbook(out)
    info = inspect_workbook(out)
    low_alarm = next(x for x in info.charts[0].series if x.title.startswith("alarm low"))
    assert low_alarm.title == "alarm low (10.50/10.80 V)"
    ws = wb["Chart data"]
    col = ws[low_alarm.refs[0].split("!")[1].replace("$", "").split(":")[0][0]]
    ys = [c.value for c in col[1:] if c.value is not None]
    assert ys == [10.5, 10.5, 10.8, 10.8]
    assert check_workbook(out) == []


def test_string_report(tmp_path: Path, small_test: ExampleTest) -> None:
    t = small_test
    out = write_string_report(tmp_path / "report.xlsx", t.outcome, t.series,
                              exceedances=t.exceedances, evidence=t.evidence,
                              tz=BERLIN, resolution_s=10)
    assert check_workbook(out) == []
    wb = load_workbook(out)
    assert wb.sheetnames == ["Summary", "Overview", "Exceedances", "Data", "Evidence",
                             "B001 SIM-0001", "B002 SIM-0002", "B003 SIM-0003", "Chart data"]
    summary = wb["Summary"]
    assert _find(summary, "Result")[1].value == t.outcome.result
    assert _find(summary, "Weakest blocks (position)")[1].value.startswith("3")
    header = _find(summary, "Position")
    first = header[0].row + 1
    ranges = {str(cf.sqref): [r.formula for r in cf.rules] for cf in summary.conditional_formatting}
    assert ranges[f"D{first}:D{first + 2}"] == [["80"], ["90"], ["90"]]
    assert f"I{first}:I{first + 2}" in ranges
    assert summary.cell(first + 2, 1).value == 3  # block 3 is the weak one
    assert summary.cell(first + 2, 4).value < 80

    data = wb["Data"]
    heads = [c.value for c in data[1]]
    assert heads[2:] == ["B001 SIM-0001 V", "B002 SIM-0002 V", "B003 SIM-0003 V",
                         "B001 SIM-0001 C", "B002 SIM-0002 C", "B003 SIM-0003 C"]
    span_s = (int(t.series[0].t_ms[-1]) - int(t.series[0].t_ms[0])) / 1000
    assert data.max_row - 1 == int(span_s // 10) + 1
    row = [c.value for c in data[12]]  # grid point 10 -> 100 s after start
    assert row[1] == 100.0
    s0 = t.series[0]
    assert row[2] == s0.mv[100] / 1000 and row[5] == s0.dc[100] / 10

    ev = _rows(wb["Evidence"])
    assert ev[1][:2] == ("Serial", "Logfile")
    assert ev[2][:2] == ("SIM-0001", "SIM-0001.slog") and ev[2][3] == "simulated"
    assert len(ev[2][2]) == 64

    info = inspect_workbook(out)
    bar = next(c for c in info.charts if c.kind == "bar")
    assert bar.series[0].points == 3
    overview = next(c for c in info.charts if c.sheet == "Overview" and c.kind == "scatter")
    assert len([x for x in overview.series if x.title.startswith("B00")]) == 3
    per_block = [c for c in info.charts if c.sheet.startswith("B00")]
    assert len(per_block) == 6


def test_bar_chart_limit_line_is_red(tmp_path: Path, small_test: ExampleTest) -> None:
    from zipfile import ZipFile

    t = small_test
    out = write_string_report(tmp_path / "r.xlsx", t.outcome, t.series)
    with ZipFile(out) as z:
        xml = [z.read(n).decode() for n in z.namelist() if n.startswith("xl/charts/")]
    bar = next(x for x in xml if "<barChart>" in x)
    line = bar[bar.index("<lineChart>"):]
    assert "80 % replacement limit" in line and 'val="FF0000"' in line


def test_align_blocks_zero_order_hold_and_gaps() -> None:
    s = example_string_test(2, duration_s=600, pre_s=0).series
    t = s[1].t_ms.copy()
    keep = (t < t[0] + 100_000) | (t > t[0] + 300_000)  # a 200 s hole in block 2
    s2 = LoggerSamples(s[1].identity, s[1].config, t[keep], s[1].mv[keep], s[1].dc[keep])
    grid, v, _c = align_blocks([s[0], s2], int(t[0]), int(t[-1]), 10_000)
    assert len(grid) == 61
    assert np.isnan(v[15, 1]) and not np.isnan(v[15, 0])
    assert v[5, 1] == s[1].mv[50] / 1000
    with pytest.raises(ExportError):
        align_blocks([s[0]], 0, 10, 0)


def test_longterm_workbook_and_daily(tmp_path: Path) -> None:
    lt = example_longterm(1.2, rate_s=600)
    s = lt.samples
    assert s is not None
    rows = daily_rows(s, BERLIN)
    frame = pd.DataFrame({"t": pd.to_datetime(s.t_ms, unit="ms", utc=True).tz_convert(BERLIN),
                          "mv": s.mv, "dc": s.dc})
    g = frame.groupby(frame.t.dt.date)
    assert len(rows) == len(g)
    assert [r.mv_min for r in rows] == g.mv.min().tolist()
    assert [r.dc_max for r in rows] == g.dc.max().tolist()
    assert np.allclose([r.mv_mean for r in rows], g.mv.mean().to_numpy())
    assert [r.count for r in rows] == g.size().tolist()
    # day starts are local midnights
    assert all(SiteTime(BERLIN).local_datetime(r.day_start_ms).time() == dt.time(0) for r in rows)

    lt.daily = rows
    out = write_longterm_workbook(tmp_path / "lt.xlsx", lt, tz=BERLIN)
    assert check_workbook(out) == []
    wb = load_workbook(out)
    assert wb.sheetnames == ["Summary", "Daily chart", "Daily", "Events", "Discharges", "Chart data"]
    assert wb["Daily"].max_row == len(rows) + 1
    events = _rows(wb["Events"])
    warn = next(r for r in wb["Events"].iter_rows() if r[1].value == "enter warning")
    assert warn[0].fill.fgColor.rgb[-6:] == "FFEB84"
    assert len(events) == 2 + len(lt.events)
    assert len(_rows(wb["Discharges"])) == 2 + len(lt.discharges)
    info = inspect_workbook(out)
    assert len(info.charts) == 2 and all(len(c.series) == 7 for c in info.charts)


def test_samples_csv_and_parquet(tmp_path: Path, small_test: ExampleTest) -> None:
    s = small_test.series[0]
    pq_path = write_samples(tmp_path / "s.parquet", s, tz=BERLIN)
    table = pq.read_table(pq_path)
    assert table.column("mv").to_numpy().tolist() == s.mv.tolist()
    assert table.column("t_ms").to_numpy().tolist() == s.t_ms.tolist()
    assert b"SIMULATED" in table.schema.metadata[b"smartlogger"]
    csv_path = write_samples(tmp_path / "s.csv", s, tz=BERLIN)
    lines = csv_path.read_text().splitlines()
    assert lines[0].startswith("# smartlogger samples; loggers: SIM-0001; markers: SIMULATED")
    assert lines[1] == "time,voltage_v,temperature_c,t_ms"
    assert lines[2].endswith(f",{s.mv[0] / 1000},{s.dc[0] / 10},{s.t_ms[0]}")
    assert "+0100," in lines[2]
    many = write_samples_many(tmp_path / "all.parquet", small_test.series)
    t2 = pq.read_table(many)
    assert t2.num_rows == sum(len(x.t_ms) for x in small_test.series)
    assert set(t2.column("serial").to_pylist()) == {"SIM-0001", "SIM-0002", "SIM-0003"}
    with pytest.raises(ExportError, match="unknown data format"):
        write_samples(tmp_path / "s.txt", s)


def test_errors_name_the_problem(tmp_path: Path, small_test: ExampleTest) -> None:
    s = small_test.series[0]
    t = s.t_ms.copy()
    t[10] = t[8]
    bad = LoggerSamples(s.identity, s.config, t, s.mv, s.dc)
    with pytest.raises(ExportError, match=r"SIM-0001: sample 10 at .* is earlier than sample 9"):
        write_logger_workbook(tmp_path / "x.xlsx", bad)
    empty = LoggerSamples(s.identity, s.config, t[:0], s.mv[:0], s.dc[:0])
    with pytest.raises(ExportError, match="no samples"):
        write_logger_workbook(tmp_path / "x.xlsx", empty)
    with pytest.raises(ExportError, match="not a known time zone"):
        write_logger_workbook(tmp_path / "x.xlsx", s, tz="Mars/Olympus")
    with pytest.raises(ExportError, match="does not exist"):
        write_logger_workbook(tmp_path / "nodir" / "x.xlsx", s)
    with pytest.raises(ExportError, match="exceed Excel"):
        write_string_report(tmp_path / "x.xlsx", small_test.outcome, [s],
                            resolution_s=0.001)
    assert not list(tmp_path.glob("*.xlsx")) and not list(tmp_path.glob(".*tmp*"))


def test_dst_window_states_both_offsets() -> None:
    # 2026-03-29 is the spring DST change in Berlin.
    t0 = int(dt.datetime(2026, 3, 28, tzinfo=dt.UTC).timestamp() * 1000)
    site = SiteTime.parse(BERLIN)
    assert site.axis_title(t0, t0 + 3 * 86_400_000) == "Time (Europe/Berlin, UTC+01:00/+02:00)"
    serial = site.serial([t0, t0 + 2 * 86_400_000])
    # local midnight+1h on the 28th, +2h on the 30th
    assert serial[0] == pytest.approx(46109 + 1 / 24)
    assert serial[1] == pytest.approx(46111 + 2 / 24)
    assert SiteTime.parse(None).axis_title(0, 1) == "Time (UTC)"
