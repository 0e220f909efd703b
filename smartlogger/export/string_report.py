"""The string report: one capacity test of a whole string as an Excel workbook.

Owns ``write_string_report`` / ``build_string_report`` and ``align_blocks``.
Sheets, in order:

- "Summary": result, capacity % and the method, duration, load, temperature
  correction, weakest blocks, what the result rests on (the evidence statement,
  green only for verified hardware evidence), the traffic-light table of all blocks
  with each block's evidence, and the logfiles excluded from the analysis
  (conditional formatting: capacity < 80 % red, < 90 % yellow, else green;
  status alarm/warning/ok in the same colours).
- "Overview": all blocks' voltages on one chart (shared reduced time base) and
  the per-block capacity bar chart with the red 80 % line.
- "Exceedances": every exceedance of every block, yellow/red.
- "Data": all blocks aligned on one time grid (default 10 s), one voltage column
  per block, then one temperature column per block.
- "Evidence": each logfile's SHA-256, verification result, serial, key fingerprint.
- one sheet per block ("B001 SERIAL"): voltage and temperature charts with the
  block's warning (orange) and alarm (red) lines, as in the logger workbook.
- "Chart data" (hidden): reduced series and threshold lines the charts plot.

Inputs are plain values (``export.inputs``); ``export.adapters`` converts the
analysis results object. The series must already be on a common clock (the
analysis corrects logger clocks); this module only resamples for display.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from openpyxl import Workbook
from openpyxl.formatting.rule import CellIsRule, FormulaRule
from openpyxl.styles import PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.pagebreak import Break

from smartlogger.errors import ExportError
from smartlogger.export import layout as L
from smartlogger.export.charts import (
    ALARM_COLOUR,
    SERIES_COLOURS,
    VOLTAGE_COLOUR,
    ChartTable,
    ThresholdLine,
    add_line,
    add_threshold_lines,
    capacity_bar_chart,
    nice_range,
    threshold_lines_for,
    time_chart,
)
from smartlogger.export.inputs import (
    EvidenceRow,
    ExceedanceRow,
    SampleSeries,
    StringTestOutcome,
    check_series,
    thresholds_timeline,
)
from smartlogger.export.logger_workbook import (
    DEFAULT_CHART_POINTS,
    Progress,
    Window,
    add_logger_charts,
    exceedance_table,
)
from smartlogger.export.reduce import make_buckets, minmax_envelope
from smartlogger.export.report import COLOURS, ReportContent
from smartlogger.export.sheetstream import (
    DEFAULT_COMPRESSLEVEL,
    MAX_COLS,
    MAX_ROWS,
    Column,
    add_numeric_sheet,
    check_target,
    new_workbook,
    save_workbook,
    workbook_bytes,
)
from smartlogger.export.timeaxis import DATETIME_FORMAT, SiteTime
from smartlogger.model import Quantity, Side

#: Default resolution of the aligned "Data" sheet, s (full 1 Hz data stays in the
#: logger workbooks and CSV/Parquet).
DEFAULT_RESOLUTION_S = 10.0
#: Total points budget of the overview chart (all blocks together), so a 240-block
#: chart stays responsive; each block gets at least 200 points.
OVERVIEW_POINT_BUDGET = 240_000
#: Failing blocks on the all-blocks charts: strong, distinct colours; the others are muted grey.
HIGHLIGHT_COLOURS = ("D62728", "FF7F0E", "9467BD", "8C564B", "E377C2", "17BECF", "BCBD22", "1F77B4")
MUTED_COLOUR = "BFBFBF"
#: Characters per printed line of the Summary's sentences (the sheet is printed fit to width).
PARAGRAPH_CHARS = 170
#: Discharge start/end markers on the string-voltage chart.
MARKER_COLOUR = "404040"
#: Capacity below this % of rated = replace (red); below WARN_PCT = watch (yellow).
REPLACE_PCT = 80.0
WARN_PCT = 90.0


def align_blocks(series: Sequence[SampleSeries], t0_ms: int, t1_ms: int, resolution_ms: int
                 ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """All blocks on one time grid ``t0_ms, t0_ms + resolution_ms, ... <= t1_ms``.

    Each grid cell holds the block's last sample at or before the grid time, if
    that sample is not older than one resolution step or one of the block's own
    sample intervals (whichever is longer); otherwise the cell is empty (NaN),
    so a gap in a log shows as a gap, never as an invented value. Returns the
    grid (ms), voltages (V) and temperatures (C) as (rows, blocks) arrays.
    """
    if resolution_ms <= 0:
        raise ExportError(f"resolution {resolution_ms} ms must be positive")
    grid = np.arange(t0_ms, t1_ms + 1, resolution_ms, dtype=np.int64)
    v = np.full((len(grid), len(series)), np.nan)
    c = np.full((len(grid), len(series)), np.nan)
    for j, s in enumerate(series):
        t = np.asarray(s.t_ms, dtype=np.int64)
        if len(t) == 0:
            continue
        step = int(np.median(np.diff(t), overwrite_input=True)) if len(t) > 1 else resolution_ms
        tol = max(resolution_ms, step)
        idx = np.searchsorted(t, grid, side="right") - 1
        ok = idx >= 0
        idx_c = np.clip(idx, 0, None)
        ok &= (grid - t[idx_c]) <= tol
        v[ok, j] = np.asarray(s.mv)[idx_c[ok]] / 1000.0
        c[ok, j] = np.asarray(s.dc)[idx_c[ok]] / 10.0
    return grid, v, c


def string_voltage(v: npt.NDArray[np.float64], *, n_string: int) -> npt.NDArray[np.float64]:
    """The string voltage on the Data grid: the sum of the blocks, a block without a sample at a
    time counted as the mean of the others then (as the analysis counts a missing logger)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        present = np.isfinite(v).sum(axis=1)
        total = np.nansum(v, axis=1)
        out = np.where(present > 0, total / np.maximum(present, 1) * n_string, np.nan)
    return np.asarray(out, dtype=np.float64)


