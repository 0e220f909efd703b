"""Replay: a recorded CSV trace as the sensor source of the firmware model.

Owns what a trace means (a time column, voltage, optional temperature and current),
the checks a trace must pass to stand for a block (voltages a logger measures,
temperatures of a battery, no gap the firmware would have to invent data for) and
running it through a ``Logger`` whose identity is marked ``replayed=True``. The
CSV itself (delimiter, decimal comma, units, time formats and zones, rows out of
order, repeated time stamps) is read by ``smartlogger.csvseries``. Does not own the
firmware (``device.firmware``) or the output format (the CLI writes logfiles and CSV
via ``device.sim`` writers).

Blank cells are normal: real traces often log temperature (or voltage) on their
own rows. Voltage is taken from the rows that have one; temperature and current
are interpolated linearly in time onto those rows (held constant before the
first and after the last value). Rows with the same time are merged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from smartlogger.csvseries import TIME_FORMATS, Column, CsvFormat, Source, check_gaps, read_series
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
__all__ = ["TIME_FORMATS", "ReplayResult", "Trace", "TraceFormat", "read_trace", "replay_trace"]
#: Default device time of a trace whose times are relative seconds: 2026-01-01T00:00:00Z.
RELATIVE_ORIGIN_MS = 1_767_225_600_000
#: Longest stretch without a voltage the replay bridges by default (s): the firmware
#: would sample the straight line between the two rows, a value nobody measured.
DEFAULT_MAX_GAP_S = 3600.0


@dataclass(frozen=True)
class TraceFormat:
    """How to read a trace CSV (see ``smartlogger.csvseries`` for the detecting defaults).

    ``time_format`` is ``auto``, one of ``csvseries.TIME_FORMATS`` or a strptime pattern;
    ``timezone`` the zone of stamps without one (default: UTC, noted). ``disorder``: rows
    up to ``max_disorder_s`` out of time order are ``sort``-ed (reported) or ``refuse``-d.
    ``max_gap_s``: the longest stretch between two voltage rows (None: any).
    """

    time_column: str = "time"
    voltage_column: str = "voltage"
    voltage_unit: str | None = None
    temperature_column: str | None = None
    temperature_unit: str | None = None
    current_column: str | None = None
    time_format: str = "auto"
    delimiter: str | None = None
    decimal: str | None = None
    timezone: str | None = None
    disorder: Literal["sort", "refuse"] = "sort"
    max_disorder_s: float = 2.0
    max_gap_s: float | None = DEFAULT_MAX_GAP_S
    default_temperature_c: float = 25.0

    def __post_init__(self) -> None:
        if self.voltage_unit is not None and self.voltage_unit not in VOLTAGE_UNITS:
            raise ConfigError("voltage_unit", f"{self.voltage_unit!r} is not one of V, mV")
        if self.temperature_unit is not None and self.temperature_unit not in TEMPERATURE_UNITS:
            raise ConfigError("temperature_unit", f"{self.temperature_unit!r} is not one of C, F")
        if self.delimiter is not None and len(self.delimiter) != 1:
            raise ConfigError("delimiter", "the delimiter must be one character")
        self.csv_format()  # checks the rest

    def csv_format(self) -> CsvFormat:
        return CsvFormat(time_column=self.time_column, time_format=self.time_format, timezone=self.timezone,
                         delimiter=self.delimiter, decimal=self.decimal, disorder=self.disorder,
                         max_disorder_s=self.max_disorder_s, duplicates="mean")


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
    notes: list[str] = field(default_factory=list)  # what the reader did (sorted rows, merged stamps, ...)
    reordered: int = 0  # rows that were out of time order and sorted
    max_disorder_s: float = 0.0  # how far back in time the worst of them was, s
    duplicates: int = 0  # rows that repeated a time stamp and were merged


@dataclass
class ReplayResult:
    """The replayed logger (with its log) and the trace it was fed."""

    logger: Logger
    trace: Trace


def read_trace(source: Source, fmt: TraceFormat, *, name: str | None = None) -> Trace:
    """Read and check a trace CSV (a path, its bytes or its text; see module docstring).

    Raises ``InputFileError`` naming the file, line and column."""
    cols = [Column("voltage", "voltage", name=fmt.voltage_column, unit=fmt.voltage_unit,
                   option="--voltage-column")]
    if fmt.temperature_column:
        cols.append(Column("temperature", "temperature", name=fmt.temperature_column,
                           unit=fmt.temperature_unit, option="--temperature-column"))
    if fmt.current_column:
        cols.append(Column("current", "current", name=fmt.current_column, option="--current-column"))
    s = read_series(source, cols, fmt.csv_format(), name=name)
    p = s.name
    has_v = s.present("voltage")
    if int(has_v.sum()) < 2:
        raise InputFileError(p, f"needs at least two rows with a voltage, found {int(has_v.sum())}",
                             column=s.columns["voltage"])
    t_abs = s.t_s[has_v]
    volts = s.values["voltage"][has_v]
    lines = s.lines[has_v]
    _check_volts(p, fmt, volts, lines, s.columns["voltage"], s.units["voltage"])
    if fmt.max_gap_s is not None:
        check_gaps(t_abs, lines, fmt.max_gap_s, p, s.columns["voltage"], "--max-gap")
    temp = np.full(t_abs.shape, fmt.default_temperature_c)
    if "temperature" in s.values:
        has_c = s.present("temperature")
        tc = s.values["temperature"][has_c]
        bad = np.nonzero((tc < -60.0) | (tc > 150.0))[0]
        if bad.size:
            raise InputFileError(p, f"{tc[bad[0]]:g} C is not a battery temperature (wrong unit?)",
                                 line=int(s.lines[has_c][bad[0]]), column=s.columns["temperature"])
        if tc.size:
            temp = np.interp(t_abs, s.t_s[has_c], tc)
    current = None
    if "current" in s.values:
        has_a = s.present("current")
        if has_a.any():
            current = np.interp(t_abs, s.t_s[has_a], s.values["current"][has_a])
    origin = float(t_abs[0])
    start_ms = round(origin * 1000.0) if s.absolute else None
    return Trace(p, t_abs - origin, volts, temp, current, start_ms, s.rows, [int(x) for x in lines],
                 list(s.notes), s.reordered, s.max_disorder_s, s.duplicates)


def _check_volts(path: str, fmt: TraceFormat, volts: FloatArray, lines: npt.NDArray[np.int64],
                 column: str, unit: str) -> None:
    """Reject voltages no logger measures: the usual cause is a wrong unit."""
    hi = max(r[1] for r in MEASURING_RANGE_MV.values()) / 1000.0
    lo = min(r[0] for r in MEASURING_RANGE_MV.values()) / 1000.0
    bad = np.nonzero((volts < 0.5 * lo) | (volts > 2.0 * hi))[0]
    if bad.size:
        v = float(volts[bad[0]])
        hint = ""
        if unit == "V" and v > 2.0 * hi:
            hint = " (looks like millivolts: use voltage unit mV)"
        elif unit == "mV" and 0.0 < v < 1.0:
            hint = " (looks like volts: use voltage unit V)"
        raise InputFileError(path, f"{v:g} V cannot be a block voltage{hint}", line=int(lines[bad[0]]),
                             column=column)


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
    phase_s: float = 0.0,
) -> ReplayResult:
    """Run ``trace`` through a generation-2 logger with an ideal sensor and clock.

    The logger's identity carries ``replayed=True``; its clock is set to the trace's
    absolute start (or 2026-01-01T00:00:00Z for relative times) so device times
    reproduce the recorded times. ``phase_s`` (0 <= phase < 1 tick): the logger's
    ticks fall this long after the trace's first row, as a real logger's sampling
    is not in step with the recorder (or with the other loggers of a string).
    """
    if not 0.0 <= phase_s < 60.0:
        raise ConfigError("phase_s", f"{phase_s!r} s: the sampling phase is 0 .. 60 s")
    bt = block_type if block_type is not None else infer_block_type(trace)
    th = thresholds if thresholds is not None else Thresholds.default_for(bt)
    cfg = LoggerConfig(bt, th, rated_ah, float_rate_s=float_rate_s, discharge_rate_s=discharge_rate_s)
    ident = replay_identity(serial)
    start_ms = trace.start_ms if trace.start_ms is not None else RELATIVE_ORIGIN_MS
    # A replay reproduces what was recorded: no extra sensor error or clock drift on top.
    logger = Logger(ident, cfg, store=store, rtc=Rtc(base_ms=start_ms + round(phase_s * 1000.0), drift_ppm=0.0),
                    sensor=Sensor.ideal(bt), source=TraceSource(trace.t_s - phase_s, trace.volts, trace.temp_c))
    logger.run_until(float(trace.t_s[-1]) - phase_s)
    logger.flush()
    return ReplayResult(logger, trace)
