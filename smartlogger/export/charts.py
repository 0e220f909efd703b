"""Shared native-chart builders: time charts with threshold lines, capacity bars.

Owns the look every workbook shares: a scatter chart with time on x (Excel
date serials in the site's local time, the offset stated in the axis title),
measured series as thin coloured lines without markers, warning thresholds as
dashed ORANGE lines and alarm thresholds as dashed RED lines (the colours the
technicians know from the app), and the per-block capacity bar chart with the
80 % replacement line.

Also owns ``ChartTable``: the hidden sheet of chart source ranges. A chart can
only plot cell ranges, so reduced series and threshold step lines are written
as columns of one ``NumericSheet`` and the charts reference them by A1 range.

Does not own the data reduction (``export.reduce``) or any sheet layout.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from openpyxl import Workbook
from openpyxl.chart import BarChart, LineChart, Reference, ScatterChart, Series
from openpyxl.chart.series import XYSeries
from openpyxl.utils import get_column_letter, quote_sheetname

from smartlogger.export.celltext import sheet_text
from smartlogger.export.sheetstream import Column, NumericSheet, add_numeric_sheet
from smartlogger.model import Level, Quantity, Side, Thresholds

#: Threshold colours (RGB hex). Orange = warning, red = alarm, as in the app.
WARNING_COLOUR = "FF8C00"
ALARM_COLOUR = "FF0000"
#: Measured voltage / temperature of a single logger.
VOLTAGE_COLOUR = "1F4E79"
TEMPERATURE_COLOUR = "2E7D32"
#: Cycle for many blocks on one chart (no orange/red: those mean thresholds).
SERIES_COLOURS = ("1F77B4", "2CA02C", "9467BD", "8C564B", "E377C2", "7F7F7F", "4B0082",
                  "17BECF", "393B79", "637939", "005F73", "7B4173", "3182BD", "31A354")

EMU_PER_PT = 12_700
DATA_LINE_PT = 1.25
THRESHOLD_LINE_PT = 1.5

#: Chart size on a sheet, cm.
CHART_W_CM = 26.0
CHART_H_CM = 11.0


@dataclass
class ChartTable:
    """Columns for a hidden chart-data sheet; hands out A1 references before it exists.

    Columns may have different lengths (shorter ones are padded with empty cells);
    a reference covers exactly the rows of its column.
    """

    title: str
    columns: list[Column] = field(default_factory=list)

    def add(self, header: str, values: npt.ArrayLike, *, decimals: int | None = None,
            number_format: str | None = None) -> str:
        """Add a column; returns the absolute range of its values (header excluded)."""
        arr = np.asarray(values, dtype=np.float64)
        self.columns.append(Column(header, arr, decimals, number_format))
        col = len(self.columns)
        letter = get_column_letter(col)
        last = max(2, len(arr) + 1)
        return f"{quote_sheetname(self.title)}!${letter}$2:${letter}${last}"

    def write(self, wb: Workbook, *, hidden: bool = True,
              on_rows: Callable[[int], None] | None = None) -> NumericSheet:
        """Add the sheet to ``wb`` (pads columns to equal length with empty cells)."""
        n = max((len(c.values) for c in self.columns), default=0)
        cols = []
        for c in self.columns:
            v = c.values
            if len(v) < n:
                v = np.concatenate([v, np.full(n - len(v), np.nan)])
            cols.append(Column(c.header, v, c.decimals, c.number_format, c.width))
        if not cols:
            cols = [Column("(no chart data)", np.zeros(0))]
        return add_numeric_sheet(wb, self.title, cols, freeze_header=False, hidden=hidden,
                                 on_rows=on_rows)


@dataclass(frozen=True)
class ThresholdLine:
    """One threshold level as a step line over time (values in display units, V or C)."""

    label: str
    level: Level
    x_ref: str
    y_ref: str
    side: Side = Side.LOW


def threshold_steps(timeline: Sequence[tuple[int, Thresholds]], t0_ms: int, t1_ms: int,
                    quantity: Quantity) -> tuple[npt.NDArray[np.int64], dict[tuple[Side, Level], npt.NDArray[np.float64]]]:
    """Step-line points of the four thresholds of ``quantity`` over ``[t0_ms, t1_ms]``.

    Returns x (ms) and, per (side, level), y in display units (V or C). A
    configuration change at ``t`` gives two points at ``t`` (old and new level)
    so the line steps vertically instead of sloping.
    """
    scale = 1000.0 if quantity is Quantity.VOLTAGE else 10.0
    steps = [(max(int(t), t0_ms), th) for t, th in timeline if t <= t1_ms]
    if not steps:
        steps = [(t0_ms, timeline[0][1])]
    # The first step starts at the window start even if the config is older.
    steps[0] = (t0_ms, steps[0][1])
    xs: list[int] = []
    ths: list[Thresholds] = []
    for i, (t, th) in enumerate(steps):
        end = steps[i + 1][0] if i + 1 < len(steps) else t1_ms
        xs += [t, end]
        ths += [th, th]
    ys = {}
    for side in (Side.LOW, Side.HIGH):
        for level in (Level.WARNING, Level.ALARM):
            ys[(side, level)] = np.array([th.level(quantity, side, level) / scale for th in ths])
    return np.array(xs, dtype=np.int64), ys


def time_chart(title: str, y_title: str, x_title: str, *, x_min: float, x_max: float,
               x_format: str, legend: bool = True,
               y_range: tuple[float, float] | None = None) -> ScatterChart:
    """An empty scatter chart with a time x axis (Excel serials) and straight lines.

    ``y_range`` fixes the value axis (see ``nice_range``); None lets the viewer scale.
    """
    chart = ScatterChart()
    chart.title = sheet_text(title)  # titles carry labels and test ids from data
    chart.style = 2
    chart.scatterStyle = "line"
    chart.height = CHART_H_CM
    chart.width = CHART_W_CM
    chart.x_axis.title = x_title
    chart.y_axis.title = y_title
    chart.x_axis.number_format = x_format
    chart.x_axis.scaling.min = x_min
    chart.x_axis.scaling.max = x_max if x_max > x_min else x_min + 1.0 / 1440
    chart.x_axis.majorUnit = time_major_unit(x_max - x_min)
    chart.x_axis.majorTickMark = "out"
    if y_range is not None:
        chart.y_axis.scaling.min, chart.y_axis.scaling.max = y_range
    # openpyxl >= 3.1 leaves <c:delete> unset, which Excel reads as "axis deleted".
    chart.x_axis.delete = False
    chart.y_axis.delete = False
    chart.y_axis.crosses = "min"
    chart.x_axis.crosses = "min"
    chart.x_axis.majorGridlines = None  # y gridlines only: levels matter, not ticks of time
    if legend:
        chart.legend.position = "b"
    else:
        chart.legend = None
    return chart


#: Tick steps for a time axis, in days: 1 min .. 1 year.
_TIME_STEPS = (*tuple(m / 1440 for m in (1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720)), 1, 2, 7, 14, 30, 91, 182, 365)


def time_major_unit(span_days: float, max_ticks: int = 10) -> float:
    """The smallest round tick step (days) giving at most ``max_ticks`` ticks."""
    for step in _TIME_STEPS:
        if span_days / step <= max_ticks:
            return float(step)
    return float(365 * math.ceil(span_days / 365 / max_ticks))


def nice_range(values: Sequence[float], margin: float = 0.05) -> tuple[float, float] | None:
    """A value-axis range holding ``values`` (data extremes and threshold levels) with a
    small margin, rounded outward to a round step, so thresholds are visible but the
    axis does not start at zero (a 12 V block would be a flat line)."""
    finite = [float(v) for v in values if v == v]
    if not finite:
        return None
    lo, hi = min(finite), max(finite)
    span = hi - lo or max(abs(hi), 1.0) * 0.1
    lo -= span * margin
    hi += span * margin
    step = 10 ** math.floor(math.log10(span / 5))
    for k in (1, 2, 5, 10):
        if span / (k * step) <= 8:
            step *= k
            break
    return (math.floor(lo / step) * step, math.ceil(hi / step) * step)


def add_line(chart: ScatterChart, x_ref: str, y_ref: str, title: str, colour: str, *,
             width_pt: float = DATA_LINE_PT, dash: str | None = None) -> XYSeries:
    """Add a straight line series without markers."""
    s: XYSeries = Series(y_ref, xvalues=x_ref, title=sheet_text(title))
    s.marker.symbol = "none"
    s.smooth = False
    line = s.graphicalProperties.line
    line.solidFill = colour
    line.width = int(width_pt * EMU_PER_PT)
    if dash:
        line.prstDash = dash
    chart.series.append(s)
    return s


def add_threshold_lines(chart: ScatterChart, lines: Sequence[ThresholdLine]) -> None:
    """Warning lines orange, alarm lines red, both dashed."""
    for ln in lines:
        colour = ALARM_COLOUR if ln.level is Level.ALARM else WARNING_COLOUR
        add_line(chart, ln.x_ref, ln.y_ref, ln.label, colour, width_pt=THRESHOLD_LINE_PT,
                 dash="dash")


def threshold_lines_for(table: ChartTable, prefix: str, timeline: Sequence[tuple[int, Thresholds]],
                        t0_ms: int, t1_ms: int, quantity: Quantity,
                        to_serial: Callable[[npt.ArrayLike], npt.NDArray[np.float64]]) -> list[ThresholdLine]:
    """Write the four threshold step lines of ``quantity`` into ``table``; return their refs.

    ``to_serial`` converts ms to Excel serials (``SiteTime.serial``).
    """
    xs, ys = threshold_steps(timeline, t0_ms, t1_ms, quantity)
    x_ref = table.add(f"{prefix} threshold time", to_serial(xs))
    unit = "V" if quantity is Quantity.VOLTAGE else "C"
    out = []
    for (side, level), y in ys.items():
        label = f"{level.value} {side.value} ({_fmt_level(y, unit)})"
        y_ref = table.add(f"{prefix} {level.value} {side.value} {unit}", y,
                          decimals=3 if unit == "V" else 1)
        out.append(ThresholdLine(label, level, x_ref, y_ref, side))
    # Alarm last so red is drawn over orange where they coincide.
    out.sort(key=lambda ln: ln.level is Level.ALARM)
    return out


def _fmt_level(y: npt.NDArray[np.float64], unit: str) -> str:
    vals = sorted({float(v) for v in y})
    fmt = "{:.2f}" if unit == "V" else "{:.1f}"
    return "/".join(fmt.format(v) for v in vals) + f" {unit}"


def capacity_bar_chart(table: ChartTable, positions: Sequence[str], capacity_pct: Sequence[float | None],
                       *, limit_pct: float = 80.0, title: str = "Capacity per block",
                       kinds: Sequence[str] | None = None) -> BarChart:
    """Bars of capacity % per block with a red line at ``limit_pct`` (the replacement limit).

    ``kinds`` ("fail", "measured", "bound" per block) splits the bars into three series: failed
    red, measured blue, lower bounds ("≥", not determined further) muted grey, never red."""
    n = len(positions)
    # Categories must be text for a bar chart axis; the table sheet is numeric, so the
    # category axis uses block positions as numbers (1..n is also what the label says).
    cat_ref = table.add("block position", [float(p) if str(p).isdigit() else i + 1
                                           for i, p in enumerate(positions)])
    val_ref = table.add("capacity %", [np.nan if c is None else c for c in capacity_pct], decimals=1)
    lim_ref = table.add(f"{limit_pct:g} % limit", [limit_pct] * n)
    bar = BarChart()
    bar.type = "col"
    bar.title = sheet_text(title)
    bar.style = 2
    bar.height = CHART_H_CM
    bar.width = CHART_W_CM
    bar.y_axis.title = "Capacity (% of rated)"
    bar.x_axis.title = "Block position"
    bar.y_axis.scaling.min = 0
    bar.x_axis.delete = False
    bar.y_axis.delete = False
    bar.gapWidth = 30
    if kinds is None:
        bars = Series(val_ref, title="Capacity %")
        bars.graphicalProperties.solidFill = VOLTAGE_COLOUR
        bars.graphicalProperties.line.solidFill = VOLTAGE_COLOUR
        bar.series.append(bars)
    else:
        bar.overlap = 100  # one slot per block: each block is in exactly one of the series
        for kind, label, colour in (("fail", "failed (measured, below the limit)", "D62728"),
                                    ("measured", "measured", VOLTAGE_COLOUR),
                                    ("bound", "lower bound (≥), not determined further", "A6B3C4")):
            vals = [np.nan if c is None or k != kind else c for c, k in zip(capacity_pct, kinds, strict=True)]
            if all(np.isnan(x) for x in vals):
                continue
            ref = table.add(f"capacity % {kind}", vals, decimals=1)
            ser = Series(ref, title=label)
            ser.graphicalProperties.solidFill = colour
            ser.graphicalProperties.line.solidFill = colour
            bar.series.append(ser)
    bar.set_categories(Reference(range_string=cat_ref))
    line = LineChart()
    ls = Series(lim_ref, title=f"{limit_pct:g} % replacement limit")
    ls.marker.symbol = "none"
    ls.smooth = False
    ls.graphicalProperties.line.solidFill = ALARM_COLOUR
    ls.graphicalProperties.line.width = int(THRESHOLD_LINE_PT * EMU_PER_PT)
    ls.graphicalProperties.line.prstDash = "dash"
    line.series.append(ls)
    line.set_categories(Reference(range_string=cat_ref))
    bar.legend.position = "b"
    bar += line  # same axes: the limit line is drawn across the category axis
    return bar