def _block_name(s: SampleSeries) -> str:
    pos = s.config.block_position
    return f"B{pos:03d}" if pos else s.identity.serial


def write_report_summary(ws: L.TextSheet, rep: ReportContent, series: Sequence[SampleSeries]) -> dict[str, str]:
    """The customer report's Summary (``export.report``): the verdict first, then who, where, which
    battery, the setup, the discharge, the weakest blocks with the ranking rule, and every block.
    Returns serial -> the RGB fill of its capacity cell (what the benchmark checks)."""
    width = 16
    L.set_widths(ws, [9, 14, 8, 10, 12, 14, 8, 8, 8, 10, 13, 9, 14, 11, 20, 40])
    L.print_setup(ws)
    L.header_footer(ws, f"Capacity test {rep.test_id}")
    ws.print_title_rows = None
    last = get_column_letter(width)

    def merged(values: list[object], span_from: int = 2) -> None:
        row = ws.rows_written + 1
        ws.append(values)
        ws.merged_cells.add(f"{get_column_letter(span_from)}{row}:{last}{row}")

    def paragraph(text: str, **look: Any) -> None:
        # Write-only sheets cannot size a row to wrapped text: one merged row per printed line.
        for line in textwrap.wrap(text, PARAGRAPH_CHARS) or [""]:
            merged([L.cell(ws, line, **look)], span_from=1)

    L.title(ws, rep.title)
    L.banner(ws, set(rep.markers), width=width)
    fill = PatternFill("solid", start_color=COLOURS.get(rep.outcome, "FFFFFF"), end_color=COLOURS.get(rep.outcome,
                                                                                                        "FFFFFF"))
    row = ws.rows_written + 1
    ws.row_dimensions[row].height = 24  # a merged row keeps the default height: the verdict was cut in half
    ws.append([L.cell(ws, f"Result: {rep.outcome_word}", font=L.TITLE_FONT, fill=fill)]
              + [L.cell(ws, None, fill=fill) for _ in range(width - 1)])
    ws.merged_cells.add(f"A{row}:{last}{row}")
    paragraph(rep.sentence, font=L.BOLD)
    paragraph(f"Acceptance criterion: {rep.criterion}")
    for name, pairs in rep.sections:
        L.section(ws, name)
        for label, value in pairs:
            row = ws.rows_written + 1
            ws.append([L.cell(ws, label, font=L.BOLD), None, L.cell(ws, value)])
            ws.merged_cells.add(f"A{row}:B{row}")
            ws.merged_cells.add(f"C{row}:{last}{row}")
    L.section(ws, "Weakest blocks")
    for text in rep.weakest:
        merged([L.cell(ws, text)], span_from=1)
    paragraph(rep.ranking_rule)
    L.section(ws, "What the result rests on")
    # What a court could rely on: green only when every block rests on verified hardware evidence.
    merged([L.cell(ws, "Evidence", font=L.BOLD),
            L.cell(ws, rep.evidence_statement, fill=L.evidence_fill("verified" if rep.verified_only else
                                                                    "simulated"))])
    if rep.excluded_rows:
        # Named, in red, before the blocks: the result below is of the rest of the string.
        L.section(ws, "Logfiles excluded from the analysis")
        L.table(ws, ["Logfile", "Serial", "Reason", "Why"], [list(e) for e in rep.excluded_rows],
                row_fills=[L.ALARM_FILL] * len(rep.excluded_rows))
    L.section(ws, "All blocks")
    headers = ["Position", "Serial", "Label", "Capacity", "Delivered Ah", "To end voltage", "Float V", "Min V",
               "Max °C", "IR (mOhm)", "IR +/- (mOhm)", "IR status", "Result", "Evidence", "Exceedances",
               "Recommendation"]
    ws.append([L.cell(ws, h, font=L.BOLD, fill=L.HEADER_FILL, border=True) for h in headers])
    first = ws.rows_written + 1
    fills: dict[str, str] = {}
    for b in rep.blocks:
        colour = COLOURS.get(b.disposition, "FFFFFF")
        fills[b.serial] = colour
        f = PatternFill("solid", start_color=colour, end_color=colour)
        cap_fmt = '"≥ "0.0" %"' if b.lower_bound else '0.0" %"'
        ws.append([L.cell(ws, b.position or None, border=True), L.cell(ws, b.serial, border=True),
                   L.cell(ws, b.label or None, border=True),
                   L.cell(ws, None if b.capacity_pct is None else round(b.capacity_pct, 1), border=True, fill=f,
                          number_format=cap_fmt),
                   L.cell(ws, None if b.delivered_ah is None else round(b.delivered_ah, 2), border=True,
                          number_format="0.00"),
                   L.cell(ws, b.time_to_end, border=True, align="right"),
                   L.cell(ws, b.float_v, border=True, number_format="0.00"),
                   L.cell(ws, b.min_v, border=True, number_format="0.00"),
                   L.cell(ws, b.max_c, border=True, number_format="0.0"),
                   L.cell(ws, None if b.resistance_mohm is None else round(b.resistance_mohm, 3), border=True,
                          number_format="0.000"),
                   L.cell(ws, None if b.resistance_uncertainty_mohm is None else round(b.resistance_uncertainty_mohm, 3),
                          border=True, number_format="0.000"),
                   L.cell(ws, b.resistance_status or None, border=True, fill=L.level_fill(
                       "fail" if b.resistance_status == "fail" else
                       "warning" if b.resistance_status == "warning" else None)),
                   L.cell(ws, b.result_word, border=True, fill=f, font=L.BOLD),
                   L.cell(ws, b.evidence, border=True, fill=L.evidence_fill(b.evidence)),
                   L.cell(ws, b.exceedances, border=True),
                   L.cell(ws, b.recommendation, border=True)])
    if rep.blocks:
        # Repeat the table header on every printed page of the table.
        ws.print_title_rows = f"{first - 1}:{first - 1}"
    ws.append([])
    paragraph(rep.legend + "Capacity: IEEE 450 % of rated; ≥ marks a lower bound. IR: internal (DC step) "
              "resistance from the load steps, ± one standard uncertainty, change against the test's reference. "
              "Exceedances: red = massive or long, yellow = slight or brief; durations h:mm:ss.")
    if rep.notes:
        L.section(ws, "Analysis notes")
        for note in rep.notes:
            paragraph(note)
    if rep.watch:  # the annex: what the live watch saw (report.watch_annex)
        L.section(ws, "Annex: Live watch")
        for label, value in rep.watch:
            row = ws.rows_written + 1
            ws.append([L.cell(ws, label, font=L.BOLD), None, L.cell(ws, value)])
            ws.merged_cells.add(f"A{row}:B{row}")
            ws.merged_cells.add(f"C{row}:{last}{row}")
    return fills


