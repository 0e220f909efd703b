"""The long-term blackbox export: a battery's lifetime record as a workbook.

Ten years of samples do not fit in a sheet (1,048,576 rows), so this workbook
holds the daily min/mean/max (from the summary stream, or computed from the
samples here) with charts, the event log and the discharge table; the raw
samples go alongside into CSV/Parquet (``export.data``). Sheets:

- "Summary": identity (with SIMULATED/REPLAYED banner), configuration and
  thresholds, the covered window, counts, evidence status.
- "Daily chart": daily voltage min/mean/max and temperature min/mean/max, with
  warning (orange) and alarm (red) lines.
- "Daily": one row per day (local date), the numbers behind the chart.
- "Events": every firmware event, threshold events filled yellow/red.
- "Discharges": every detected discharge with duration, minimum voltage, Ah.
- "Chart data" (hidden): the threshold lines.

Owns ``daily_rows`` (vectorised per-day reduction) and ``write_longterm_workbook``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from openpyxl import Workbook
from openpyxl.styles import PatternFill
from openpyxl.worksheet.pagebreak import Break

from smartlogger.errors import ExportError
from smartlogger.export import layout as L
from smartlogger.export.charts import (
    TEMPERATURE_COLOUR,
    VOLTAGE_COLOUR,
    ChartTable,
    add_line,
    add_threshold_lines,
    nice_range,
    threshold_lines_for,
    time_chart,
)
from smartlogger.export.inputs import DailyRow, LongtermData, SampleSeries
from smartlogger.export.logger_workbook import (
    Progress,
    Window,
    evidence_rows,
    identity_rows,
    threshold_table,
)
from smartlogger.export.sheetstream import (
    DEFAULT_COMPRESSLEVEL,
    Column,
    add_numeric_sheet,
    check_target,
    new_workbook,
    save_workbook,
)
from smartlogger.export.timeaxis import DATE_FORMAT, DATETIME_FORMAT, MS_PER_DAY, SiteTime
from smartlogger.model import Event, EventKind, Level, Quantity, Side

#: Events that mean a threshold was crossed, and their colour.
_EVENT_LEVEL = {EventKind.ENTER_WARNING: Level.WARNING, EventKind.ENTER_ALARM: Level.ALARM}
#: What ``Event.value`` means per kind (unit shown in the Events sheet).
_VALUE_MEANING = {
    EventKind.DISCHARGE_START: "mV at detection",
    EventKind.DISCHARGE_END: "minimum mV",
    EventKind.RATE_CHANGE: "new interval (s)",
    EventKind.RESET: "1 = forced",
    EventKind.GAP: "seconds not logged",
}


_LIGHT = {VOLTAGE_COLOUR: "9DC3E6", TEMPERATURE_COLOUR: "A9D08E"}
_DARK = {VOLTAGE_COLOUR: "0B2A45", TEMPERATURE_COLOUR: "1B4D1E"}


def daily_rows(series: SampleSeries, tz: str | SiteTime | None = "UTC") -> list[DailyRow]:
    """Per local calendar day: sample count and min/mean/max of voltage and temperature.

    Vectorised: one pass to find day boundaries, then ``ufunc.reduceat``; ten
    years at one sample a minute (5.3 M samples) takes well under a second.
    ``day_start_ms`` is local midnight expressed in UTC ms.
    """
    site = SiteTime.parse(tz)
    t = np.asarray(series.t_ms, dtype=np.int64)
    if len(t) == 0:
        return []
    off = site.offsets_ms(t)
    day = (t + off) // MS_PER_DAY
    starts = np.flatnonzero(np.r_[True, day[1:] != day[:-1]])
    if np.any(np.diff(day[starts]) <= 0):
        raise ExportError(f"{series.identity.serial}: samples are not in time order; "
                          "cannot build daily summaries")
    counts = np.diff(np.r_[starts, len(t)])
    mv = np.asarray(series.mv, dtype=np.int64)
    dc = np.asarray(series.dc, dtype=np.int64)
    mv_min, mv_max = np.minimum.reduceat(mv, starts), np.maximum.reduceat(mv, starts)
    dc_min, dc_max = np.minimum.reduceat(dc, starts), np.maximum.reduceat(dc, starts)
    mv_mean = np.add.reduceat(mv, starts) / counts
    dc_mean = np.add.reduceat(dc, starts) / counts
    day_start = day[starts] * MS_PER_DAY - off[starts]
    return [DailyRow(int(a), int(b), int(c), float(d), int(e), int(f), float(g), int(h))
            for a, b, c, d, e, f, g, h in zip(day_start.tolist(), counts.tolist(), mv_min.tolist(),
                                              mv_mean.tolist(), mv_max.tolist(), dc_min.tolist(),
                                              dc_mean.tolist(), dc_max.tolist(), strict=True)]


def _event_rows(events: Sequence[Event], site: SiteTime) -> tuple[list[list[object]], list[PatternFill | None]]:
    rows: list[list[object]] = []
    fills: list[PatternFill | None] = []
    for e in sorted(events, key=lambda e: e.t_ms):
        value: object = e.value
        meaning = _VALUE_MEANING.get(e.kind, "")
        if e.quantity is Quantity.VOLTAGE:
            value, meaning = e.value / 1000.0, "V"
        elif e.quantity is Quantity.TEMPERATURE:
            value, meaning = e.value / 10.0, "C"
        rows.append([site.local_datetime(e.t_ms), e.kind.name.lower().replace("_", " "),
                     e.quantity.value if e.quantity else None, e.side.value if e.side else None,
                     value, meaning])
        fills.append(L.level_fill(_EVENT_LEVEL.get(e.kind)))
    return rows, fills


def build_longterm_workbook(data: LongtermData, *, tz: str | SiteTime | None = "UTC",
                            progress: Progress | None = None) -> Workbook:
    """The long-term workbook in memory (write-only)."""
    if not data.daily:
        raise ExportError(f"{data.identity.serial}: no daily summaries and no samples to summarise")
    site = SiteTime.parse(tz)
    daily = sorted(data.daily, key=lambda d: d.day_start_ms)
    day_ms = np.array([d.day_start_ms for d in daily], dtype=np.int64)
    t0, t1 = int(day_ms[0]), int(day_ms[-1]) + MS_PER_DAY - 1
    window = Window(t0, t1, site)
    wb = new_workbook()

    ws = L.add_sheet(wb, "Summary")
    L.set_widths(ws, [26, 22, 22, 22, 22, 30])
    L.print_setup(ws)
    L.title(ws, f"Blackbox history {data.identity.serial}")
    L.banner(ws, data.identity.markers)
    L.section(ws, "Identity")
    L.pairs(ws, identity_rows(data.identity))
    L.section(ws, "Configuration")
    cfg = data.config
    L.pairs(ws, [("Block type", cfg.block_type.describe()), ("Rated capacity (Ah)", cfg.rated_ah),
                 ("Float log rate (s)", cfg.float_rate_s), ("Block label", cfg.block_label or "-")])
    L.section(ws, "Thresholds")
    threshold_table(ws, cfg.thresholds)
    L.section(ws, "History")
    n_samples = len(data.samples.t_ms) if data.samples is not None else None
    L.pairs(ws, [
        ("Time zone", window.x_title),
        ("First day", site.local_datetime(t0).date()),
        ("Last day", site.local_datetime(int(day_ms[-1])).date()),
        ("Days with data", len(daily)),
        ("Samples summarised", sum(d.count for d in daily)),
        ("Raw samples available", n_samples if n_samples is not None else "none (summary stream only)"),
        ("Events", len(data.events)),
        ("Discharges", len(data.discharges)),
        *data.extra.items(),
    ])
    ws.append([L.cell(ws, "Raw samples are exported alongside as CSV/Parquet: a sheet holds at most "
                          "1,048,575 rows.")])
    L.section(ws, "Evidence")
    rows, fills = evidence_rows(data.evidence)
    L.pairs(ws, rows, fills)

    chart_ws = L.add_sheet(wb, "Daily chart")
    L.print_setup(chart_ws)
    serial_days = site.serial(day_ms)
    cols = [
        Column("Date", serial_days, None, DATE_FORMAT, 12),
        Column("Samples", np.array([d.count for d in daily], dtype=np.float64), 0, None, 9),
        Column("V min", np.array([d.mv_min for d in daily]) / 1000.0, 3, None, 9),
        Column("V mean", np.array([d.mv_mean for d in daily]) / 1000.0, 3, None, 9),
        Column("V max", np.array([d.mv_max for d in daily]) / 1000.0, 3, None, 9),
        Column("C min", np.array([d.dc_min for d in daily]) / 10.0, 1, None, 9),
        Column("C mean", np.array([d.dc_mean for d in daily]) / 10.0, 2, None, 9),
        Column("C max", np.array([d.dc_max for d in daily]) / 10.0, 1, None, 9),
    ]
    daily_ws = add_numeric_sheet(wb, "Daily", cols)
    last = len(daily) + 1
    x_ref = daily_ws.ref(1, 2, last)
    table = ChartTable("Chart data")
    timeline = [(t0, cfg.thresholds)]
    for q, title, unit, col0, colour, scale in (
            (Quantity.VOLTAGE, "Daily voltage", "Voltage (V)", 3, VOLTAGE_COLOUR, 1000.0),
            (Quantity.TEMPERATURE, "Daily temperature", "Temperature (C)", 6, TEMPERATURE_COLOUR, 10.0)):
        vals = np.concatenate([cols[col0 - 1].values, cols[col0 + 1].values])
        th = [cfg.thresholds.level(q, sd, lv) / scale for sd in Side for lv in Level]
        chart = time_chart(f"{title} (min / mean / max) - {data.identity.serial}", unit, window.x_title,
                           x_min=window.x_min, x_max=window.x_max, x_format=DATE_FORMAT,
                           y_range=nice_range([float(np.nanmin(vals)), float(np.nanmax(vals)), *th]))
        # min light, mean in the quantity's colour, max dark: the band reads at a glance.
        shades = {"min": _LIGHT[colour], "mean": colour, "max": _DARK[colour]}
        for k, name in enumerate(("min", "mean", "max")):
            add_line(chart, x_ref, daily_ws.ref(col0 + k, 2, last), f"daily {name}", shades[name],
                     width_pt=0.75 if name != "mean" else 1.5)
        add_threshold_lines(chart, threshold_lines_for(table, q.value, timeline, t0, t1, q, site.serial))
        chart_ws.add_chart(chart, "A1" if q is Quantity.VOLTAGE else "A25")
    chart_ws.row_breaks.append(Break(id=24))  # one chart per printed page
    if progress:
        progress("daily", 0.4)

    ev = L.add_sheet(wb, "Events")
    L.set_widths(ev, [21, 18, 12, 8, 10, 20])
    L.title(ev, f"Event log {data.identity.serial}")
    erows, efills = _event_rows(data.events, site)
    if erows:
        L.table(ev, ["Time", "Event", "Quantity", "Side", "Value", "Unit / meaning"], erows,
                row_fills=efills)
    else:
        ev.append([L.cell(ev, "No events in the log.")])

    dis = L.add_sheet(wb, "Discharges")
    L.set_widths(dis, [21, 21, 16, 10, 14])
    L.title(dis, f"Discharges {data.identity.serial}")
    if data.discharges:
        L.table(dis, ["Start", "End", "Duration", "Min V", "Delivered Ah (est.)"], [
            [site.local_datetime(d.start_ms), site.local_datetime(d.end_ms),
             L.hours((d.end_ms - d.start_ms) / 1000.0), d.min_mv / 1000.0,
             d.ah_estimate_mah / 1000.0 if d.ah_estimate_mah else None]
            for d in sorted(data.discharges, key=lambda d: d.start_ms)],
            formats=[DATETIME_FORMAT, DATETIME_FORMAT, None, "0.000", "0.0"])
    else:
        dis.append([L.cell(dis, "No discharges in the log.")])
    table.write(wb)
    return wb


def write_longterm_workbook(path: str | os.PathLike[str], data: LongtermData, *,
                            tz: str | SiteTime | None = "UTC", progress: Progress | None = None,
                            compresslevel: int = DEFAULT_COMPRESSLEVEL) -> Path:
    """Write the long-term workbook to ``path`` (atomically); returns the path."""
    check_target(path)
    wb = build_longterm_workbook(data, tz=tz, progress=progress)
    out = save_workbook(wb, path, compresslevel=compresslevel)
    if progress:
        progress("saved", 1.0)
    return out
