"""Styled rows for the human-facing sheets (Summary, Exceedances, Evidence).

Owns the house look of text sheets written in openpyxl write-only mode:
titles, label/value blocks, tables with a bold header, the yellow (warning)
and red (alarm) fills, the provenance banner for SIMULATED/REPLAYED data, and
safe sheet names. Rows are appended in order (write-only sheets cannot go
back), so helpers take the sheet and return nothing but what callers need.

Every string goes through ``cell`` (``TextSheet.append`` wraps bare values), which
writes it as text, never as a formula (``export.celltext``): labels, site names and
test ids come from logfiles and users.

Does not own charts (``export.charts``) or bulk numeric sheets
(``export.sheetstream``).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from typing import Any

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Alignment, Border, Font, PatternFill, Side
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.properties import PageSetupProperties

from smartlogger.compat import openpyxl as xl
from smartlogger.compat.openpyxl import StyleArray, WriteOnlySheet
from smartlogger.export.celltext import formula_like, sheet_text
from smartlogger.model import Level

#: Fills: yellow = warning (slight/brief), red = alarm (massive/long), green = fine.
WARNING_FILL = PatternFill("solid", start_color="FFEB84", end_color="FFEB84")
ALARM_FILL = PatternFill("solid", start_color="FF7C80", end_color="FF7C80")
OK_FILL = PatternFill("solid", start_color="A9D08E", end_color="A9D08E")
HEADER_FILL = PatternFill("solid", start_color="D9E1F2", end_color="D9E1F2")
BANNER_FILL = PatternFill("solid", start_color="C00000", end_color="C00000")

TITLE_FONT = Font(bold=True, size=16)
SECTION_FONT = Font(bold=True, size=12, color="1F4E79")
BOLD = Font(bold=True)
BANNER_FONT = Font(bold=True, size=12, color="FFFFFF")
WARNING_TEXT = Font(bold=True, color="C65911")  # orange, as the warning lines
ALARM_TEXT = Font(bold=True, color="C00000")  # red, as the alarm lines
_THIN = Side(style="thin", color="BFBFBF")
GRID = Border(left=_THIN, right=_THIN, top=_THIN, bottom=_THIN)

DATETIME_FORMAT = "yyyy-mm-dd hh:mm:ss"
#: A duration held as an Excel time value (days), shown as h:mm:ss past 24 h too.
DURATION_FORMAT = "[h]:mm:ss"

_BAD_SHEET_CHARS = re.compile(r"[\[\]:*?/\\]")


class TextSheet(WriteOnlySheet):
    """A write-only sheet that knows how many rows it has written.

    Write-only sheets cannot be read back while writing; conditional formatting
    and merged ranges need the row numbers of what was just appended.
    """

    def __init__(self, parent: Workbook, title: str) -> None:
        super().__init__(parent, title)
        self.rows_written = 0

    def append(self, row: Any) -> None:
        # A bare string would become a formula if it starts with "=": make every one a text cell.
        super().append([cell(self, v) if isinstance(v, str) else v for v in row])
        self.rows_written += 1


def add_sheet(wb: Workbook, title: str) -> TextSheet:
    """Add a ``TextSheet`` to a write-only workbook (after the existing sheets)."""
    ws = TextSheet(wb, title)
    xl.add_sheet(wb, ws)
    return ws


def level_fill(level: Level | str | None) -> PatternFill | None:
    """The fill for an exceedance level or a traffic-light status."""
    key = level.value if isinstance(level, Level) else (level or "")
    if key in ("alarm", "fail", "FAIL", "red"):
        return ALARM_FILL
    if key in ("warning", "yellow"):
        return WARNING_FILL
    if key in ("ok", "pass", "PASS", "green"):
        return OK_FILL
    return None


def evidence_fill(status: str) -> PatternFill:
    """Green for hardware evidence, yellow for intact data that is not evidence (simulated,
    unsigned), red for data that must not be relied on (tampered, unreadable, excluded)."""
    if status == "verified":
        return OK_FILL
    if status in ("simulated", "unsigned"):
        return WARNING_FILL
    return ALARM_FILL


def cell(ws: WriteOnlySheet, value: Any, *, font: Font | None = None, fill: PatternFill | None = None,
         number_format: str | None = None, border: bool = False, wrap: bool = False,
         align: str | None = None) -> WriteOnlyCell:
    """A write-only cell with the given look; a string is always a text cell, never a formula.

    Style lookups in openpyxl cost ~40 us per attribute; a table of thousands of
    exceedances would spend seconds there, so the resolved style of each look is
    cached per workbook and copied onto new cells.
    """
    quote = False
    if isinstance(value, str):
        value = sheet_text(value)
        quote = formula_like(value)
    c = WriteOnlyCell(ws, value=value)
    if isinstance(value, str):
        c.data_type = "s"  # openpyxl would store a leading "=" as a formula
    if number_format is None and isinstance(value, dt.datetime):
        number_format = DATETIME_FORMAT
    look = (font, fill, number_format, border, wrap, align, quote)
    if look == (None, None, None, False, False, None, False):
        return c
    # The cache lives on the workbook: style ids index that workbook's style tables.
    cache: dict[tuple[object, ...], StyleArray] = ws.parent.__dict__.setdefault("_sl_style_cache", {})
    cached = cache.get(look)
    if cached is None:
        if font is not None:
            c.font = font
        if fill is not None:
            c.fill = fill
        if number_format is not None:
            c.number_format = number_format
        if border:
            c.border = GRID
        if wrap or align:
            c.alignment = Alignment(wrap_text=wrap, horizontal=align, vertical="top")
        if quote:
            c.quotePrefix = True  # retyping the cell in a spreadsheet keeps it text
        cache[look] = xl.style_array(c)
    else:
        xl.set_style_array(c, cached)
    return c


def set_widths(ws: WriteOnlySheet, widths: Sequence[float]) -> None:
    """Column widths in characters; must be called before the first row is appended."""
    for i, w in enumerate(widths, 1):
        ws.column_dimensions[get_column_letter(i)].width = w


def title(ws: WriteOnlySheet, text: str) -> None:
    ws.append([cell(ws, text, font=TITLE_FONT)])


def section(ws: WriteOnlySheet, text: str) -> None:
    ws.append([])
    ws.append([cell(ws, text, font=SECTION_FONT)])


def banner(ws: TextSheet, markers: Iterable[str], width: int = 6) -> None:
    """A red banner when data is SIMULATED/REPLAYED: it can never pass as hardware evidence."""
    marks = sorted(set(markers))
    if not marks:
        return
    row = ws.rows_written + 1
    text = " + ".join(marks) + " DATA: not evidence from real logger hardware"
    ws.append([cell(ws, text, font=BANNER_FONT, fill=BANNER_FILL)]
              + [cell(ws, None, fill=BANNER_FILL) for _ in range(width - 1)])
    ws.merged_cells.add(f"A{row}:{get_column_letter(width)}{row}")


def print_setup(ws: WriteOnlySheet, *, landscape: bool = True) -> None:
    """Print on A4, fit to one page wide (the summary is archived as PDF)."""
    ws.page_setup.orientation = "landscape" if landscape else "portrait"
    ws.page_setup.paperSize = "9"  # A4
    ws.page_setup.fitToWidth = 1
    ws.page_setup.fitToHeight = 0
    ws.sheet_properties.pageSetUpPr = PageSetupProperties(fitToPage=True)


def header_footer(ws: WriteOnlySheet, what: str) -> None:
    """Every printed page names what it is of (``what``: "Capacity test T1", "Logger SL2-000001") and
    the sheet, and counts "page x of y"."""
    ws.oddHeader.left.text = what.replace("&", "&&")
    ws.oddHeader.right.text = "&A"
    ws.oddFooter.left.text = "smartlogger"
    ws.oddFooter.right.text = "page &P of &N"


def not_printed(ws: WriteOnlySheet, n_cols: int) -> None:
    """Leave a sheet of data out of printing: its print area is one empty cell right of its
    ``n_cols`` columns, and an empty print area prints no page (Calc suppresses empty pages; Excel
    finds nothing to print). A data table is hundreds of pages nobody asked for; to print it, clear
    the sheet's print area (Page Layout > Print Area > Clear) or print a selection."""
    ws.print_area = f"{get_column_letter(n_cols + 2)}1"