def write_summary(ws: L.TextSheet, outcome: StringTestOutcome, series: Sequence[SampleSeries],
                  window: Window, n_exceed: int) -> None:
    L.set_widths(ws, [22, 18, 16, 14, 14, 16, 12, 12, 10, 12, 12, 10, 40, 12])
    L.print_setup(ws)
    L.title(ws, f"Capacity test {outcome.test_id}")
    L.banner(ws, {m for s in series for m in s.identity.markers}, width=10)
    L.section(ws, "Test result")
    result_fill = L.OK_FILL if outcome.result.upper() in ("PASS", "OK") else L.ALARM_FILL
    weak = ", ".join(str(p) for p in outcome.weakest) or "-"
    L.pairs(ws, [
        ("Result", outcome.result),
        ("Capacity (% of rated)", None if outcome.capacity_pct is None else round(outcome.capacity_pct, 1)),
        ("Method", outcome.method),
        ("Site / string", outcome.site or "-"),
        ("Start", window.site.local_datetime(outcome.start_ms if outcome.start_ms is not None
                                             else window.t0_ms)),
        ("Time zone", window.x_title),
        ("Duration", L.hours(outcome.duration_s)),
        ("Load", outcome.load),
        ("End voltage (V/cell)", outcome.end_v_per_cell if outcome.end_v_per_cell is not None else "-"),
        ("Start and end found from", outcome.start_found or "-"),
        ("Internal resistance reference", outcome.resistance_reference or "-"),
        ("Temperature correction", outcome.temperature_correction),
        ("Blocks", len(outcome.blocks)),
        ("Weakest blocks (position)", weak),
        ("Threshold exceedances", n_exceed),
    ], fills={"Result": result_fill})
    if outcome.evidence_statement:
        # What a court could rely on: green only when every block rests on verified hardware evidence.
        ws.append([L.cell(ws, "Evidence", font=L.BOLD),
                   L.cell(ws, outcome.evidence_statement, fill=L.evidence_fill(
                       "verified" if outcome.verified_only else outcome.evidence_status or "unchecked"))])
    for note in outcome.notes:
        ws.append([L.cell(ws, note)])
    if outcome.excluded:
        # Named, in red, before the blocks: the result below is of the rest of the string.
        L.section(ws, f"Excluded from the analysis ({len(outcome.excluded)})")
        L.table(ws, ["File", "Serial", "Reason", "Why"],
                [[f, serial or "-", reason, message] for f, serial, reason, message in outcome.excluded],
                row_fills=[L.ALARM_FILL] * len(outcome.excluded))
    L.section(ws, "All blocks")
    header_row = ws.rows_written + 1
    headers = ["Position", "Serial", "Label", "Capacity %", "Delivered Ah", "End time (min)",
               "Min V", "Max C", "Status", "IR (mOhm)", "IR +/- (mOhm)", "IR status", "Note", "Evidence"]
    rows = []
    for b in sorted(outcome.blocks, key=lambda b: b.position):
        rows.append([b.position, b.serial, b.label or None,
                     None if b.capacity_pct is None else round(b.capacity_pct, 1),
                     None if b.delivered_ah is None else round(b.delivered_ah, 2),
                     None if b.end_time_s is None else round(b.end_time_s / 60.0, 1),
                     None if b.min_mv is None else b.min_mv / 1000.0,
                     None if b.max_dc is None else b.max_dc / 10.0,
                     b.status,
                     None if b.resistance_mohm is None else round(b.resistance_mohm, 3),
                     None if b.resistance_uncertainty_mohm is None else round(b.resistance_uncertainty_mohm, 3),
                     b.resistance_status or None, b.note or None, b.evidence or None])
    n = L.table(ws, headers, rows, formats=[None, None, None, "0.0", "0.00", "0.0", "0.000", "0.0", None,
                                            "0.000", "0.000"])
    if n:
        first, last = header_row + 1, header_row + n
        cap = f"D{first}:D{last}"
        # Conditional formatting, not static fills: the traffic light follows the number
        # if someone corrects a value in the sheet.
        ws.conditional_formatting.add(cap, CellIsRule(operator="lessThan", formula=[f"{REPLACE_PCT:g}"],
                                                      fill=L.ALARM_FILL))
        ws.conditional_formatting.add(cap, CellIsRule(operator="lessThan", formula=[f"{WARN_PCT:g}"],
                                                      fill=L.WARNING_FILL))
        ws.conditional_formatting.add(cap, CellIsRule(operator="greaterThanOrEqual",
                                                      formula=[f"{WARN_PCT:g}"], fill=L.OK_FILL))
        st = f"I{first}:I{last}"
        for word, fill in (("alarm", L.ALARM_FILL), ("warning", L.WARNING_FILL), ("ok", L.OK_FILL)):
            ws.conditional_formatting.add(st, FormulaRule(formula=[f'I{first}="{word}"'], fill=fill))
        irs = f"L{first}:L{last}"
        for word, fill in (("fail", L.ALARM_FILL), ("warning", L.WARNING_FILL), ("ok", L.OK_FILL)):
            ws.conditional_formatting.add(irs, FormulaRule(formula=[f'L{first}="{word}"'], fill=fill))
        ev_col = f"N{first}:N{last}"
        for word in ("verified", "simulated", "unsigned", "unchecked"):
            ws.conditional_formatting.add(ev_col, FormulaRule(formula=[f'N{first}="{word}"'],
                                                              fill=L.evidence_fill(word)))
    ws.append([])
    ws.append([L.cell(ws, f"Traffic light: capacity below {REPLACE_PCT:g} % of rated = replace (red), "
                          f"below {WARN_PCT:g} % = watch (yellow), otherwise green. Evidence: verified = "
                          "hardware evidence (green); simulated / unsigned data is not evidence.")])
    ws.append([L.cell(ws, "IR: internal (DC step) resistance of the block from the load steps of the test "
                          "(+/- one standard uncertainty); IR status against the reference above.")])
    if outcome.excluded:
        L.section(ws, "Logfiles excluded from the analysis")
        L.table(ws, ["Logfile", "Serial", "Reason", "Why"], [list(e) for e in outcome.excluded],
                row_fills=[L.ALARM_FILL for _ in outcome.excluded])


