"""The logger workbook: one logfile as an Excel file with ready-made charts.

Owns ``write_logger_workbook`` and the per-logger chart block that the string
report reuses (``add_logger_charts``). Sheets:

- "Summary": identity with SIMULATED/REPLAYED banner, configuration and
  thresholds, time window (local time, offset stated), min/max/mean with the
  time they occurred, the exceedance table (yellow warning / red alarm) and the
  evidence status from verification.
- "Charts": voltage and temperature charts (native scatter charts, time on x),
  warning thresholds dashed orange, alarm thresholds dashed red.
- "Data": every sample at its stated resolution (split into "Data (2)", ...
  past Excel's 1,048,575 data rows).
- "Chart data" (hidden): the reduced series and threshold lines the charts plot.

Takes plain inputs (``export.inputs``); adapters from logfiles are in
``export.adapters``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from openpyxl import Workbook
from openpyxl.styles import PatternFill
from openpyxl.worksheet.pagebreak import Break

from smartlogger.compat.openpyxl import WriteOnlySheet
from smartlogger.errors import ExportError
from smartlogger.export import layout as L
from smartlogger.export.charts import (
    TEMPERATURE_COLOUR,
    VOLTAGE_COLOUR,
    ChartTable,
    ThresholdLine,
    add_line,
    add_threshold_lines,
    nice_range,
    threshold_lines_for,
    time_chart,
)
from smartlogger.export.inputs import (
    EvidenceRow,
    ExceedanceRow,
    SampleSeries,
    check_series,
    thresholds_timeline,
)
from smartlogger.export.reduce import Buckets, make_buckets, minmax_envelope
from smartlogger.export.sheetstream import (
    DEFAULT_COMPRESSLEVEL,
    MAX_ROWS,
    Column,
    add_numeric_sheet,
    check_target,
    new_workbook,
    save_workbook,
)
from smartlogger.export.timeaxis import DATETIME_FORMAT, SiteTime, axis_format
from smartlogger.model import Level, LoggerIdentity, Quantity, Side, Thresholds

#: Points per chart series after reduction (min/max envelope: 2 per bucket).
DEFAULT_CHART_POINTS = 4000
#: Data rows per "Data" sheet (Excel's limit is 1,048,575 below the header).
DATA_ROWS_PER_SHEET = 1_000_000
MAX_DATA_SHEETS = 8

Progress = Callable[[str, float], None]
"""Progress callback: (stage text, fraction done 0..1)."""


@dataclass
class Window:
    """The time window a workbook covers (ms) and how it is shown (computed once)."""

    t0_ms: int
    t1_ms: int
    site: SiteTime
    x_title: str = ""
    x_format: str = ""
    x_min: float = 0.0
    x_max: float = 0.0

    def __post_init__(self) -> None:
        self.x_title = self.site.axis_title(self.t0_ms, self.t1_ms)
        self.x_format = axis_format(self.t0_ms, self.t1_ms)
        lo, hi = self.site.serial([self.t0_ms, self.t1_ms]).tolist()
        self.x_min, self.x_max = float(lo), float(hi)


def add_logger_charts(ws: WriteOnlySheet, table: ChartTable, series: SampleSeries,
                      window: Window, buckets: Buckets, x_ref: str, *, prefix: str,
                      anchor_rows: tuple[int, int] = (1, 25),
                      threshold_cache: dict[tuple[object, ...], tuple[list[ThresholdLine], list[ThresholdLine]]] | None = None) -> None:
    """Reduce ``series`` onto the shared ``buckets``, write it to ``table`` and add the
    voltage and temperature charts to ``ws`` at rows ``anchor_rows`` of column A.

    ``x_ref`` is the range of the bucket times in ``table`` (shared by all loggers of
    a workbook). ``threshold_cache`` shares threshold line columns between loggers
    with identical threshold timelines.
    """
    t = np.asarray(series.t_ms, dtype=np.int64)
    serial = series.identity.serial
    v_env = minmax_envelope(t, series.mv, buckets, divide=1000.0)
    t_env = minmax_envelope(t, series.dc, buckets, divide=10.0)
    v_ref = table.add(f"{prefix} V", v_env, decimals=3)
    t_ref = table.add(f"{prefix} C", t_env, decimals=1)
    timeline = thresholds_timeline(series)
    key = (tuple((int(ts), th) for ts, th in timeline), window.t0_ms, window.t1_ms)
    cached = threshold_cache.get(key) if threshold_cache is not None else None
    if cached is None:
        v_lines = threshold_lines_for(table, prefix, timeline, window.t0_ms, window.t1_ms,
                                      Quantity.VOLTAGE, window.site.serial)
        t_lines = threshold_lines_for(table, prefix, timeline, window.t0_ms, window.t1_ms,
                                      Quantity.TEMPERATURE, window.site.serial)
        if threshold_cache is not None:
            threshold_cache[key] = (v_lines, t_lines)
    else:
        v_lines, t_lines = cached
    label = _logger_label(series)
    th_v = [th.level(Quantity.VOLTAGE, sd, lv) / 1000.0 for _, th in timeline for sd in Side for lv in Level]
    th_t = [th.level(Quantity.TEMPERATURE, sd, lv) / 10.0 for _, th in timeline for sd in Side for lv in Level]
    vc = time_chart(f"Voltage - {label}", "Voltage (V)", window.x_title, x_min=window.x_min,
                    x_max=window.x_max, x_format=window.x_format,
                    y_range=nice_range([np.nanmin(v_env), np.nanmax(v_env), *th_v]))
    add_line(vc, x_ref, v_ref, f"{serial} voltage", VOLTAGE_COLOUR)
    add_threshold_lines(vc, v_lines)
    tc = time_chart(f"Temperature - {label}", "Temperature (C)", window.x_title, x_min=window.x_min,
                    x_max=window.x_max, x_format=window.x_format,
                    y_range=nice_range([np.nanmin(t_env), np.nanmax(t_env), *th_t]))
    add_line(tc, x_ref, t_ref, f"{serial} temperature", TEMPERATURE_COLOUR)
    add_threshold_lines(tc, t_lines)
    ws.add_chart(vc, f"A{anchor_rows[0]}")
    ws.add_chart(tc, f"A{anchor_rows[1]}")
    # One chart per printed page: a page break between them instead of a cut chart.
    ws.row_breaks.append(Break(id=anchor_rows[1] - 1))


def _logger_label(series: SampleSeries) -> str:
    cfg = series.config
    parts = [series.identity.serial]
    if cfg.block_position:
        parts.insert(0, f"block {cfg.block_position}")
    if cfg.block_label:
        parts.append(f"'{cfg.block_label}'")
    parts += list(series.identity.markers)
    return " ".join(parts)


def identity_rows(identity: LoggerIdentity) -> list[tuple[str, object]]:
    return [
        ("Serial", identity.serial),
        ("Generation", int(identity.generation)),
        ("Firmware", identity.firmware),
        ("Provenance", ", ".join(identity.markers) or "real hardware"),
    ]


def threshold_table(ws: WriteOnlySheet, th: Thresholds) -> None:
    """Warning/alarm levels; the level cells carry the chart colours (orange/red text)."""
    L.table(ws, ["Quantity", "Low alarm", "Low warning", "High warning", "High alarm"], [])
    for name, q, scale, fmt in (("Voltage (V)", Quantity.VOLTAGE, 1000.0, "0.000"),
                                ("Temperature (C)", Quantity.TEMPERATURE, 10.0, "0.0")):
        row = [L.cell(ws, name, border=True)]
        for side, level in ((Side.LOW, Level.ALARM), (Side.LOW, Level.WARNING),
                            (Side.HIGH, Level.WARNING), (Side.HIGH, Level.ALARM)):
            font = L.ALARM_TEXT if level is Level.ALARM else L.WARNING_TEXT
            row.append(L.cell(ws, th.level(q, side, level) / scale, number_format=fmt, border=True,
                              font=font))
        ws.append(row)


def exceedance_table(ws: WriteOnlySheet, rows: Sequence[ExceedanceRow], site: SiteTime, *,
                     with_serial: bool = False) -> None:
    """Exceedances, one row each, filled yellow (warning) or red (alarm)."""
    if not rows:
        ws.append([L.cell(ws, "No threshold exceedances.")])
        return
    headers = ["Severity", "Level", "Quantity", "Side", "Start", "End", "Duration (h:mm:ss)", "Worst",
               "Threshold", "Unit", "Why red"]
    if with_serial:
        headers = ["Position", "Serial", *headers]
    out = []
    fills = []
    for r in sorted(rows, key=lambda r: (r.start_ms, r.position, r.serial)):
        scale, unit = (1000.0, "V") if r.quantity is Quantity.VOLTAGE else (10.0, "C")
        row: list[object] = [r.colour, r.level.value, r.quantity.value, r.side.value,
                             site.local_datetime(r.start_ms),
                             site.local_datetime(r.end_ms) if r.end_ms is not None else "ongoing",
                             None if r.duration_s is None else r.duration_s / 86400.0,  # a time value: h:mm:ss
                             r.extreme / scale, r.limit / scale, unit, r.reason or None]
        if with_serial:
            row = [r.position or None, r.serial, *row]
        out.append(row)
        fills.append(L.level_fill(r.colour))
    duration_col = headers.index("Duration (h:mm:ss)")
    L.table(ws, headers, out, row_fills=fills,
            formats=[L.DURATION_FORMAT if j == duration_col else None for j in range(len(headers))])


def evidence_rows(ev: EvidenceRow | None) -> tuple[list[tuple[str, object]], dict[str, PatternFill | None]]:
    if ev is None:
        return [("Verification", "not verified (no logfile given)")], {}
    rows: list[tuple[str, object]] = [
        ("Verification", ev.result),
        ("Evidence status", ev.evidence_status),
        ("Logfile", ev.file),
        ("SHA-256", ev.sha256),
        ("Key fingerprint", ev.key_fingerprint or "-"),
    ]
    rows += list(ev.details)
    fill = L.evidence_fill(ev.evidence_status)
    return rows, {"Verification": fill, "Evidence status": fill}


def stats_rows(series: SampleSeries, site: SiteTime) -> list[list[object]]:
    t = np.asarray(series.t_ms)
    out: list[list[object]] = []
    for name, arr, scale in (("Voltage (V)", series.mv, 1000.0), ("Temperature (C)", series.dc, 10.0)):
        a = np.asarray(arr)
        i_min, i_max = int(np.argmin(a)), int(np.argmax(a))
        out.append([name, a[i_min] / scale, site.local_datetime(int(t[i_min])), a[i_max] / scale,
                    site.local_datetime(int(t[i_max])), round(float(a.mean()) / scale, 4)])
    return out


def write_summary(ws: L.TextSheet, series: SampleSeries, window: Window,
                  exceedances: Sequence[ExceedanceRow], evidence: EvidenceRow | None) -> None:
    L.set_widths(ws, [24, 22, 22, 22, 22, 20, 20, 12, 10, 10, 6, 30])
    ident = series.identity
    cfg = series.config
    L.print_setup(ws)
    L.title(ws, f"Logger {ident.serial}")
    L.banner(ws, ident.markers)
    L.section(ws, "Identity")
    L.pairs(ws, identity_rows(ident))
    L.section(ws, "Configuration")
    L.pairs(ws, [
        ("Block type", cfg.block_type.describe()),
        ("Rated capacity (Ah)", cfg.rated_ah),
        ("Float log rate (s)", cfg.float_rate_s),
        ("Discharge log rate (s)", cfg.discharge_rate_s),
        ("Block label", cfg.block_label or "-"),
        ("Block position", cfg.block_position or "-"),
        ("Test id", cfg.test_id or "-"),
    ])
    L.section(ws, "Thresholds")
    threshold_table(ws, cfg.thresholds)
    timeline = thresholds_timeline(series)
    if len(timeline) > 1:
        ws.append([L.cell(ws, f"Thresholds changed {len(timeline) - 1} time(s) during the log; "
                          "the charts show each change as a step.")])
    t = np.asarray(series.t_ms)
    L.section(ws, "Time window")
    L.pairs(ws, [
        ("Time zone", window.x_title),
        ("First sample", window.site.local_datetime(int(t[0]))),
        ("Last sample", window.site.local_datetime(int(t[-1]))),
        ("Duration", L.hours((int(t[-1]) - int(t[0])) / 1000.0)),
        ("Samples", len(t)),
    ])
    L.section(ws, "Statistics")
    L.table(ws, ["Quantity", "Min", "Min at", "Max", "Max at", "Mean"], stats_rows(series, window.site))
    L.section(ws, "Threshold exceedances")
    exceedance_table(ws, exceedances, window.site)
    L.section(ws, "Evidence")
    rows, fills = evidence_rows(evidence)
    L.pairs(ws, rows, fills)


def add_data_sheets(wb: Workbook, series: SampleSeries, site: SiteTime, title: str = "Data",
                    on_rows: Callable[[int], None] | None = None) -> list[str]:
    """"Data" sheet(s) with every sample; returns the sheet names."""
    t = np.asarray(series.t_ms, dtype=np.int64)
    n = len(t)
    if n > DATA_ROWS_PER_SHEET * MAX_DATA_SHEETS:
        raise ExportError(f"{series.identity.serial}: {n} samples need more than {MAX_DATA_SHEETS} "
                          "data sheets; use the long-term export (daily summary + CSV/Parquet)")
    serial_t = site.serial(t)
    x_title = site.axis_title(int(t[0]), int(t[-1]))
    names = []
    for k, lo in enumerate(range(0, n, DATA_ROWS_PER_SHEET)):
        hi = min(n, lo + DATA_ROWS_PER_SHEET)
        name = title if k == 0 else f"{title} ({k + 1})"
        cols = [
            Column(x_title, serial_t[lo:hi], None, DATETIME_FORMAT, 21),
            Column("Voltage (V)", np.asarray(series.mv[lo:hi], dtype=np.float64) / 1000.0, 3, None, 12),
            Column("Temperature (C)", np.asarray(series.dc[lo:hi], dtype=np.float64) / 10.0, 1, None, 15),
            Column("Device time (ms since 1970, UTC)", t[lo:hi].astype(np.float64), 0, "0", 18),
        ]
        assert hi - lo + 1 <= MAX_ROWS
        data_ws = add_numeric_sheet(wb, name, cols, on_rows=on_rows)
        # Every sample of the log: printed only when asked (clear the print area, or print a selection).
        L.not_printed(data_ws, len(cols))
        names.append(name)
    return names


def build_logger_workbook(series: SampleSeries, *, exceedances: Sequence[ExceedanceRow] = (),
                          evidence: EvidenceRow | None = None, tz: str | SiteTime | None = "UTC",
                          chart_points: int = DEFAULT_CHART_POINTS,
                          progress: Progress | None = None) -> Workbook:
    """The logger workbook in memory (write-only; save with ``sheetstream.save_workbook``)."""
    check_series(series)
    site = SiteTime.parse(tz)
    t = np.asarray(series.t_ms, dtype=np.int64)
    window = Window(int(t[0]), int(t[-1]), site)
    wb = new_workbook()
    summary = L.add_sheet(wb, "Summary")
    write_summary(summary, series, window, exceedances, evidence)
    L.header_footer(summary, f"Logger {series.identity.serial}")
    charts = L.add_sheet(wb, "Charts")
    L.print_setup(charts)
    L.header_footer(charts, f"Logger {series.identity.serial}")
    table = ChartTable("Chart data")
    buckets = make_buckets(window.t0_ms, window.t1_ms, chart_points)
    x_ref = table.add("time", site.serial(buckets.point_times_ms()), number_format=DATETIME_FORMAT)
    add_logger_charts(charts, table, series, window, buckets, x_ref, prefix=series.identity.serial)
    if progress:
        progress("charts", 0.2)
    n = len(t)
    done = [0]

    def on_rows(k: int) -> None:
        done[0] += k
        if progress:
            progress("data", 0.2 + 0.8 * done[0] / n)

    add_data_sheets(wb, series, site, on_rows=on_rows)
    table.write(wb)
    return wb


def write_logger_workbook(path: str | os.PathLike[str], series: SampleSeries, *,
                          exceedances: Sequence[ExceedanceRow] = (),
                          evidence: EvidenceRow | None = None, tz: str | SiteTime | None = "UTC",
                          chart_points: int = DEFAULT_CHART_POINTS,
                          progress: Progress | None = None,
                          compresslevel: int = DEFAULT_COMPRESSLEVEL) -> Path:
    """Write the logger workbook of ``series`` to ``path`` (atomically); returns the path."""
    check_target(path)
    wb = build_logger_workbook(series, exceedances=exceedances, evidence=evidence, tz=tz,
                               chart_points=chart_points, progress=progress)
    out = save_workbook(wb, path, compresslevel=compresslevel)
    if progress:
        progress("saved", 1.0)
    return out
