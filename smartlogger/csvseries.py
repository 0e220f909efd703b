"""One reader for every time-series CSV the tool takes: replay traces, load profiles, clamp-meter
and load-bank exports.

Owns turning the bytes of such a file into time-ordered numeric columns, and every decision on the
way, each reported or refused with an ``InputFileError`` that names the file, the line, the column
and the fix:

- **Text**: a UTF-8 or UTF-16 byte-order mark is honoured; otherwise UTF-8, else Windows-1252
  (Excel's "CSV" on Western Windows), noted.
- **Layout**: blank lines and ``#`` comment lines are skipped; the header is the first row that
  holds the time column (any preamble rows before it, as load banks write them, are skipped and
  noted). The delimiter (``,`` ``;`` tab ``|``) is the one that splits the header and the first
  rows into the same number of fields; the decimal separator is ``.``, or ``,`` when the file
  uses decimal commas and no decimal points (a mixture is refused). Both can be named instead.
- **Columns** are found by name, case-insensitively, or by a list of usual names. A unit may
  stand in the header (``Voltage [mV]``, ``I (A)``, ``current_a``) or after each number
  (``13.2 V``); units are converted to V, A, W and C. A column whose cells carry different
  units, or a unit that contradicts the header, is refused.
- **Time**: seconds from any origin, h:mm:ss elapsed, ISO 8601 with or without a zone, Unix
  epoch seconds or milliseconds, or a ``strptime`` pattern; ``auto`` picks one from the first
  time stamp (and refuses an ambiguous day/month order). Time stamps without a zone are read in
  the given time zone (an IANA name such as ``Europe/Berlin``, ``UTC`` or ``+01:00``), or as UTC
  with a note, or refused, as the caller asks.
- **Order**: rows a little out of time order (two instruments merged by time stamp) are sorted
  and reported with how many and by how much; rows more than ``max_disorder_s`` back in time, or
  any disorder when the caller asks to refuse it, are an error. Rows that share a time stamp are
  merged (blank cells filled from each other, different values averaged, or kept as a step for
  load profiles) and counted. A gap longer than ``max_gap_s`` is an error.

Does not own what the columns mean (a replay trace: ``device.replay``; a load profile:
``device.load`` and ``analysis.inputs``). Stdlib and numpy only, so both ``device/`` and
``analysis/`` may import it.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import numpy.typing as npt

from smartlogger.errors import ConfigError, InputFileError

__all__ = [
    "TIME_FORMATS",
    "Column",
    "CsvFormat",
    "Series",
    "Source",
    "parse_timezone",
    "read_series",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

Source = str | os.PathLike[str] | bytes | bytearray | memoryview
QuantityName = Literal["voltage", "current", "power", "temperature", "number"]

#: Named time formats besides a strptime pattern (which contains ``%``).
TIME_FORMATS = ("auto", "seconds", "elapsed", "iso", "epoch", "epoch_ms", "excel")
#: Usual names of a time column, in order of preference.
TIME_ALIASES = ("time", "timestamp", "date_time", "datetime", "date time", "time_utc", "t_s", "time_s",
                "seconds", "elapsed", "elapsed_s", "t", "zeit")

#: Unit factors to the base unit of each quantity (keys lower-case, except where case matters).
_SCALES: dict[str, dict[str, float]] = {
    "voltage": {"v": 1.0, "mv": 1e-3, "kv": 1e3},
    "current": {"a": 1.0, "ma": 1e-3, "ka": 1e3},
    "power": {"w": 1.0, "kw": 1e3},
    "temperature": {"c": 1.0, "°c": 1.0, "degc": 1.0, "f": 1.0, "°f": 1.0, "degf": 1.0, "k": 1.0},
    "number": {"": 1.0},
}
_BASE_UNIT = {"voltage": "V", "current": "A", "power": "W", "temperature": "C", "number": ""}

_DELIMITERS = (",", ";", "\t", "|")
_NUMBER_RE = re.compile(r"^([+-]?(?:\d+(?:[.,]\d*)?|[.,]\d+)(?:[eE][+-]?\d+)?)\s*([A-Za-z°µ]*)$")
_COMMA_DEC_RE = re.compile(r"^[+-]?\d*,\d+(?:[eE][+-]?\d+)?\s*[A-Za-z°]*$")
_DOT_DEC_RE = re.compile(r"^[+-]?\d*\.\d+(?:[eE][+-]?\d+)?\s*[A-Za-z°]*$")
_HEADER_UNIT_RE = re.compile(r"^(.*?)\s*[\[(]\s*([^\])]*?)\s*[\])]\s*$")
_ELAPSED_RE = re.compile(r"^(?:(\d+)[ d.]+)?(\d+):([0-5]?\d):([0-5]?\d(?:[.,]\d*)?)$")
_EXCEL_EPOCH = datetime(1899, 12, 30)


@dataclass(frozen=True)
class Column:
    """One value column to read: ``key`` names it in the result.

    ``name`` is the header name (case-insensitive; None: the first of ``aliases`` present).
    ``unit`` overrides the header's unit; otherwise the header's or the cells' unit applies,
    else the quantity's base unit (V, A, W, C).
    """

    key: str
    quantity: QuantityName
    name: str | None = None
    aliases: tuple[str, ...] = ()
    unit: str | None = None
    required: bool = True
    option: str | None = None  # the CLI option that names this column, for hints

    def __post_init__(self) -> None:
        if self.unit is not None and _unit_kind(self.quantity, self.unit) is None:
            raise ConfigError(f"{self.key}_unit", f"{self.unit!r} is not a unit of {self.quantity} "
                              f"(one of {', '.join(_unit_names(self.quantity))})")


@dataclass(frozen=True)
class CsvFormat:
    """How to read the file; every field has a detecting default.

    ``timezone``: zone of time stamps that carry none (IANA name, ``UTC``, ``+01:00``).
    ``naive``: what to do with zone-less stamps when no ``timezone`` is given: ``utc`` (read as
    UTC, with a note) or ``refuse``. ``disorder``: ``sort`` rows up to ``max_disorder_s`` out of
    order, or ``refuse`` any. ``duplicates``: rows sharing a time stamp are merged (``mean`` of
    differing values), kept as a ``step`` (first and last value, the last 1 ms later: a load
    switched at that instant), or refused.
    """

    time_column: str | None = None
    time_format: str = "auto"
    timezone: str | None = None
    naive: Literal["utc", "refuse"] = "utc"
    delimiter: str | None = None
    decimal: str | None = None
    disorder: Literal["sort", "refuse"] = "sort"
    max_disorder_s: float = 2.0
    duplicates: Literal["mean", "step", "refuse"] = "mean"
    max_gap_s: float | None = None
    time_option: str = "--time-column"  # CLI option names, for the hints in error messages
    format_option: str = "--time-format"
    timezone_option: str = "--timezone"
    gap_option: str = "--max-gap"
    delimiter_option: str = "--delimiter"
    disorder_option: str = "--out-of-order"

    def __post_init__(self) -> None:
        if self.time_format not in TIME_FORMATS and "%" not in self.time_format:
            raise ConfigError("time_format", f"{self.time_format!r} is not one of {', '.join(TIME_FORMATS)} "
                              "or a strptime pattern such as '%d.%m.%Y %H:%M:%S'")
        if self.delimiter is not None and len(self.delimiter) != 1:
            raise ConfigError("delimiter", "the delimiter must be one character")
        if self.decimal is not None and self.decimal not in (".", ","):
            raise ConfigError("decimal", f"{self.decimal!r}: the decimal separator is '.' or ','")
        if self.delimiter is not None and self.decimal is not None and self.delimiter == self.decimal:
            raise ConfigError("decimal", "the decimal separator cannot be the delimiter")
        if not (math.isfinite(self.max_disorder_s) and self.max_disorder_s >= 0):
            raise ConfigError("max_disorder_s", f"{self.max_disorder_s!r} must be a duration >= 0 s")
        if self.max_gap_s is not None and not self.max_gap_s > 0:
            raise ConfigError("max_gap_s", f"{self.max_gap_s!r} must be a positive duration")
        if self.timezone is not None:
            parse_timezone(self.timezone)


@dataclass(eq=False)
class Series:
    """A time series read from a CSV, in time order, one row per distinct time stamp.

    ``t_s``: seconds since the Unix epoch (UTC) when ``absolute``, else seconds as in the file
    (relative, any origin). ``values[key]``: the column in its base unit (V, A, W, C), NaN where the
    row had no value. ``lines``: the file line of each row (the first of merged rows).
    """

    name: str
    t_s: FloatArray
    absolute: bool
    values: dict[str, FloatArray]
    lines: IntArray
    units: dict[str, str]
    columns: dict[str, str]
    time_column: str
    time_format: str
    delimiter: str
    decimal: str
    rows: int = 0  # data rows read
    reordered: int = 0  # rows that were out of time order (sorted)
    max_disorder_s: float = 0.0  # how far back in time the worst of them was, s
    duplicates: int = 0  # rows merged into a row with the same time stamp
    conflicts: int = 0  # of which carried a different value in some column
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.t_s.size)

    def present(self, key: str) -> npt.NDArray[np.bool_]:
        """Rows where column ``key`` has a value."""
        return np.asarray(~np.isnan(self.values[key]))

    def line_at(self, index: int) -> int:
        return int(self.lines[index])


# --------------------------------------------------------------------------- helpers


def parse_timezone(text: str) -> tzinfo:
    """``UTC``, ``Z``, ``+01:00``, ``-0530``, ``UTC+1`` or an IANA name such as ``Europe/Berlin``."""
    s = text.strip()
    if s.upper() in ("UTC", "Z", "GMT"):
        return UTC
    m = re.fullmatch(r"(?:UTC|GMT)?\s*([+-])(\d{1,2})(?::?(\d{2}))?", s, flags=re.IGNORECASE)
    if m:
        sign = 1 if m.group(1) == "+" else -1
        hours, minutes = int(m.group(2)), int(m.group(3) or 0)
        if hours > 14 or minutes >= 60:
            raise ConfigError("timezone", f"{text!r} is not a UTC offset")
        return timezone(sign * timedelta(hours=hours, minutes=minutes))
    try:
        return ZoneInfo(s)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError("timezone", f"{text!r} is not a time zone (examples: UTC, +01:00, Europe/Berlin)") from None


def _unit_names(quantity: str) -> list[str]:
    return {"voltage": ["V", "mV", "kV"], "current": ["A", "mA", "kA"], "power": ["W", "kW"],
            "temperature": ["C", "F", "K"], "number": []}[quantity]


def _unit_kind(quantity: str, unit: str) -> str | None:
    """The canonical spelling of ``unit`` for ``quantity`` (``mV``, ``A``, ``F``), or None."""
    u = unit.strip().replace("µ", "u")
    low = u.lower()
    if quantity == "power" and u in ("mW", "MW"):
        return None  # milli/mega watts are no battery load: refuse rather than guess the case
    if low in _SCALES.get(quantity, {}):
        if quantity == "temperature":
            return {"c": "C", "°c": "C", "degc": "C", "f": "F", "°f": "F", "degf": "F", "k": "K"}[low]
        return {"v": "V", "mv": "mV", "kv": "kV", "a": "A", "ma": "mA", "ka": "kA", "w": "W", "kw": "kW",
                "": ""}[low]
    return None


def _to_base(quantity: str, unit: str, x: FloatArray) -> FloatArray:
    if quantity == "temperature":
        if unit == "F":
            return (x - 32.0) * 5.0 / 9.0
        if unit == "K":
            return x - 273.15
        return x
    return x * _SCALES[quantity][unit.lower()]


def _header_name_and_unit(header: str) -> tuple[str, str | None]:
    """``'Voltage [mV]'`` -> (``'voltage'``, ``'mV'``); ``'current_a'`` -> (``'current_a'``, None)."""
    h = header.strip().strip('"').strip()
    m = _HEADER_UNIT_RE.match(h)
    if m:
        return m.group(1).strip().lower(), m.group(2).strip()
    return h.lower(), None


def _suffix_unit(quantity: str, name: str) -> str | None:
    """The unit a column name ends in: ``voltage_mv`` -> ``mV``, ``temp_f`` -> ``F``."""
    m = re.search(r"[_ ]([a-z°]+)$", name)
    if not m:
        return None
    return _unit_kind(quantity, m.group(1))


def _decode(data: bytes, name: str, notes: list[str]) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="strict")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as err:
            raise InputFileError(name, f"not readable as UTF-16 text: {err.reason}") from None
    if b"\x00" in data[:4096]:
        raise InputFileError(name, "this is not a text (CSV) file", line=1)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        notes.append("not UTF-8: read as Windows-1252 text")
        return data.decode("cp1252", errors="replace")


def _read_source(source: Source, name: str | None) -> tuple[bytes, str]:
    if isinstance(source, bytes | bytearray | memoryview):
        return bytes(source), name or "<data>"
    if isinstance(source, str) and "\n" in source:  # CSV text, not a path
        return source.encode("utf-8"), name or "<text>"
    path = os.fspath(source)
    try:
        with open(path, "rb") as fh:
            return fh.read(), name or str(path)
    except OSError as err:
        raise InputFileError(name or str(path), f"cannot open: {err.strerror or err}") from None


def _count_fields(line: str, delimiter: str) -> int:
    try:
        return len(next(csv.reader([line], delimiter=delimiter)))
    except (csv.Error, StopIteration):
        return 0


def _detect_delimiter(lines: list[str]) -> str:
    """The delimiter that splits the header and the next rows into equally many (> 1) fields."""
    best, best_n = ",", 0
    sample = lines[:20]
    for d in _DELIMITERS:
        counts = [_count_fields(s, d) for s in sample]
        head = counts[0]
        if head < 2:
            continue
        agree = sum(1 for c in counts[1:] if c == head or (c > head and c - head <= 1))
        if (agree >= max(1, (len(counts) - 1) * 0.8) or len(counts) == 1) and head > best_n:
            best, best_n = d, head
    return best


# --------------------------------------------------------------------------- time parsing


@dataclass
class _TimeParser:
    fmt: str  # resolved format
    tz: tzinfo | None
    naive: str
    naive_seen: bool = False
    offset_seen: bool = False

    @property
    def absolute(self) -> bool:
        return self.fmt not in ("seconds", "elapsed")

    def __call__(self, text: str) -> float:
        """Seconds (since the epoch when absolute); raises ValueError."""
        fmt = self.fmt
        if fmt == "seconds" or fmt == "epoch":
            return _float(text)
        if fmt == "epoch_ms":
            return _float(text) / 1000.0
        if fmt == "elapsed":
            m = _ELAPSED_RE.match(text)
            if not m:
                raise ValueError(text)
            days = int(m.group(1) or 0)
            return days * 86400.0 + int(m.group(2)) * 3600.0 + int(m.group(3)) * 60.0 + float(
                m.group(4).replace(",", "."))
        if fmt == "excel":  # days since 1899-12-30 (Excel's serial date), local time
            return self._stamp(_EXCEL_EPOCH + timedelta(days=_float(text)))
        if fmt == "iso":
            t = text.replace("Z", "+00:00").replace("z", "+00:00")
            if "," in t and "." not in t:
                t = t.replace(",", ".")  # ISO 8601 allows a decimal comma in the seconds
            dt = datetime.fromisoformat(t)
        else:
            dt = datetime.strptime(text, fmt)
        return self._stamp(dt)

    def _stamp(self, dt: datetime) -> float:
        if dt.tzinfo is None:
            self.naive_seen = True
            if self.tz is not None:
                dt = dt.replace(tzinfo=self.tz)
            elif self.naive == "refuse":
                raise _NaiveTime()
            else:
                dt = dt.replace(tzinfo=UTC)
        else:
            self.offset_seen = True
        return dt.timestamp()


class _NaiveTime(ValueError):
    pass


def _float(text: str) -> float:
    if "_" in text:
        raise ValueError(text)
    v = float(text.replace(",", ".") if text.count(",") == 1 and "." not in text else text)
    if not math.isfinite(v):
        raise ValueError(text)
    return v


_SLASH_RE = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{2,4})([ T].*)?$")


def _resolve_time_format(samples: list[str], requested: str) -> str:
    """The format of the time column, from its first stamps; ``requested`` unless ``auto``."""
    if requested != "auto":
        return requested
    first = samples[0]
    try:
        v = _float(first)
    except ValueError:
        pass
    else:
        if abs(v) >= 1e11:
            return "epoch_ms"
        if abs(v) >= 1e9:
            return "epoch"
        return "seconds"
    if _ELAPSED_RE.match(first):
        return "elapsed"
    try:
        datetime.fromisoformat(first.replace("Z", "+00:00"))
        return "iso"
    except ValueError:
        pass
    for pattern in ("%d.%m.%Y %H:%M:%S", "%d.%m.%Y %H:%M:%S.%f", "%d.%m.%Y %H:%M", "%Y/%m/%d %H:%M:%S",
                    "%d-%b-%Y %H:%M:%S", "%b %d %Y %H:%M:%S"):
        try:
            datetime.strptime(first, pattern)
            return pattern
        except ValueError:
            continue
    m = _SLASH_RE.match(first)
    if m:
        a = [int(x.group(1)) for x in map(_SLASH_RE.match, samples) if x]
        b = [int(x.group(2)) for x in map(_SLASH_RE.match, samples) if x]
        rest = m.group(4) or ""
        tail = " %H:%M:%S" if re.fullmatch(r"[ T]\d{1,2}:\d{2}:\d{2}", rest) else (
            " %H:%M" if re.fullmatch(r"[ T]\d{1,2}:\d{2}", rest) else "")
        year = "%Y" if len(m.group(3)) == 4 else "%y"
        if rest and rest[0] == "T":
            tail = tail.replace(" ", "T")
        if any(x > 12 for x in a) and not any(x > 12 for x in b):
            return f"%d/%m/{year}{tail}"
        if any(x > 12 for x in b) and not any(x > 12 for x in a):
            return f"%m/%d/{year}{tail}"
        raise ValueError("ambiguous day/month")
    raise ValueError("unknown")


# --------------------------------------------------------------------------- the reader


def read_series(source: Source, columns: Sequence[Column], fmt: CsvFormat | None = None, *,
                name: str | None = None, time_aliases: Sequence[str] = TIME_ALIASES) -> Series:
    """Read a time-series CSV (see the module docstring). ``source``: a path, the file's bytes, or
    CSV text (a ``str`` with a line break). ``name`` is what errors call the file."""
    fmt = fmt or CsvFormat()
    data, fname = _read_source(source, name)
    notes: list[str] = []
    text = _decode(data, fname, notes)
    raw_lines = text.splitlines()
    content = [(i + 1, s) for i, s in enumerate(raw_lines) if s.strip() and not s.lstrip().startswith("#")]
    if not content:
        raise InputFileError(fname, "the file is empty (expected a header row and data rows)", line=1)

    # Header: the first row that holds the time column (preamble rows before it are skipped).
    wanted_time = [fmt.time_column.strip().lower()] if fmt.time_column else [a.lower() for a in time_aliases]
    delimiter = fmt.delimiter
    header_at = None
    for k, (_lineno, s) in enumerate(content[:50]):
        d = delimiter or _detect_delimiter([x for _, x in content[k:k + 20]])
        fields = [_header_name_and_unit(h) for h in _split(s, d)]
        names = [f[0] for f in fields]
        raw_names = [h.strip().strip('"').strip().lower() for h in _split(s, d)]
        if any(w in names or w in raw_names for w in wanted_time):
            header_at, delimiter = k, d
            break
    if header_at is None or delimiter is None:
        first_line, first = content[0]
        d = delimiter or _detect_delimiter([x for _, x in content[:20]])
        cells = _split(first, d)
        shown = ", ".join(h.strip() for h in cells)[:200]
        what = f"{fmt.time_column!r}" if fmt.time_column else "time column"
        fix = f"name the time column with {fmt.time_option}"
        if fmt.delimiter is not None and len(cells) == 1:
            # A named delimiter that does not split the header: the file uses another one.
            for other in _DELIMITERS:
                if other != d and len(_split(first, other)) > 1:
                    shown_other = "tab ('\\t')" if other == "\t" else f"'{other}'"
                    opt = "'\\t'" if other == "\t" else f"'{other}'"
                    fix = f"the file looks {shown_other}-separated: use {fmt.delimiter_option} {opt}"
                    break
        raise InputFileError(fname, f"no {what} in the header (it has: {shown}); {fix}",
                             line=first_line, column=fmt.time_column)
    if header_at:
        notes.append(f"skipped {header_at} line(s) before the header")
    header_line, header_text = content[header_at]
    header_cells = _split(header_text, delimiter)
    parsed_header = [_header_name_and_unit(h) for h in header_cells]
    names = [p[0] for p in parsed_header]
    raw_names = [h.strip().strip('"').strip().lower() for h in header_cells]

    def find(candidates: Sequence[str]) -> int | None:
        for c in candidates:
            c = c.strip().lower()
            for i, (n, r) in enumerate(zip(names, raw_names, strict=True)):
                if c in (n, r):
                    return i
        return None

    ti = find(wanted_time)
    assert ti is not None
    time_name = header_cells[ti].strip()
    # Value columns.
    col_index: dict[str, int] = {}
    col_unit: dict[str, str | None] = {}
    col_names: dict[str, str] = {}
    for col in columns:
        idx = find([col.name] if col.name else list(col.aliases))
        if idx is None:
            if col.required or col.name:
                has = ", ".join(h.strip() for h in header_cells)
                hint = f"; name it with {col.option}" if col.option else ""
                if col.name:
                    msg = f"missing column {col.name!r} (header has: {has}){hint}"
                else:
                    msg = f"no {col.quantity} column (one of {', '.join(col.aliases)}; header has: {has}){hint}"
                raise InputFileError(fname, msg, line=header_line, column=col.name)
            continue
        if idx == ti:
            raise InputFileError(fname, f"the {col.key} column is the time column", line=header_line,
                                 column=header_cells[idx].strip())
        hunit = parsed_header[idx][1]
        unit = None
        if hunit is not None:
            unit = _unit_kind(col.quantity, hunit)
            if unit is None and col.quantity != "number":
                raise InputFileError(fname, f"header unit {hunit!r} is not a unit of {col.quantity} "
                                     f"({', '.join(_unit_names(col.quantity))})", line=header_line,
                                     column=header_cells[idx].strip())
        if unit is None:
            unit = _suffix_unit(col.quantity, names[idx])
        if col.unit is not None:
            given = _unit_kind(col.quantity, col.unit)
            if unit is not None and hunit is not None and given != unit:
                raise InputFileError(fname, f"the header says {hunit!r} but {col.unit!r} was given; "
                                     "drop the unit option or correct the header", line=header_line,
                                     column=header_cells[idx].strip())
            unit = given
        col_index[col.key] = idx
        col_unit[col.key] = unit
        col_names[col.key] = header_cells[idx].strip()

    # Data rows.
    body = "\n".join(s for _, s in content[header_at + 1:])
    body_lines = [ln for ln, _ in content[header_at + 1:]]
    reader = csv.reader(io.StringIO(body), delimiter=delimiter)
    n_head = len(header_cells)
    rows: list[tuple[int, list[str]]] = []
    try:
        for row in reader:
            lineno = body_lines[min(reader.line_num, len(body_lines)) - 1]
            if not row or all(not c.strip() for c in row):
                continue
            extra = [c for c in row[n_head:] if c.strip()]
            if extra:
                hint = ""
                if delimiter == "," and re.search(r"\d,\d", ",".join(row)):
                    hint = ("; decimal commas in a comma-separated file? export with ';' as the separator "
                            "or '.' as the decimal")
                raise InputFileError(fname, f"{len(row)} fields, the header has {n_head}{hint}", line=lineno)
            rows.append((lineno, row))
    except csv.Error as err:
        raise InputFileError(fname, f"not a readable CSV: {err}") from None
    if not rows:
        raise InputFileError(fname, "no data rows after the header", line=header_line)

    # Decimal separator.
    decimal = fmt.decimal
    if decimal is None:
        decimal = "."
        if delimiter != ",":
            comma_at = dot_at = None
            for lineno, row in rows[:500]:
                for key, idx in col_index.items():
                    cell = row[idx].strip() if idx < len(row) else ""
                    if comma_at is None and _COMMA_DEC_RE.match(cell):
                        comma_at = (lineno, col_names[key], cell)
                    elif dot_at is None and _DOT_DEC_RE.match(cell):
                        dot_at = (lineno, col_names[key], cell)
            if comma_at and dot_at:
                raise InputFileError(fname, f"mixed decimal separators: {comma_at[2]!r} (line {comma_at[0]}) and "
                                     f"{dot_at[2]!r} (line {dot_at[0]}); name the decimal separator",
                                     line=max(comma_at[0], dot_at[0]), column=comma_at[1])
            if comma_at:
                decimal = ","
                notes.append("decimal comma")

    # Time column.
    tcells = [(ln, row[ti].strip() if ti < len(row) else "") for ln, row in rows]
    for ln, cell in tcells:
        if not cell:
            raise InputFileError(fname, "the time is blank", line=ln, column=time_name)
    try:
        resolved = _resolve_time_format([c for _, c in tcells[:200]], fmt.time_format)
    except ValueError as err:
        ln, cell = tcells[0]
        if "ambiguous" in str(err):
            msg = (f"time {cell!r}: day/month order is ambiguous; give {fmt.format_option} "
                   "'%d/%m/%Y %H:%M:%S' or '%m/%d/%Y %H:%M:%S'")
        else:
            msg = (f"time {cell!r} is in no known format; give {fmt.format_option} (seconds, elapsed, iso, "
                   "epoch, epoch_ms, excel or a strptime pattern)")
        raise InputFileError(fname, msg, line=ln, column=time_name) from None
    tz = parse_timezone(fmt.timezone) if fmt.timezone else None
    parser = _TimeParser(resolved, tz, fmt.naive)
    t = np.empty(len(rows))
    for k, (ln, cell) in enumerate(tcells):
        try:
            t[k] = parser(cell if decimal == "." or resolved not in ("seconds", "epoch", "epoch_ms", "excel")
                          else cell.replace(",", "."))
        except _NaiveTime:
            raise InputFileError(fname, f"time {cell!r} has no time zone; give {fmt.timezone_option} (e.g. UTC, "
                                 "Europe/Berlin or +01:00: the zone the instrument's clock was set to)",
                                 line=ln, column=time_name) from None
        except (ValueError, OverflowError):
            shown = resolved if resolved != "auto" else "auto"
            raise InputFileError(fname, f"time {cell!r} does not match the time format {shown!r}; give "
                                 f"{fmt.format_option}", line=ln, column=time_name) from None
    if parser.naive_seen and tz is None and parser.absolute and fmt.naive == "utc":
        notes.append(f"time stamps without a zone read as UTC (give {fmt.timezone_option} if they are local)")
    if parser.naive_seen and parser.offset_seen:
        raise InputFileError(fname, "some time stamps carry a zone and some do not; export them one way",
                             column=time_name)
    if resolved in ("seconds", "elapsed") and fmt.timezone:
        notes.append("relative times: the time zone does not apply")

    # Values.
    values: dict[str, FloatArray] = {}
    units: dict[str, str] = {}
    for col in columns:
        if col.key not in col_index:
            continue
        idx = col_index[col.key]
        cname = col_names[col.key]
        out = np.full(len(rows), np.nan)
        cell_unit: tuple[str, int] | None = None
        plain_line: int | None = None
        for k, (ln, row) in enumerate(rows):
            cell = row[idx].strip() if idx < len(row) else ""
            if not cell:
                continue
            try:
                fast = float(cell) if decimal == "." and "_" not in cell else math.nan
            except ValueError:
                fast = math.nan
            if math.isfinite(fast):
                num, unit = fast, ""
            else:
                num, unit = _number(cell, decimal, fname, ln, cname, col)
            if unit:
                kind = _unit_kind(col.quantity, unit)
                if kind is None:
                    raise InputFileError(fname, f"{cell!r} is not a number ({unit!r} is not a unit of "
                                         f"{col.quantity})", line=ln, column=cname)
                if plain_line is not None:
                    raise InputFileError(fname, f"mixed units: {cell!r} here, no unit on line {plain_line}; "
                                         "export the column in one unit", line=ln, column=cname)
                if cell_unit is None and col_unit[col.key] is not None and kind != col_unit[col.key]:
                    raise InputFileError(fname, f"mixed units: {cell!r} here, {col_unit[col.key]} in the header; "
                                         "export the column in one unit", line=ln, column=cname)
                if cell_unit is None:
                    cell_unit = (kind, ln)
                    col_unit[col.key] = kind
                num = float(_to_base(col.quantity, kind, np.array([num]))[0])
                out[k] = num
                continue
            if cell_unit is not None:
                raise InputFileError(fname, f"mixed units: {cell!r} has no unit, line {cell_unit[1]} has "
                                     f"{cell_unit[0]}; export the column in one unit", line=ln, column=cname)
            if plain_line is None:
                plain_line = ln
            out[k] = num
        unit = col_unit[col.key] or _BASE_UNIT[col.quantity]
        if cell_unit is None:
            out = _to_base(col.quantity, unit, out)
        values[col.key] = out
        units[col.key] = unit

    lines = np.array([ln for ln, _ in rows], dtype=np.int64)
    series = Series(fname, t, parser.absolute, values, lines, units, col_names, time_name, resolved,
                    delimiter, decimal, rows=len(rows), notes=notes)
    _order(series, fmt)
    _merge_duplicates(series, fmt)
    if fmt.max_gap_s is not None:
        check_gaps(series.t_s, series.lines, fmt.max_gap_s, series.name, time_name, fmt.gap_option)
    return series


def _split(line: str, delimiter: str) -> list[str]:
    try:
        return next(csv.reader([line], delimiter=delimiter))
    except (csv.Error, StopIteration):
        return [line]


def _number(cell: str, decimal: str, fname: str, line: int, column: str, col: Column) -> tuple[float, str]:
    if cell.strip().lower().lstrip("+-") in ("inf", "infinity", "nan"):
        raise InputFileError(fname, f"{cell!r} is not a finite number", line=line, column=column)
    m = _NUMBER_RE.match(cell)
    if m is None:
        hint = ""
        if decimal == "." and re.fullmatch(r"[+-]?\d+,\d+.*", cell):
            hint = "; a decimal comma? name the decimal separator ','"
        elif decimal == "," and re.fullmatch(r"[+-]?\d+\.\d+.*", cell):
            hint = "; a decimal point in a file with decimal commas? name the decimal separator '.'"
        raise InputFileError(fname, f"{cell!r} is not a number{hint}", line=line, column=column)
    num = m.group(1)
    if decimal == "." and "," in num:
        raise InputFileError(fname, f"{cell!r} is not a number; a decimal comma? name the decimal separator ','",
                             line=line, column=column)
    if decimal == "," and "." in num:
        raise InputFileError(fname, f"{cell!r} is not a number with a decimal comma (mixed separators?)",
                             line=line, column=column)
    value = float(num.replace(",", "."))
    if not math.isfinite(value):
        raise InputFileError(fname, f"{cell!r} is not a finite number", line=line, column=column)
    return value, m.group(2)


def _order(s: Series, fmt: CsvFormat) -> None:
    """Sort rows that are a little out of time order; refuse what is further back."""
    t = s.t_s
    if t.size < 2:
        return
    run_max = np.maximum.accumulate(t)
    back = np.empty(t.size)
    back[0] = 0.0
    back[1:] = run_max[:-1] - t[1:]
    late = np.nonzero(back > 0)[0]
    if late.size == 0:
        return
    worst = int(late[np.argmax(back[late])])
    by = float(back[worst])
    ahead = int(np.nonzero(t[:worst] == run_max[worst - 1])[0][0])
    where = f"line {s.line_at(worst)} is {_fmt_s(by)} before line {s.line_at(ahead)}"
    if by > fmt.max_disorder_s:
        hint = ""
        if abs(by - 3600.0) < 60.0 and s.absolute:
            hint = " (a daylight-saving change? give time stamps with their UTC offset, or in UTC)"
        raise InputFileError(s.name, f"time goes backwards: {where}{hint}; rows more than "
                             f"{_fmt_s(fmt.max_disorder_s)} out of order are not sorted: check the clock or "
                             "remove the repeated part (or raise the limit)", line=s.line_at(worst), column=s.time_column)
    if fmt.disorder == "refuse":
        raise InputFileError(s.name, f"time goes backwards: {where}; rows out of order are refused (sort "
                             f"them with {fmt.disorder_option} sort)", line=s.line_at(worst), column=s.time_column)
    order = np.argsort(t, kind="stable")
    s.t_s = t[order]
    s.lines = s.lines[order]
    s.values = {k: v[order] for k, v in s.values.items()}
    s.reordered = int(late.size)
    s.max_disorder_s = by
    s.notes.append(f"{late.size} row(s) out of time order by up to {_fmt_s(by)}: sorted")


def _merge_duplicates(s: Series, fmt: CsvFormat) -> None:
    t = s.t_s
    if t.size < 2:
        return
    same = np.nonzero(np.diff(t) == 0)[0]
    if same.size == 0:
        return
    if fmt.duplicates == "refuse":
        i = int(same[0])
        raise InputFileError(s.name, f"line {s.line_at(i + 1)} repeats the time stamp of line {s.line_at(i)}",
                             line=s.line_at(i + 1), column=s.time_column)
    uniq, first, inverse = np.unique(t, return_index=True, return_inverse=True)
    n = uniq.size
    conflicts = np.zeros(n, dtype=bool)
    merged: dict[str, FloatArray] = {}
    step_after: dict[str, FloatArray] = {}
    for key, v in s.values.items():
        have = ~np.isnan(v)
        cnt = np.bincount(inverse, weights=have.astype(np.float64), minlength=n)
        tot = np.bincount(inverse, weights=np.where(have, v, 0.0), minlength=n)
        vmax = np.full(n, -np.inf)
        vmin = np.full(n, np.inf)
        np.maximum.at(vmax, inverse[have], v[have])
        np.minimum.at(vmin, inverse[have], v[have])
        differ = (cnt > 1) & (vmax > vmin)
        conflicts |= differ
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(cnt > 0, tot / np.where(cnt > 0, cnt, 1.0), np.nan)
        if fmt.duplicates == "step":
            first_v = np.full(n, np.nan)
            last_v = np.full(n, np.nan)
            idx = np.nonzero(have)[0]
            # rows are in file order within a time stamp (stable sort): first and last value seen
            last_v[inverse[idx]] = v[idx]
            first_v[inverse[idx[::-1]]] = v[idx[::-1]]
            merged[key] = np.where(differ, first_v, mean)
            step_after[key] = np.where(differ, last_v, np.nan)
        else:
            merged[key] = mean
    dups = int(t.size - n)
    s.duplicates = dups
    s.conflicts = int(conflicts.sum())
    lines = s.lines[first]
    if fmt.duplicates == "step" and conflicts.any():
        # a step: the first value at t, the last 1 ms later
        extra_t = uniq[conflicts] + 1e-3
        t_all = np.concatenate((uniq, extra_t))
        order = np.argsort(t_all, kind="stable")
        s.t_s = t_all[order]
        s.lines = np.concatenate((lines, lines[conflicts]))[order]
        s.values = {k: np.concatenate((merged[k], np.where(np.isnan(step_after[k][conflicts]),
                                                            merged[k][conflicts],
                                                            step_after[k][conflicts])))[order]
                    for k in merged}
        s.notes.append(f"{dups} row(s) repeat a time stamp: merged; {s.conflicts} with a different value "
                       "kept as a step (the new value 1 ms later)")
        return
    s.t_s = uniq
    s.lines = lines
    s.values = merged
    if s.conflicts:
        s.notes.append(f"{dups} row(s) repeat a time stamp: merged; {s.conflicts} time stamp(s) with different "
                       "values: averaged")
    else:
        s.notes.append(f"{dups} row(s) repeat a time stamp: merged")


def check_gaps(t_s: FloatArray, lines: IntArray, max_gap_s: float, name: str, column: str | None,
               option: str = "--max-gap") -> None:
    """Refuse a step between consecutive rows longer than ``max_gap_s``, naming both lines."""
    if t_s.size < 2:
        return
    d = np.diff(t_s)
    big = np.nonzero(d > max_gap_s)[0]
    if big.size:
        i = int(big[np.argmax(d[big])])
        raise InputFileError(name, f"a gap of {_fmt_s(float(d[i]))} between line {int(lines[i])} and line "
                             f"{int(lines[i + 1])} (longest allowed {_fmt_s(max_gap_s)}): no data to take "
                             f"from there; split the file at the gap or allow a longer gap with {option}",
                             line=int(lines[i + 1]), column=column)


def _fmt_s(s: float) -> str:
    if s < 1.0:
        return f"{s:.3g} s"
    if s < 120:
        return f"{s:.3g} s"
    if s < 7200:
        return f"{s / 60:.3g} min"
    return f"{s / 3600:.3g} h"
