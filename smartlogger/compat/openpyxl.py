"""Adapter for openpyxl's private interfaces: write-only sheets, the sheet-writer contract, styles.

The workbooks are written in openpyxl's write-only mode, and three things reach past its
public API. They live here and nowhere else:

- **Sheets we serialise ourselves.** ``StreamedSheet`` subclasses openpyxl's write-only
  worksheet (``openpyxl.worksheet._write_only.WriteOnlyWorksheet``) for sheets whose XML
  our own code writes (``export.sheetstream.NumericSheet``). ``ExcelWriter.write_worksheet``
  closes a write-only sheet and copies ``ws._writer.out`` into the package with
  ``archive.write(out, name)``, then calls ``ws._writer.cleanup()``; ``StreamedSheet``
  provides that writer, and its ``out`` is a ``StreamedPart``: the package archive
  (``save``) streams the sheet's XML straight into its zip entry. No temporary file.
- **openpyxl's own sheets in memory.** Its write-only worksheets write their XML to a
  temporary file (``WorksheetWriter(ws)`` -> ``create_temporary_file()``). ``WriteOnlySheet``
  overrides ``_get_writer`` to give the same writer an in-memory buffer instead: a
  workbook can be built and saved (to a path or to bytes) without touching the disk.
- **Small hooks:** ``add_sheet`` (``Workbook._add_sheet``: append a sheet object we made),
  ``style_array``/``set_style_array`` (``cell._style``: copy a resolved style, 40x cheaper
  than setting font, fill, border one by one) and ``charts_of`` (``ws._charts``: the charts
  of a worksheet, for checks that read a workbook back).

The supported range is checked at import (``compat.require``); the tested version is pinned
in constraints.txt. The tests that read every sheet back with openpyxl and open the
workbooks in LibreOffice are what a new openpyxl release must pass before the range grows.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from typing import IO, Any
from zipfile import ZIP_DEFLATED, ZipFile

from smartlogger.compat import require

OPENPYXL_VERSION = require("openpyxl", "3.1", "3.2")

# The imports below are openpyxl's private modules: that is why this adapter exists.
from openpyxl import Workbook  # noqa: E402
from openpyxl.packaging.relationship import RelationshipList  # noqa: E402
from openpyxl.styles.cell_style import StyleArray  # noqa: E402
from openpyxl.worksheet._write_only import WriteOnlyWorksheet  # noqa: E402
from openpyxl.worksheet._writer import WorksheetWriter  # noqa: E402
from openpyxl.writer.excel import ExcelWriter  # noqa: E402

__all__ = ["OPENPYXL_VERSION", "StreamedPart", "StreamedSheet", "StyleArray", "WriteOnlySheet",
           "add_sheet", "charts_of", "save", "set_style_array", "style_array"]

#: Text a sheet writer produces, handed on to the package as UTF-8.
Write = Callable[[str], Any]


class _MemoryWriter(WorksheetWriter):  # type: ignore[misc]
    """openpyxl's sheet writer on an in-memory buffer (its default is a temporary file)."""

    def __init__(self, ws: WriteOnlyWorksheet) -> None:
        super().__init__(ws, out=io.BytesIO())

    def cleanup(self) -> None:
        self.out = io.BytesIO()  # drop the written sheet once it is in the package


class WriteOnlySheet(WriteOnlyWorksheet):  # type: ignore[misc]
    """openpyxl's write-only worksheet (rows appended in order, cells styled, charts anchored),
    whose XML is kept in memory until the workbook is saved instead of in a temporary file."""

    _writer: Any = None

    def _get_writer(self) -> None:
        if self._writer is None:
            writer = _MemoryWriter(self)
            writer.write_top()
            self._writer = writer


class StreamedPart:
    """The ``out`` of a ``StreamedSheet``'s writer: produces the sheet XML when the package
    archive asks for it (``write_xml(write)`` with ``write(text)``)."""

    def __init__(self, write_xml: Callable[[Write], None]) -> None:
        self.write_xml = write_xml


class _StreamedWriter:
    """What ``ExcelWriter.write_worksheet`` takes from a closed write-only sheet: ``out``,
    ``_rels`` (relationships of the sheet part: none) and ``cleanup``."""

    def __init__(self, part: StreamedPart) -> None:
        self.out = part
        self._rels = RelationshipList()

    def cleanup(self) -> None:
        pass


class StreamedSheet(WriteOnlyWorksheet):  # type: ignore[misc]
    """A write-only sheet whose whole XML the subclass writes (``write_xml``), streamed into
    the package when the workbook is saved. Rows cannot be appended through openpyxl."""

    def __init__(self, parent: Workbook, title: str) -> None:
        super().__init__(parent, title)
        self._streamed_closed = False

    @property
    def closed(self) -> bool:
        return self._streamed_closed

    def close(self) -> None:
        """Hand the sheet to the package writer; the XML is produced as the package is written."""
        if self._streamed_closed:
            return
        self._writer = _StreamedWriter(StreamedPart(self.write_xml))
        self._streamed_closed = True

    def write_xml(self, write: Write) -> None:
        raise NotImplementedError


class _Package(ZipFile):
    """The .xlsx zip archive ``ExcelWriter`` writes into, which also takes the outs of our
    sheet writers: an in-memory buffer (``WriteOnlySheet``) or a ``StreamedPart``."""

    def write(self, filename: Any, arcname: Any = None, compress_type: int | None = None,
              compresslevel: int | None = None) -> None:
        if isinstance(filename, io.BytesIO):
            self.writestr(arcname or "", filename.getbuffer())
        elif isinstance(filename, StreamedPart):
            with self.open(arcname or "", "w", force_zip64=True) as fh:
                filename.write_xml(lambda text: fh.write(text.encode("utf-8")))
        else:
            super().write(filename, arcname, compress_type, compresslevel)


def save(wb: Workbook, target: str | os.PathLike[str] | IO[bytes], *, compresslevel: int) -> None:
    """Write the package of ``wb`` to ``target`` (a path or a binary file object)."""
    archive = _Package(target, "w", ZIP_DEFLATED, allowZip64=True, compresslevel=compresslevel)
    try:
        ExcelWriter(wb, archive).save()  # closes the archive when done
    finally:
        archive.close()


def add_sheet(wb: Workbook, ws: WriteOnlyWorksheet) -> None:
    """Append a worksheet object we created to ``wb`` (after the existing sheets)."""
    wb._add_sheet(ws)


def style_array(cell: Any) -> StyleArray:
    """A copy of the resolved style ids of ``cell`` (font, fill, border, number format, ...)."""
    return StyleArray(cell._style)


def set_style_array(cell: Any, style: StyleArray) -> None:
    """Give ``cell`` the style ids of ``style`` (from ``style_array`` of a cell of the same workbook)."""
    cell._style = StyleArray(style)


def charts_of(ws: Any) -> list[Any]:
    """The charts anchored on worksheet ``ws`` (of a workbook we built or loaded)."""
    return list(ws._charts)
