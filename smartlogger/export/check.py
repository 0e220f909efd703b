"""Self-check of a written workbook: every chart plots real data, thresholds have their colours.

Owns ``inspect_workbook``/``check_workbook``: reads an ``.xlsx`` back with
openpyxl (an independent reader: it parses the package our writer produced)
and reports every chart, each series' ranges, whether those ranges exist and
hold numbers, and the line colour of each threshold series (warning = orange,
alarm = red). Used by the tests and available to callers that want to refuse
a broken export before it is mailed to a customer. ``formula_cells`` lists every
cell formula in a package (our workbooks have none: text from data is never a
formula, see ``export.celltext``); ``check_workbook`` reports each as a problem.

Does not render anything; LibreOffice conversion lives in the tests.
"""

from __future__ import annotations

import datetime as dt
import os
import zipfile
from dataclasses import dataclass, field
from typing import Any
from xml.etree import ElementTree

from openpyxl import load_workbook
from openpyxl.utils.cell import range_to_tuple

from smartlogger.compat.openpyxl import charts_of
from smartlogger.export.charts import ALARM_COLOUR, WARNING_COLOUR


@dataclass(frozen=True)
class SeriesInfo:
    title: str
    refs: tuple[str, ...]  # y (or values) first, then x / categories
    colour: str | None  # line colour RGB hex
    dash: str | None
    points: int  # numeric cells in the y range


@dataclass
class ChartInfo:
    sheet: str
    kind: str  # "scatter", "bar", ...
    title: str
    series: list[SeriesInfo] = field(default_factory=list)


@dataclass
class WorkbookInfo:
    sheets: list[str]
    hidden: list[str]
    charts: list[ChartInfo]
    problems: list[str]


def _text(title: Any) -> str:
    try:
        return "".join(r.t for p in title.tx.rich.p for r in (p.r or []))
    except AttributeError:
        return ""


def _series_title(s: Any) -> str:
    if s.tx is None:
        return ""
    return str(s.tx.v) if s.tx.v is not None else str(s.tx.strRef.f if s.tx.strRef else "")


def _refs(s: Any) -> list[str]:
    out = []
    for name in ("yVal", "val", "xVal", "cat"):
        src = getattr(s, name, None)
        if src is None:
            continue
        ref = src.numRef if getattr(src, "numRef", None) is not None else getattr(src, "strRef", None)
        if ref is not None and ref.f:
            out.append(str(ref.f))
    return out


def inspect_workbook(path: str | os.PathLike[str]) -> WorkbookInfo:
    """Everything ``check_workbook`` judges, as data."""
    wb = load_workbook(path)  # not read-only: charts are only loaded in normal mode
    info = WorkbookInfo(wb.sheetnames, [ws.title for ws in wb.worksheets if ws.sheet_state != "visible"],
                        [], [])
    for ws in wb.worksheets:
        for ch in charts_of(ws):
            ci = ChartInfo(ws.title, ch.tagname.replace("Chart", "").lower(), _text(ch.title))
            for s in ch.series:
                refs = _refs(s)
                points = 0
                for k, ref in enumerate(refs):
                    try:
                        sheet, (c0, r0, c1, r1) = range_to_tuple(ref)
                    except (ValueError, TypeError):
                        info.problems.append(f"{ws.title}/{ci.title}: bad reference {ref!r}")
                        continue
                    sheet = sheet.strip("'")
                    if sheet not in wb.sheetnames:
                        info.problems.append(f"{ws.title}/{ci.title}: reference {ref} names a missing sheet")
                        continue
                    src = wb[sheet]
                    if r1 > src.max_row or c1 > src.max_column:
                        info.problems.append(f"{ws.title}/{ci.title}: reference {ref} is beyond the data "
                                             f"of {sheet!r} ({src.max_row} rows, {src.max_column} cols)")
                        continue
                    n = sum(1 for row in src.iter_rows(min_row=r0, max_row=r1, min_col=c0, max_col=c1,
                                                       values_only=True)
                            for v in row if isinstance(v, int | float | dt.datetime))
                    # Date-formatted serials read back as datetimes: numbers too.
                    if n == 0:
                        info.problems.append(f"{ws.title}/{ci.title}: reference {ref} holds no numbers")
                    if k == 0:
                        points = n
                colour = dash = None
                ln = s.spPr.ln if s.spPr is not None else None
                if ln is not None:
                    if ln.solidFill is not None and ln.solidFill.srgbClr is not None:
                        colour = str(ln.solidFill.srgbClr if isinstance(ln.solidFill.srgbClr, str)
                                     else ln.solidFill.srgbClr.val).upper()
                    dash = ln.prstDash
                ci.series.append(SeriesInfo(_series_title(s), tuple(refs), colour, dash, points))
            info.charts.append(ci)
    return info


_MAIN_NS = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"


def formula_cells(path: str | os.PathLike[str]) -> list[str]:
    """Every cell holding a formula, as ``part!A1`` (``part`` = the sheet's file in the package).

    Reads the sheet XML itself (not through openpyxl), so it sees exactly what a spreadsheet
    program would evaluate."""
    found: list[str] = []
    with zipfile.ZipFile(path) as z:
        for part in sorted(n for n in z.namelist() if n.startswith("xl/worksheets/") and n.endswith(".xml")):
            with z.open(part) as fh:
                ref = ""
                for event, el in ElementTree.iterparse(fh, events=("start", "end")):
                    if event == "start" and el.tag == f"{_MAIN_NS}c":
                        ref = el.get("r", "?")
                    elif event == "end" and el.tag == f"{_MAIN_NS}f":
                        found.append(f"{part}!{ref}")
                    elif event == "end" and el.tag == f"{_MAIN_NS}row":
                        el.clear()  # large Data sheets: keep memory flat
    return found


def check_workbook(path: str | os.PathLike[str]) -> list[str]:
    """Problems found (empty = fine): dangling or empty chart ranges, threshold series
    in the wrong colour, any cell formula (text from data must never be one)."""
    info = inspect_workbook(path)
    problems = list(info.problems)
    problems += [f"formula cell {ref}" for ref in formula_cells(path)]
    for ch in info.charts:
        for s in ch.series:
            t = s.title.lower()
            if t.startswith("warning") and s.colour != WARNING_COLOUR:
                problems.append(f"{ch.sheet}/{ch.title}: warning line {s.title!r} is {s.colour}, "
                                f"not orange {WARNING_COLOUR}")
            if t.startswith("alarm") and s.colour != ALARM_COLOUR:
                problems.append(f"{ch.sheet}/{ch.title}: alarm line {s.title!r} is {s.colour}, "
                                f"not red {ALARM_COLOUR}")
    return problems
