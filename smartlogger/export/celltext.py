"""Text from data in spreadsheets and CSV: always text, never a formula, always writable.

Owns the one rule every writer applies to text that comes from a logfile, a
metadata file or a user (block labels, site names, test ids, notes, verification
messages): it is *written as text*.

- In a workbook a string cell is stored as a string (``t="inlineStr"``), never as a
  formula, whatever its first character; a text that a spreadsheet would take for a
  formula when retyped (leading ``=``, ``+``, ``-``, ``@``, tab or CR) also gets the
  ``quotePrefix`` style, so editing the cell keeps it text (``export.layout.cell``).
- In a CSV such a text is prefixed with an apostrophe (OWASP "CSV injection"):
  spreadsheet programs open CSV by guessing, and a cell starting with ``=`` or ``@``
  runs as a formula (``=cmd|'/C calc'!A0``, ``=HYPERLINK(...)``, ``=WEBSERVICE(...)``).
- Characters XML 1.0 cannot carry (C0 controls other than tab, LF, CR) would make a
  workbook unreadable or make openpyxl refuse it: each becomes U+FFFD. In a workbook
  a CR becomes LF, as any XML reader would read it back anyway.

Numbers stay numbers: a negative temperature is a number cell, not text. Does not
own the writers (``export.layout``, ``export.sheetstream``, ``export.data``).
"""

from __future__ import annotations

import re
from typing import Final

#: First characters that make a spreadsheet treat a typed or CSV cell as a formula (or DDE).
FORMULA_LEADS: Final = ("=", "+", "-", "@", "\t", "\r")
_NOT_XML: Final = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
REPLACEMENT: Final = "\ufffd"


def formula_like(text: str) -> bool:
    """Would a spreadsheet take ``text`` (typed, or read from CSV) for a formula?"""
    return text.startswith(FORMULA_LEADS)


def sheet_text(text: str) -> str:
    """``text`` for a workbook: characters XML cannot carry become U+FFFD, CR (and CR LF) LF."""
    return _NOT_XML.sub(REPLACEMENT, text).replace("\r\n", "\n").replace("\r", "\n")


def csv_text(text: str) -> str:
    """``text`` for a CSV cell: control characters other than tab/LF/CR become U+FFFD, and an
    apostrophe goes in front when it would start a formula (the csv module quotes as needed)."""
    clean = _NOT_XML.sub(REPLACEMENT, text)
    return "'" + clean if formula_like(clean) else clean


def csv_row(row: list[object]) -> list[object]:
    """A CSV row with every string passed through ``csv_text`` (numbers unchanged)."""
    return [csv_text(v) if isinstance(v, str) else v for v in row]
