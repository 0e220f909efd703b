"""Replay: a recorded CSV trace as the sensor source of the firmware model.

Owns reading a trace file (time column, voltage, optional temperature and current;
names, units and time format configurable), checking it with errors that name
the line and column, and running it through a ``Logger`` whose identity is
marked ``replayed=True``. Does not own the firmware (``device.firmware``) or
the output format (the CLI writes CSV via ``device.sim`` writers).

Blank cells are normal: real traces often log temperature (or voltage) on their
own rows. Voltage is taken from the rows that have one; temperature and current
are interpolated linearly in time onto those rows (held constant before the
first and after the last value). Rows with the same time are merged.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

from smartlogger.device.clock import Rtc
from smartlogger.device.firmware import Logger
from smartlogger.device.sensors import Sensor, TraceSource
from smartlogger.device.store import LogStore
from smartlogger.errors import ConfigError, InputFileError
from smartlogger.model import (
    MEASURING_RANGE_MV,
    BlockType,
    Generation,
    LoggerConfig,
    LoggerIdentity,
    Thresholds,
)

FloatArray = npt.NDArray[np.float64]

VOLTAGE_UNITS = {"V": 1.0, "mV": 1e-3}
TEMPERATURE_UNITS = ("C", "F")
#: Time formats besides a strptime pattern: seconds (any origin), ISO-8601, Unix epoch seconds/ms.
TIME_FORMATS = ("seconds", "iso", "epoch", "epoch_ms")
#: Default device time of a trace whose times are relative seconds: 2026-01-01T00:00:00Z.
RELATIVE_ORIGIN_MS = 1_767_225_600_000


@dataclass(frozen=True)
class TraceFormat:
    """How to read a trace CSV. ``time_format`` is one of ``TIME_FORMATS`` or a strptime pattern."""

    time_column: str = "time"
    voltage_column: str = "voltage"
    voltage_unit: str = "V"
    temperature_column: str | None = None
    temperature_unit: str = "C"
    current_column: str | None = None
    time_format: str = "seconds"
    delimiter: str = ","
    default_temperature_c: float = 25.0

    def __post_init__(self) -> None:
        if self.voltage_unit not in VOLTAGE_UNITS:
            raise ConfigError("voltage_unit", f"{self.voltage_unit!r} is not one of V, mV")
        if self.temperature_unit not in TEMPERATURE_UNITS:
            raise ConfigError("temperature_unit", f"{self.temperature_unit!r} is not one of C, F")
        if len(self.delimiter) != 1:
            raise ConfigError("delimiter", "the delimiter must be one character")


@dataclass
class Trace:
    """A parsed trace: true seconds from the first row, and the absolute start if known."""

    path: str
    t_s: FloatArray  # (n,) s since the first voltage row
    volts: FloatArray  # (n,) V
    temp_c: FloatArray  # (n,) C (interpolated onto the voltage rows)
    current_a: FloatArray | None  # (n,) A, positive = discharge, if the trace has it
    start_ms: int | None  # ms since epoch of t_s == 0 if the time column is absolute
    rows: int  # data rows read (including temperature-only rows)
    line_of: list[int] = field(default_factory=list)  # file line of each voltage row


@dataclass
class ReplayResult:
    """The replayed logger (with its log) and the trace it was fed."""

    logger: Logger
    trace: Trace


def _parse_time(text: str, fmt: str, path: str, line: int, column: str) -> float:
    """Seconds (relative or since epoch) for one time cell."""
    try:
        if fmt == "seconds" or fmt == "epoch":
            value = float(text)
        elif fmt == "epoch_ms":
            value = float(text) / 1000.0
        elif fmt == "iso":
            dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=UTC)  # naive ISO times are taken as UTC
            value = dt.timestamp()
        else:
            dt = datetime.strptime(text, fmt)
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=UTC)
            value = dt.timestamp()
    except ValueError:
        shown = "seconds" if fmt in ("seconds", "epoch", "epoch_ms") else fmt
        raise InputFileError(path, f"time {text!r} does not match the time format {shown!r}",
                             line=line, column=column) from None
    if not math.isfinite(value):
        raise InputFileError(path, f"time {text!r} is not finite", line=line, column=column)
    return value


def _parse_number(text: str, path: str, line: int, column: str) -> float:
    try:
        value = float(text.replace(",", ".")) if text.count(",") == 1 and "." not in text else float(text)
    except ValueError:
        raise InputFileError(path, f"{text!r} is not a number", line=line, column=column) from None
    if not math.isfinite(value):
        raise InputFileError(path, f"{text!r} is not a finite number", line=line, column=column)
    return value


#: Separators seen in CSV exports of other equipment (semicolon: spreadsheets with a decimal comma).
_OTHER_DELIMITERS = {";": "';'", "\t": "tab ('\\t')", "|": "'|'", ",": "','"}


def delimiter_hint(header: list[str], delimiter: str) -> str:
    """``"; the file looks ';'-separated: use --delimiter ';'"`` when the header read with
    ``delimiter`` is one cell that another common separator splits into several, else ``""``."""
    if len(header) != 1:
        return ""
    for other, shown in _OTHER_DELIMITERS.items():
        if other != delimiter and len(header[0].split(other)) > 1:
            option = "--delimiter '\\t'" if other == "\t" else f"--delimiter '{other}'"
            return f"; the file looks {shown}-separated: use {option}"
    return ""


def read_trace(path: str | Path, fmt: TraceFormat) -> Trace:
    """Read and check a trace CSV (see module docstring). Raises ``InputFileError``."""
    p = str(path)
    try:
        fh = open(p, newline="", encoding="utf-8-sig")  # noqa: SIM115 - closed below
    except OSError as err:
        raise InputFileError(p, f"cannot open: {err.strerror or err}") from None
    times: list[float] = []
    v_rows: list[tuple[float, float, int]] = []  # (t, volts, line)
    t_rows: list[tuple[float, float]] = []
    a_rows: list[tuple[float, float]] = []
    rows = 0
    with fh:
        reader = csv.reader(fh, delimiter=fmt.delimiter)
        try:
            header = next(reader)
            while header and header[0].lstrip().startswith("#"):  # leading comment lines
                header = next(reader)
        except StopIteration:
            raise InputFileError(p, "file is empty (expected a header row)", line=reader.line_num or 1) from None
        except (csv.Error, UnicodeDecodeError) as err:
            raise InputFileError(p, f"not a readable CSV: {err}", line=1) from None
        names = [h.strip() for h in header]
        wanted = [fmt.time_column, fmt.voltage_column]
        wanted += [c for c in (fmt.temperature_column, fmt.current_column) if c]
        for col in wanted:
            if col not in names:
                raise InputFileError(p, f"missing column {col!r} (header has: {', '.join(names)})"
                                     + delimiter_hint(names, fmt.delimiter), line=1, column=col)
        ti, vi = names.index(fmt.time_column), names.index(fmt.voltage_column)
        ci = names.index(fmt.temperature_column) if fmt.temperature_column else None
        ai = names.index(fmt.current_column) if fmt.current_column else None
        vscale = VOLTAGE_UNITS[fmt.voltage_unit]
        last_t = -math.inf
        line = 1
        try:
            for row in reader:
                line = reader.line_num  # physical line of the row's end (1-based)
                if not row or all(not c.strip() for c in row) or row[0].lstrip().startswith("#"):
                    continue
                rows += 1

                def cell(i: int | None, r: list[str] = row) -> str:
                    return r[i].strip() if i is not None and i < len(r) else ""

                ttext = cell(ti)
                if not ttext:
                    raise InputFileError(p, "time is blank", line=line, column=fmt.time_column)
                t = _parse_time(ttext, fmt.time_format, p, line, fmt.time_column)
                if t < last_t:
                    raise InputFileError(
                        p, f"time goes backwards ({ttext!r} is before the previous row)",
                        line=line, column=fmt.time_column)
                last_t = t
                times.append(t)
                if vt := cell(vi):
                    v = _parse_number(vt, p, line, fmt.voltage_column) * vscale
                    v_rows.append((t, v, line))
                if ci is not None and (ct := cell(ci)):
                    c = _parse_number(ct, p, line, fmt.temperature_column or "")
                    if fmt.temperature_unit == "F":
                        c = (c - 32.0) * 5.0 / 9.0
                    if not -60.0 <= c <= 150.0:
                        raise InputFileError(p, f"{c:g} C is not a battery temperature (wrong unit?)",
                                             line=line, column=fmt.temperature_column)
                    t_rows.append((t, c))
                if ai is not None and (at := cell(ai)):
                    a_rows.append((t, _parse_number(at, p, line, fmt.current_column or "")))
        except (csv.Error, UnicodeDecodeError) as err:
            raise InputFileError(p, f"not a readable CSV: {err}", line=line + 1) from None
    if len(v_rows) < 2:
        raise InputFileError(p, f"needs at least two rows with a voltage, found {len(v_rows)}",
                             column=fmt.voltage_column)
    _check_volts(p, fmt, v_rows)
    t_abs = np.array([r[0] for r in v_rows])
    volts = np.array([r[1] for r in v_rows])
    t_abs, volts, lines = _merge_equal_times(t_abs, volts, [r[2] for r in v_rows])
    origin = float(t_abs[0])
    t_rel = t_abs - origin
    if t_rows:
        tt = np.array([r[0] for r in t_rows])
        temp = np.interp(t_abs, tt, np.array([r[1] for r in t_rows]))
    else:
        temp = np.full(t_abs.shape, fmt.default_temperature_c)
    current = None
    if a_rows:
        at_ = np.array([r[0] for r in a_rows])
        current = np.interp(t_abs, at_, np.array([r[1] for r in a_rows]))
    absolute = fmt.time_format != "seconds"
    start_ms = round(origin * 1000.0) if absolute else None
    return Trace(p, t_rel, volts, temp, current, start_ms, rows, lines)


def _check_volts(path: str, fmt: TraceFormat, v_rows: list[tuple[float, float, int]]) -> None:
    """Reject voltages no logger measures: the usual cause is a wrong unit."""
    hi = max(r[1] for r in MEASURING_RANGE_MV.values()) / 1000.0
    lo = min(r[0] for r in MEASURING_RANGE_MV.values()) / 1000.0
    for _, v, line in v_rows:
        if v < 0.5 * lo or v > 2.0 * hi:
            hint = ""
            if fmt.voltage_unit == "V" and v > 2.0 * hi:
                hint = " (looks like millivolts: use voltage unit mV)"
            elif fmt.voltage_unit == "mV" and 0.0 < v < 1.0:
                hint = " (looks like volts: use voltage unit V)"
            raise InputFileError(path, f"{v:g} V cannot be a block voltage{hint}",
                                 line=line, column=fmt.voltage_column)


def _merge_equal_times(t: FloatArray, v: FloatArray, lines: list[int]) -> tuple[FloatArray, FloatArray, list[int]]:
    keep = np.ones(t.size, dtype=bool)
    keep[1:] = np.diff(t) > 0  # the last of equal times wins; keep the first row's line
    if keep.all():
        return t, v, lines
    uniq, first = np.unique(t, return_index=True)
    last = np.r_[first[1:] - 1, t.size - 1]
    return uniq, v[last], [lines[i] for i in first]


def infer_block_type(trace: Trace) -> BlockType:
    """The lead-acid block class whose measuring range holds the trace's median voltage."""
    med = float(np.median(trace.volts)) * 1000.0
    for nominal in (2000, 4000, 6000, 12000, 16000):
        lo, hi = MEASURING_RANGE_MV[nominal]
        # prefer the class whose nominal is just below the median (float sits above nominal)
        if lo <= med <= hi and med <= nominal * 1.25:
            return BlockType.lead_acid(nominal // 1000)
    raise InputFileError(trace.path, f"median voltage {med / 1000:.3f} V fits no block class "
                         "(2, 4, 6, 12, 16 V); wrong voltage unit?", column=None)


def replay_identity(serial: str = "REPLAY-0001") -> LoggerIdentity:
    """The identity of a replayed logger: generation 2, marked ``replayed``."""
    return LoggerIdentity(serial, Generation.GEN2, "2.0.0-replay", replayed=True)


def replay_trace(
    trace: Trace,
    *,
    serial: str = "REPLAY-0001",
    block_type: BlockType | None = None,
    rated_ah: float = 100.0,
    float_rate_s: int = 60,
    discharge_rate_s: int = 1,
    thresholds: Thresholds | None = None,
    store: LogStore | None = None,
) -> ReplayResult:
    """Run ``trace`` through a generation-2 logger with an ideal sensor and clock.

    The logger's identity carries ``replayed=True``; its clock is set to the trace's
    absolute start (or 2026-01-01T00:00:00Z for relative times) so device times
    reproduce the recorded times.
    """
    bt = block_type if block_type is not None else infer_block_type(trace)
    th = thresholds if thresholds is not None else Thresholds.default_for(bt)
    cfg = LoggerConfig(bt, th, rated_ah, float_rate_s=float_rate_s, discharge_rate_s=discharge_rate_s)
    ident = replay_identity(serial)
    start_ms = trace.start_ms if trace.start_ms is not None else RELATIVE_ORIGIN_MS
    # A replay reproduces what was recorded: no extra sensor error or clock drift on top.
    logger = Logger(ident, cfg, store=store, rtc=Rtc(base_ms=start_ms, drift_ppm=0.0),
                    sensor=Sensor.ideal(bt), source=TraceSource(trace.t_s, trace.volts, trace.temp_c))
    logger.run_until(float(trace.t_s[-1]))
    logger.flush()
    return ReplayResult(logger, trace)