def pairs(ws: WriteOnlySheet, rows: Iterable[tuple[str, Any]],
          fills: dict[str, PatternFill | None] | None = None) -> None:
    """Label/value rows; ``fills`` maps a label to the fill of its value cell."""
    fills = fills or {}
    for label, value in rows:
        ws.append([cell(ws, label, font=BOLD), cell(ws, value, fill=fills.get(label))])


def table(ws: WriteOnlySheet, headers: Sequence[str], rows: Iterable[Sequence[Any]], *,
          row_fills: Iterable[PatternFill | None] | None = None,
          formats: Sequence[str | None] | None = None) -> int:
    """A bordered table with a bold header; returns the number of data rows."""
    ws.append([cell(ws, h, font=BOLD, fill=HEADER_FILL, border=True, wrap=True) for h in headers])
    fills = iter(row_fills) if row_fills is not None else None
    n = 0
    for row in rows:
        fill = next(fills, None) if fills is not None else None
        out = []
        for j, v in enumerate(row):
            fmt = formats[j] if formats is not None and j < len(formats) else None
            out.append(cell(ws, v, fill=fill, border=True, number_format=fmt))
        ws.append(out)
        n += 1
    return n


def sheet_name(text: str, taken: set[str]) -> str:
    """A valid, unique sheet name (<= 31 chars, none of []:*?/\\ or quotes), recorded in ``taken``."""
    base = _BAD_SHEET_CHARS.sub("-", sheet_text(text)).replace("'", "-")[:31] or "Sheet"
    name = base
    k = 2
    while name.lower() in taken:
        suffix = f" ({k})"
        name = base[: 31 - len(suffix)] + suffix
        k += 1
    taken.add(name.lower())
    return name


def hours(seconds: float | None) -> str:
    """``3 h 25 min 10 s`` for a duration."""
    if seconds is None:
        return "-"
    s = round(seconds)
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    if h:
        return f"{h} h {m:02d} min {sec:02d} s"
    if m:
        return f"{m} min {sec:02d} s"
    return f"{sec} s"