def write_evidence(ws: L.TextSheet, evidence: Sequence[EvidenceRow]) -> None:
    L.set_widths(ws, [18, 22, 68, 12, 50, 36, 14, 30])
    L.print_setup(ws)
    L.title(ws, "Evidence (not printed by default: clear the print area, or print a selection, to print it)")
    if not evidence:
        ws.append([L.cell(ws, "No logfiles were verified for this report.")])
        return
    L.table(ws, ["Serial", "Logfile", "SHA-256", "Evidence", "Verification result", "Key fingerprint",
                 "Markers", "Used in the analysis"],
            [[e.serial, e.file, e.sha256, e.evidence_status, e.result,
              e.key_fingerprint or "-", ", ".join(e.markers) or "-",
              "yes" if e.used else f"NO: {e.excluded_because or 'excluded'}"] for e in evidence],
            row_fills=[None if e.verified and e.used else L.evidence_fill(e.evidence_status if e.used
                                                                          else "excluded")
                       for e in evidence])
    details = [(e.serial, k, v) for e in evidence for k, v in e.details]
    if details:
        L.section(ws, "Verification details")
        L.table(ws, ["Serial", "Check", "Finding"], [list(d) for d in details])


def build_string_report(outcome: StringTestOutcome, series: Sequence[SampleSeries], *,
                        exceedances: Sequence[ExceedanceRow] = (),
                        evidence: Sequence[EvidenceRow] = (), tz: str | SiteTime | None = "UTC",
                        resolution_s: float = DEFAULT_RESOLUTION_S,
                        chart_points: int = DEFAULT_CHART_POINTS,
                        progress: Progress | None = None) -> Workbook:
    """The string report in memory (write-only; save with ``sheetstream.save_workbook``)."""
    if not series:
        raise ExportError("string report: no block logs given")
    for s in series:
        check_series(s)
    series = sorted(series, key=lambda s: (s.config.block_position or 10**9, s.identity.serial))
    if 2 * len(series) + 1 > MAX_COLS:
        raise ExportError(f"string report: {len(series)} blocks exceed the sheet's {MAX_COLS} columns")
    site = SiteTime.parse(tz)
    t0 = min(int(s.t_ms[0]) for s in series)
    t1 = max(int(s.t_ms[-1]) for s in series)
    window = Window(t0, t1, site)
    res_ms = round(resolution_s * 1000)
    if res_ms <= 0:
        raise ExportError(f"resolution {resolution_s} s must be positive")
    n_grid = (t1 - t0) // res_ms + 1
    if n_grid + 1 > MAX_ROWS:
        raise ExportError(f"string report: {n_grid} rows at {resolution_s:g} s exceed Excel's "
                          f"{MAX_ROWS - 1}; choose a coarser resolution")
    n_blocks = len(series)
    step = _progress_steps(progress, n_blocks)

    wb = new_workbook()
    summary = L.add_sheet(wb, "Summary")
    rep = outcome.report
    if rep is not None:
        write_report_summary(summary, rep, series)
    else:
        write_summary(summary, outcome, series, window, len(exceedances))
    overview = L.add_sheet(wb, "Overview")
    L.print_setup(overview, landscape=False)  # two charts a page, one above the other
    L.header_footer(overview, f"Capacity test {outcome.test_id}")
    exc = L.add_sheet(wb, "Exceedances")
    L.set_widths(exc, [8, 12, 8, 8, 12, 8, 18, 18, 12, 8, 8, 5, 30])
    L.print_setup(exc)
    L.header_footer(exc, f"Capacity test {outcome.test_id}")
    L.title(exc, f"Threshold exceedances, test {outcome.test_id}")
    exceedance_table(exc, exceedances, site, with_serial=True)

    # Data: one voltage column per block, then one temperature column per block.
    grid, v, c = align_blocks(series, t0, t1, res_ms)
    names = [_block_name(s) for s in series]
    cols = [Column(window.x_title, site.serial(grid), None, DATETIME_FORMAT, 21),
            Column("Elapsed (s)", (grid - t0) / 1000.0, 1, None, 10)]
    cols += [Column(f"{nm} {s.identity.serial} V", v[:, j], 3, None, 11)
             for j, (nm, s) in enumerate(zip(names, series, strict=True))]
    cols += [Column(f"{nm} {s.identity.serial} C", c[:, j], 1, None, 11)
             for j, (nm, s) in enumerate(zip(names, series, strict=True))]
    # Sheet bodies are serialised while saving: report those rows as the last 40 %.
    save_rows = [0, len(grid) + 2 * chart_points]

    def on_rows(k: int) -> None:
        save_rows[0] += k
        if progress is not None:
            progress("saving", 0.6 + 0.4 * min(1.0, save_rows[0] / save_rows[1]))

    data_sheet = add_numeric_sheet(wb, "Data", cols, on_rows=on_rows)
    # Thousands of rows of numbers: not printed unless asked (clear the print area, or print a selection).
    L.not_printed(data_sheet, len(cols))
    ev = L.add_sheet(wb, "Evidence")
    write_evidence(ev, evidence)
    L.header_footer(ev, f"Capacity test {outcome.test_id}")
    L.not_printed(ev, 8)
    step("data")

    table = ChartTable("Chart data")
    # Overview: all blocks on one chart, fewer points per block as the string grows.
    ov_points = max(200, min(chart_points, OVERVIEW_POINT_BUDGET // n_blocks))
    ob = make_buckets(t0, t1, ov_points)
    ox_ref = table.add("overview time", site.serial(ob.point_times_ms()), number_format=DATETIME_FORMAT)
    failing = {b.serial for b in rep.blocks if b.disposition == "fail"} if rep is not None else set()
    highlight = [s for s in series if s.identity.serial in failing]
    hl_colour = {s.identity.serial: HIGHLIGHT_COLOURS[k % len(HIGHLIGHT_COLOURS)] for k, s in enumerate(highlight)}
    named = ", ".join(names[j] for j, s in enumerate(series) if s.identity.serial in failing)
    suffix = f" (failing: {named}; other blocks grey)" if named else ""
    # Failing blocks in distinct strong colours, drawn last (on top); the others muted grey.
    muted = bool(failing)
    ov = time_chart(f"All blocks: voltage, test {outcome.test_id}{suffix}", "Voltage (V)", window.x_title,
                    x_min=window.x_min, x_max=window.x_max, x_format=window.x_format,
                    legend=n_blocks <= 24 and not muted)
    tc = time_chart(f"All blocks: temperature, test {outcome.test_id}{suffix}", "Temperature (C)", window.x_title,
                    x_min=window.x_min, x_max=window.x_max, x_format=window.x_format,
                    legend=n_blocks <= 24 and not muted)
    lo_hi: list[float] = []
    t_lo_hi: list[float] = []
    order = sorted(range(n_blocks), key=lambda j: series[j].identity.serial in failing)
    for j in order:
        s = series[j]
        env = minmax_envelope(s.t_ms, s.mv, ob, divide=1000.0)
        lo_hi += [float(np.nanmin(env)), float(np.nanmax(env))] if np.isfinite(env).any() else []
        tenv = minmax_envelope(s.t_ms, s.dc, ob, divide=10.0)
        t_lo_hi += [float(np.nanmin(tenv)), float(np.nanmax(tenv))] if np.isfinite(tenv).any() else []
        ref = table.add(f"overview {names[j]} V", env, decimals=3)
        tref = table.add(f"overview {names[j]} C", tenv, decimals=1)
        if s.identity.serial in failing:
            colour, width = hl_colour[s.identity.serial], 2.0
        elif muted:
            colour, width = MUTED_COLOUR, 0.5
        else:
            colour, width = SERIES_COLOURS[j % len(SERIES_COLOURS)], 0.75
        add_line(ov, ox_ref, ref, f"{names[j]} {s.identity.serial}", colour, width_pt=width)
        add_line(tc, ox_ref, tref, f"{names[j]} {s.identity.serial}", colour, width_pt=width)
    # The low thresholds of the string, if all blocks share them (the usual case).
    timelines = {tuple(thresholds_timeline(s)) for s in series}
    if len(timelines) == 1:
        lines = threshold_lines_for(table, "overview", list(next(iter(timelines))), t0, t1,
                                    Quantity.VOLTAGE, site.serial)
        add_threshold_lines(ov, [ln for ln in lines if ln.side is Side.LOW])
        th = series[0].config.thresholds
        lo_hi += [th.v_low_alarm_mv / 1000.0, th.v_low_warn_mv / 1000.0]
        tlines = threshold_lines_for(table, "overview temperature", list(next(iter(timelines))), t0, t1,
                                     Quantity.TEMPERATURE, site.serial)
        add_threshold_lines(tc, [ln for ln in tlines if ln.side is Side.HIGH])
        t_lo_hi += [th.t_high_warn_dc / 10.0, th.t_high_alarm_dc / 10.0]
    ov.y_axis.scaling.min, ov.y_axis.scaling.max = nice_range(lo_hi) or (None, None)
    tc.y_axis.scaling.min, tc.y_axis.scaling.max = nice_range(t_lo_hi) or (None, None)
    overview.add_chart(ov, "A1")
    overview.add_chart(tc, "A24")
    # The string voltage (sum of the blocks on the Data grid) with the string end voltage and the
    # discharge start and end.
    sv = string_voltage(v, n_string=n_blocks)
    stride = max(1, len(grid) // max(ov_points, 1))
    sx = site.serial(grid[::stride])
    sref_x = table.add("string time", sx, number_format=DATETIME_FORMAT)
    sref_y = table.add("string V", sv[::stride], decimals=2)
    sc = time_chart(f"String voltage, test {outcome.test_id}", "String voltage (V)", window.x_title,
                    x_min=window.x_min, x_max=window.x_max, x_format=window.x_format, legend=True)
    add_line(sc, sref_x, sref_y, "string voltage (sum of the logged blocks)", VOLTAGE_COLOUR)
    s_lo_hi = [float(np.nanmin(sv)), float(np.nanmax(sv))] if np.isfinite(sv).any() else []
    end_v = rep.string_end_voltage_v if rep is not None else None
    if end_v is not None:
        ex = table.add("end voltage time", site.serial(np.array([t0, t1])), number_format=DATETIME_FORMAT)
        ey = table.add("end voltage", [end_v, end_v], decimals=2)
        add_line(sc, ex, ey, f"string end voltage {end_v:.1f} V", ALARM_COLOUR, dash="dash")
        s_lo_hi.append(end_v)
    yr = nice_range(s_lo_hi)
    if yr is not None:
        sc.y_axis.scaling.min, sc.y_axis.scaling.max = yr
        for what, t_ms in (("discharge start", outcome.start_ms),
                           ("discharge end", rep.end_ms if rep is not None else None)):
            if t_ms is None:
                continue
            mx = table.add(f"{what} time", site.serial(np.array([t_ms, t_ms])), number_format=DATETIME_FORMAT)
            my = table.add(what, list(yr), decimals=2)
            add_line(sc, mx, my, f"{what} {site.local_datetime(t_ms):%H:%M:%S}", MARKER_COLOUR, dash="sysDash")
    overview.add_chart(sc, "A47")
    blocks = sorted(outcome.blocks, key=lambda b: b.position)
    lower = ({b.serial for b in rep.blocks if b.lower_bound} if rep is not None else set())
    fail_set = failing
    bar = capacity_bar_chart(table, [str(b.position) for b in blocks], [b.capacity_pct for b in blocks],
                             limit_pct=REPLACE_PCT, title=f"Capacity per block, test {outcome.test_id}",
                             kinds=[("fail" if b.serial in fail_set else "bound" if b.serial in lower else "measured")
                                    for b in blocks] if rep is not None else None)
    overview.add_chart(bar, "A70")
    # Two charts a page: voltage and temperature, then string voltage and capacity.
    overview.row_breaks.append(Break(id=46))
    step("overview")

    # One sheet per block, all on one shared reduced time base.
    buckets = make_buckets(t0, t1, chart_points)
    x_ref = table.add("time", site.serial(buckets.point_times_ms()), number_format=DATETIME_FORMAT)
    taken = {n.lower() for n in wb.sheetnames} | {"chart data"}
    cache: dict[tuple[object, ...], tuple[list[ThresholdLine], list[ThresholdLine]]] = {}
    by_serial = {b.serial: b for b in outcome.blocks}
    for nm, s in zip(names, series, strict=True):
        ws = L.add_sheet(wb, L.sheet_name(f"{nm} {s.identity.serial}", taken))
        L.print_setup(ws)
        ws.page_setup.fitToHeight = 1  # each block on one page
        L.header_footer(ws, f"Capacity test {outcome.test_id}")
        b = by_serial.get(s.identity.serial)
        head = f"{nm} {s.identity.serial}"
        row_b = {r.serial: r for r in rep.blocks}.get(s.identity.serial) if rep is not None else None
        if row_b is not None:
            head += f": capacity {row_b.capacity_text} - {row_b.result_word}"
            fill_b = PatternFill("solid", start_color=COLOURS.get(row_b.disposition, "FFFFFF"),
                                 end_color=COLOURS.get(row_b.disposition, "FFFFFF"))
            ws.append([L.cell(ws, head, font=L.SECTION_FONT, fill=fill_b)])
        else:
            if b is not None and b.capacity_pct is not None:
                head += f": capacity {b.capacity_pct:.1f} % ({b.status})"
            ws.append([L.cell(ws, head, font=L.SECTION_FONT,
                              fill=L.level_fill(b.status) if b is not None else None)])
        add_logger_charts(ws, table, s, window, buckets, x_ref, prefix=nm, anchor_rows=(2, 26),
                          threshold_cache=cache)
        step("block")
    table.write(wb, on_rows=on_rows)
    return wb


def _progress_steps(progress: Progress | None, n_blocks: int) -> Callable[[str], None]:
    """Map build stages to a 0..0.6 fraction (saving takes the rest)."""
    done = [0]
    total = n_blocks + 2

    def step(stage: str) -> None:
        done[0] += 1
        if progress is not None:
            progress(stage, 0.6 * done[0] / total)

    return step


def write_string_report(path: str | os.PathLike[str], outcome: StringTestOutcome,
                        series: Sequence[SampleSeries], *, exceedances: Sequence[ExceedanceRow] = (),
                        evidence: Sequence[EvidenceRow] = (), tz: str | SiteTime | None = "UTC",
                        resolution_s: float = DEFAULT_RESOLUTION_S,
                        chart_points: int = DEFAULT_CHART_POINTS,
                        progress: Progress | None = None,
                        compresslevel: int = DEFAULT_COMPRESSLEVEL) -> Path:
    """Write the string report to ``path`` (atomically); returns the path."""
    check_target(path)
    wb = build_string_report(outcome, series, exceedances=exceedances, evidence=evidence, tz=tz,
                             resolution_s=resolution_s, chart_points=chart_points, progress=progress)
    out = save_workbook(wb, path, compresslevel=compresslevel)
    if progress:
        progress("saved", 1.0)
    return out


def string_report_bytes(outcome: StringTestOutcome, series: Sequence[SampleSeries], *,
                        exceedances: Sequence[ExceedanceRow] = (), evidence: Sequence[EvidenceRow] = (),
                        tz: str | SiteTime | None = "UTC", resolution_s: float = DEFAULT_RESOLUTION_S,
                        chart_points: int = DEFAULT_CHART_POINTS, progress: Progress | None = None,
                        compresslevel: int = DEFAULT_COMPRESSLEVEL) -> bytes:
    """The string report as .xlsx bytes, built in memory (what the API stores; no file is written)."""
    wb = build_string_report(outcome, series, exceedances=exceedances, evidence=evidence, tz=tz,
                             resolution_s=resolution_s, chart_points=chart_points, progress=progress)
    data = workbook_bytes(wb, compresslevel=compresslevel)
    if progress:
        progress("saved", 1.0)
    return data
