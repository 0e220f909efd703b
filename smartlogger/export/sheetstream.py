"""Fast streaming of large numeric sheets into an openpyxl write-only workbook.

Owns ``NumericSheet`` (a write-only worksheet whose body is a numpy column
table serialised straight to SpreadsheetML), ``new_workbook`` and
``save_workbook``. Everything else in a workbook (styles, summary sheets,
charts, conditional formatting, relationships, the package manifest) is
written by openpyxl itself.

Why: openpyxl turns every value into a cell object and every cell into XML
through its element writer (about 146 k cells/s on this machine). Data sheets
of a string report hold millions of plain numbers, so a ``NumericSheet``
formats whole rows with one string operation per cell (several M cells/s) and
hands openpyxl a finished sheet part. The hook into openpyxl's write-only
contract is ``compat.openpyxl.StreamedSheet``: the sheet's XML is streamed straight
into the package's zip entry while the workbook is saved (no temporary file; every
other sheet is kept in memory by ``compat.openpyxl.WriteOnlySheet``), so a workbook
can be saved to a path (``save_workbook``, atomically) or to bytes
(``workbook_bytes``, what the API stores). Tests read every sheet back with
openpyxl and convert to PDF with LibreOffice to prove the parts are valid.

Cell references (``r``) are written on every row and cell even though the
format makes them optional: some readers mis-place cells without them. The only
text cells are the headers: inline strings (never formulas), XML-safe
(``export.celltext``), since they carry serials and block names.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import numpy as np
import numpy.typing as npt
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Alignment, Font
from openpyxl.utils import get_column_letter, quote_sheetname

from smartlogger.compat import openpyxl as xl
from smartlogger.errors import ExportError
from smartlogger.export.celltext import sheet_text

SHEET_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"

#: Excel's hard sheet limits.
MAX_ROWS = 1_048_576
MAX_COLS = 16_384

#: zlib level for the package. On sheet XML level 1 compresses ~4x faster than
#: zlib's default 6 (0.4 s vs 1.8 s for the 45 MB of XML of a 120-block report)
#: and the file is ~35 % larger. Write time is what the technician waits for on
#: site; callers that mail the file may pass 6 (CLI ``--compact``).
DEFAULT_COMPRESSLEVEL = 1


def new_workbook() -> Workbook:
    """An empty write-only workbook (no default sheet)."""
    return Workbook(write_only=True)


@dataclass
class Column:
    """One column of a ``NumericSheet``.

    ``values`` are floats (NaN = empty cell). ``decimals`` rounds for display and
    file size (None: full precision, e.g. Excel date serials). ``number_format``
    is an Excel format code applied to every value cell (e.g. the date format of
    the time column). ``width`` is the column width in characters.
    """

    header: str
    values: npt.NDArray[np.float64]
    decimals: int | None = None
    number_format: str | None = None
    width: float | None = None


class NumericSheet(xl.StreamedSheet):
    """A write-only sheet holding a header row and numeric columns of equal length.

    The XML is produced when openpyxl saves the workbook (or on ``close``).
    ``freeze_header`` keeps the header (and the first column) visible while scrolling.
    """

    def __init__(self, parent: Workbook, title: str, columns: Sequence[Column], *,
                 freeze_header: bool = True, hidden: bool = False,
                 on_rows: Callable[[int], None] | None = None) -> None:
        super().__init__(parent, title)
        if not columns:
            raise ExportError(f"sheet {title!r}: no columns")
        n = len(columns[0].values)
        for c in columns:
            if len(c.values) != n:
                raise ExportError(f"sheet {title!r}: column {c.header!r} has {len(c.values)} "
                                  f"values, expected {n}")
        if n + 1 > MAX_ROWS:
            raise ExportError(f"sheet {title!r}: {n} rows exceed Excel's {MAX_ROWS - 1} data rows")
        if len(columns) > MAX_COLS:
            raise ExportError(f"sheet {title!r}: {len(columns)} columns exceed Excel's {MAX_COLS}")
        self._columns = list(columns)
        self._n_rows = n
        self._freeze = freeze_header
        self._on_rows = on_rows
        if hidden:
            self.sheet_state = "hidden"
        # Style ids come from openpyxl's own style table so the stylesheet it writes
        # contains them: a header cell style and one style per number format.
        self._header_xf = self._style_id(font=Font(bold=True),
                                         alignment=Alignment(horizontal="center", wrap_text=True))
        self._xf = [self._style_id(number_format=c.number_format) if c.number_format else 0
                    for c in self._columns]

    @property
    def n_rows(self) -> int:
        return self._n_rows

    @property
    def columns(self) -> list[Column]:
        return list(self._columns)

    def _style_id(self, **style: Any) -> int:
        cell = WriteOnlyCell(self)
        for k, v in style.items():
            setattr(cell, k, v)
        return int(cell.style_id)

    def ref(self, col: int, first_row: int, last_row: int) -> str:
        """An absolute A1 range of column ``col`` (1-based) for chart references."""
        letter = get_column_letter(col)
        return f"{quote_sheetname(self.title)}!${letter}${first_row}:${letter}${last_row}"

    def append(self, row: Any) -> None:
        raise ExportError(f"sheet {self.title!r} is a NumericSheet: rows come from its columns")

    def write_xml(self, write: Callable[[str], Any]) -> None:
        """The sheet part: header row, then the columns row by row (``compat.openpyxl.StreamedSheet``)."""
        cols = self._columns
        ncol = len(cols)
        last = get_column_letter(ncol)
        write(f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<worksheet xmlns="{SHEET_NS}">')
        if self.sheet_properties.tabColor is not None:
            write(f'<sheetPr><tabColor rgb="{self.sheet_properties.tabColor.rgb}"/></sheetPr>')
        write(f'<dimension ref="A1:{last}{self._n_rows + 1}"/>')
        if self._freeze:
            write('<sheetViews><sheetView workbookViewId="0"><pane xSplit="1" ySplit="1" '
                  'topLeftCell="B2" activePane="bottomRight" state="frozen"/>'
                  '<selection pane="topRight"/><selection pane="bottomLeft"/>'
                  '<selection pane="bottomRight" activeCell="B2" sqref="B2"/></sheetView></sheetViews>')
        write('<sheetFormatPr defaultRowHeight="15"/>')
        widths = [(i, c.width) for i, c in enumerate(cols, 1) if c.width]
        if widths:
            write("<cols>" + "".join(f'<col min="{i}" max="{i}" width="{w:g}" customWidth="1"/>'
                                     for i, w in widths) + "</cols>")
        write("<sheetData>")
        hx = self._header_xf
        write('<row r="1">' + "".join(
            f'<c r="{get_column_letter(i)}1" s="{hx}" t="inlineStr"><is><t>{escape(sheet_text(c.header))}</t></is></c>'
            for i, c in enumerate(cols, 1)) + "</row>")
        self._write_body(write)
        write("</sheetData>")
        write('<pageMargins left="0.7" right="0.7" top="0.75" bottom="0.75" header="0.3" footer="0.3"/>')
        write("</worksheet>")

    def _write_body(self, write: Callable[[str], Any]) -> None:
        cols = self._columns
        # Per column: the cell opening with its style, e.g. '<c s="3" r="A' ... '"><v>'.
        # Values become Python floats once (tolist is C speed); formatting is repr,
        # the shortest string that reads back to the same double.
        opens = [f'<c s="{xf}" r="{get_column_letter(i)}' if xf else f'<c r="{get_column_letter(i)}'
                 for i, xf in enumerate(self._xf, 1)]
        # ~256 k cells per chunk: Python floats cost ~32 bytes each, so a fixed row count
        # would hold hundreds of MB for a 500-column sheet.
        chunk = max(16, 262_144 // len(cols))
        n = self._n_rows
        for lo in range(0, n, chunk):
            hi = min(n, lo + chunk)
            lists = []
            for c in cols:
                v = c.values[lo:hi]
                if c.decimals is not None:
                    v = np.round(v, c.decimals)
                lists.append(v.tolist())
            parts: list[str] = []
            for k, row in enumerate(zip(*lists, strict=True)):
                r = lo + k + 2
                parts.append(f'<row r="{r}">')
                # NaN != NaN: empty cells are skipped (a gap, not a zero).
                parts.append("".join([f'{o}{r}"><v>{x!r}</v></c>'
                                      for o, x in zip(opens, row, strict=True) if x == x]))
                parts.append("</row>")
            write("".join(parts))
            if self._on_rows is not None:
                self._on_rows(hi - lo)


def add_numeric_sheet(wb: Workbook, title: str, columns: Sequence[Column], **kwargs: Any) -> NumericSheet:
    """Create a ``NumericSheet`` and add it to ``wb`` (after the existing sheets)."""
    ws = NumericSheet(wb, title, columns, **kwargs)
    xl.add_sheet(wb, ws)
    return ws


def check_target(path: str | os.PathLike[str]) -> Path:
    """Refuse an output path whose directory is missing, before any work is done."""
    out = Path(path)
    if not out.parent.is_dir():
        raise ExportError(f"{out}: directory {out.parent} does not exist")
    return out


def discard_workbook(wb: Workbook) -> None:
    """Let go of a workbook that will not be saved (its sheets hold their rows in memory)."""
    for ws in list(wb.worksheets):
        wb.remove(ws)


def save_workbook(wb: Workbook, path: str | os.PathLike[str], *,
                  compresslevel: int = DEFAULT_COMPRESSLEVEL) -> Path:
    """Write ``wb`` to ``path`` atomically (temp file then rename).

    A half-written workbook never appears under the final name, so an
    interrupted export cannot leave a file that Excel would offer to repair.
    """
    try:
        out = check_target(path)
    except ExportError:
        discard_workbook(wb)
        raise
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        xl.save(wb, tmp, compresslevel=compresslevel)
        os.replace(tmp, out)
    except OSError as err:
        discard_workbook(wb)
        raise ExportError(f"{out}: cannot write workbook: {err.strerror or err}") from err
    finally:
        if tmp.exists():
            tmp.unlink()
    return out


def workbook_bytes(wb: Workbook, *, compresslevel: int = DEFAULT_COMPRESSLEVEL) -> bytes:
    """The .xlsx bytes of ``wb`` (built in memory: no file is written)."""
    buf = io.BytesIO()
    xl.save(wb, buf, compresslevel=compresslevel)
    return buf.getvalue()
