"""Inputs of a capacity-test analysis: the per-block logs and the test metadata.

Owns:
- ``BlockLog``: one logger's decoded samples (device time, mV, dC as numpy
  arrays), its identity and configuration, firmware events, clock jumps and the
  clock observations (device time vs phone time) taken at the NFC tap and the
  BLE pull. This is the seam between loading (``logfile``) and analysis.
- The load of the test (``ConstantCurrent``, ``ConstantPower``, ``CurrentProfile``),
  built from the quantities parsed by ``smartlogger.quantities`` (the one parser of load
  and duration texts) or read from a current CSV.
- ``Datasheet``: a VRLA rated-discharge table imported from CSV and
  interpolated to the test's rate and end voltage.
- ``TestMetadata``: everything the technician states about the test, and
  ``metadata_from_values`` which builds it from the values as typed or stored
  (the API's test record, like the CLI's options).
- ``MetadataError``: the typed error for bad metadata (names the field).

The readers take the file's content as well as a path: ``read_load_csv`` any
``csvseries.Source``, ``parse_datasheet_csv`` the text (or bytes) of a datasheet
(``read_datasheet_csv`` is the path convenience on top): the API holds a datasheet
as text, never as a file.

Does not own any computation on the samples (``align``, ``discharge``,
``exceedances``, ``capacity``) or any decoding of logfiles.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import numpy.typing as npt

from smartlogger.csvseries import Column, CsvFormat, Source, read_series
from smartlogger.errors import AnalysisError, ConfigError, InputFileError
from smartlogger.model import (
    Chemistry,
    ClockSet,
    ConfigChange,
    Event,
    LoggerConfig,
    LoggerIdentity,
    Record,
    SampleBlock,
)
from smartlogger.quantities import (
    Current,
    Power,
    QuantityError,
    Voltage,
    parse_duration,
    parse_load,
    parse_voltage,
)

if TYPE_CHECKING:  # results imports this module (MetadataError)
    from smartlogger.analysis.results import BlockEvidence

FloatArray = npt.NDArray[np.float64]


class MetadataError(AnalysisError):
    """The test metadata (load, rated time, datasheet, end voltage, logs) is unusable.

    ``field`` names the offending item, e.g. ``load`` or ``end_v_per_cell``.
    """

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class HistoryNeeded(MetadataError):
    """The analysis needs samples that the loader left out as far-away float history
    (``BlockLog.history``): the caller loads the logs whole and analyses again
    (``analysis.loading.analyze_files`` does)."""


class TooManySamples(MetadataError):
    """The logs of a test hold more samples (after the loader left out the far-away float
    history) than the caller's budget: ``held`` samples, at most ``limit``."""

    def __init__(self, held: int, limit: int) -> None:
        self.held, self.limit = held, limit
        super().__init__("logs", f"the test's logs hold {held:,} samples or more around its tests, more than "
                         f"the {limit:,} analysed in one test")


# --------------------------------------------------------------------------- clocks


@dataclass(frozen=True)
class ClockObservation:
    """One simultaneous reading of the logger's RTC and the phone's clock.

    ``device_ms`` and ``phone_ms`` are ms since the Unix epoch on the logger's and
    the phone's clock. ``segment`` is the number of clock jumps (``ClockJump``) the
    logger had made before this reading, so it can be placed on the continuous
    oscillator time line. ``source`` says where it came from ("nfc", "ble", ...).
    """

    device_ms: int
    phone_ms: int
    source: str = "ble"
    segment: int = 0


@dataclass(frozen=True)
class ClockJump:
    """The logger's RTC was set from ``old_ms`` to ``new_ms`` (a ``ClockSet`` record).

    ``index`` is the index of the first sample taken after the jump.
    ``phone_referenced`` is true when ``new_ms`` was the phone's time at that
    moment (an NFC tap), so the jump is also a clock observation.
    """

    index: int
    old_ms: int
    new_ms: int
    phone_referenced: bool = True

    @classmethod
    def from_record(cls, index: int, record: ClockSet) -> ClockJump:
        return cls(index, record.old_ms, record.new_ms, True)


# --------------------------------------------------------------------------- block log


@dataclass(frozen=True)
class HistoryCut:
    """What the loader left out of a long log (``analysis.loading.window_history``): float
    samples far from every candidate test. ``below_mv``: every sample left out read at least this
    (the start level the cut was made for); ``holes``: for each run of left-out samples, the index
    (in the kept samples) of the kept sample just before it (the next kept sample follows it);
    ``removed``: samples left out."""

    below_mv: float
    holes: tuple[int, ...]
    removed: int


@dataclass(eq=False)
class BlockLog:
    """One logger's record of a test, decoded, in device time.

    ``t_ms`` (int64, ms since epoch on the logger's RTC), ``mv`` (int32, block
    voltage in mV, 1 mV resolution) and ``dc`` (int16, block temperature in
    tenths of a degree C) are equal-length arrays in the order the samples were
    taken. ``clock_jumps`` are ordered by ``index``.
    """

    identity: LoggerIdentity
    config: LoggerConfig
    t_ms: npt.NDArray[np.int64]
    mv: npt.NDArray[np.int32]
    dc: npt.NDArray[np.int16]
    events: tuple[Event, ...] = ()
    clock_observations: tuple[ClockObservation, ...] = ()
    clock_jumps: tuple[ClockJump, ...] = ()
    source: str = ""
    #: The evidence of the files this log was loaded from (``analysis.loading.load_test_files``);
    #: None for a log built in code (the analysis then calls it "unchecked").
    evidence: BlockEvidence | None = None
    #: The far-away float history the loader left out (None: every sample of the files is here).
    history: HistoryCut | None = None

    def __post_init__(self) -> None:
        self.t_ms = np.ascontiguousarray(self.t_ms, dtype=np.int64)
        self.mv = np.ascontiguousarray(self.mv, dtype=np.int32)
        self.dc = np.ascontiguousarray(self.dc, dtype=np.int16)
        n = self.t_ms.shape[0]
        if self.t_ms.ndim != 1 or self.mv.shape != (n,) or self.dc.shape != (n,):
            raise MetadataError(
                f"logs[{self.serial}]",
                f"t_ms, mv and dc must be 1-D arrays of equal length "
                f"(got {self.t_ms.shape}, {self.mv.shape}, {self.dc.shape})",
            )
        last = -1
        for j in self.clock_jumps:
            if not 0 <= j.index <= n or j.index < last:
                raise MetadataError(
                    f"logs[{self.serial}].clock_jumps",
                    f"jump index {j.index} is outside 0..{n} or out of order",
                )
            last = j.index
        for obs in self.clock_observations:
            if not 0 <= obs.segment <= len(self.clock_jumps):
                raise MetadataError(
                    f"logs[{self.serial}].clock_observations",
                    f"observation segment {obs.segment} but only {len(self.clock_jumps)} clock jumps",
                )

    @property
    def serial(self) -> str:
        return self.identity.serial

    @property
    def position(self) -> int:
        return self.config.block_position

    @property
    def cells(self) -> int:
        return self.config.block_type.cells

    def __len__(self) -> int:
        return int(self.t_ms.shape[0])


def block_log_from_records(
    identity: LoggerIdentity,
    records: Iterable[Record | tuple[int, Record] | int],
    *,
    config: LoggerConfig | None = None,
    pull: tuple[int, int] | None = None,
    observations: Iterable[ClockObservation] = (),
    source: str = "",
    samples: tuple[npt.NDArray[np.int64], npt.NDArray[np.int32], npt.NDArray[np.int16]] | None = None,
) -> BlockLog:
    """A ``BlockLog`` from a logger's main-stream records, in log order.

    ``records`` may be records or ``(seq, record)`` pairs (as ``LogStore.records()``
    yields). Sample blocks become the arrays; every ``ClockSet`` becomes a
    phone-referenced ``ClockJump`` at the sample index where it happened; events are
    kept. The configuration is ``config`` or else the last ``ConfigChange`` (the one
    the test ran with). ``pull`` is ``(device_ms, phone_ms)`` read at the BLE pull,
    after every record; it is placed after the last clock jump.

    ``samples``: the log's ``(t_ms, mv, dc)`` arrays already made (``analysis.loading`` decodes
    the sample payloads straight into them); ``records`` then gives each sample block as its
    sample count (an ``int``) in its place among the other records.
    """
    ts: list[npt.NDArray[np.int64]] = []
    mvs: list[npt.NDArray[np.int32]] = []
    dcs: list[npt.NDArray[np.int16]] = []
    events: list[Event] = []
    jumps: list[ClockJump] = []
    cfg = config
    last_cfg: LoggerConfig | None = None
    n = 0
    for item in records:
        if isinstance(item, int):
            if samples is None:
                raise TypeError("a sample count among the records needs the samples as arrays")
            n += item
            continue
        rec = item[1] if isinstance(item, tuple) else item
        if isinstance(rec, SampleBlock):
            if samples is not None:
                raise TypeError("sample blocks among the records and the samples as arrays")
            k = len(rec)
            ts.append(rec.start_ms + rec.interval_ms * np.arange(k, dtype=np.int64))
            mvs.append(np.frombuffer(rec.mv, dtype=np.int32) if rec.mv.itemsize == 4
                       else np.asarray(rec.mv, dtype=np.int32))
            dcs.append(np.asarray(rec.dc, dtype=np.int16))
            n += k
        elif isinstance(rec, ClockSet):
            jumps.append(ClockJump.from_record(n, rec))
        elif isinstance(rec, ConfigChange):
            last_cfg = rec.config
        elif isinstance(rec, Event):
            events.append(rec)
    cfg = cfg or last_cfg
    if cfg is None:
        raise MetadataError(f"logs[{identity.serial}]", "no configuration in the log and none given")
    obs = list(observations)
    if pull is not None:
        obs.append(ClockObservation(int(pull[0]), int(pull[1]), "ble", len(jumps)))
    if samples is not None:
        if samples[0].size != n:
            raise ValueError(f"the records count {n} samples, the arrays hold {samples[0].size}")
        t_ms, mv, dc = samples
    else:
        empty = np.zeros(0, dtype=np.int64)
        t_ms = np.concatenate(ts) if ts else empty
        mv = np.concatenate(mvs) if mvs else empty.astype(np.int32)
        dc = np.concatenate(dcs) if dcs else empty.astype(np.int16)
    return BlockLog(identity, cfg, t_ms, mv, dc, tuple(events), tuple(obs), tuple(jumps), source)


# --------------------------------------------------------------------------- loads


@dataclass(frozen=True)
class ConstantCurrent:
    """The string was discharged at a constant current (A, through every block)."""

    amps: float

    def describe(self) -> str:
        return f"constant current {self.amps:g} A"


@dataclass(frozen=True)
class ConstantPower:
    """The string was discharged at a constant power (W, whole string)."""

    watts: float

    def describe(self) -> str:
        return f"constant power {self.watts:g} W"


@dataclass(frozen=True, eq=False)
class CurrentProfile:
    """Measured current vs time (load bank or clamp meter).

    ``t_s`` (strictly increasing) and ``amps`` (A, discharge positive) are equal-length
    float arrays; between points the current is interpolated linearly, outside it is
    held at the end values. ``origin_ms`` None: ``t_s`` is the time since the load was
    applied (the relative form; the analysis puts 0 at the discharge start it finds).
    Otherwise the file had absolute time stamps: point ``k`` is at ``origin_ms + 1000 t_s[k]``
    (UTC ms, the instrument's clock), aligned with the logs by that time.
    """

    t_s: FloatArray
    amps: FloatArray
    source: str = ""
    origin_ms: int | None = None
    notes: tuple[str, ...] = ()

    @property
    def values(self) -> FloatArray:
        return self.amps

    @property
    def absolute(self) -> bool:
        return self.origin_ms is not None

    def describe(self) -> str:
        name = Path(self.source).name if self.source else "profile"
        return f"current profile {name} ({len(self.t_s)} points, mean {float(np.mean(self.amps)):.3g} A)"


@dataclass(frozen=True, eq=False)
class PowerProfile:
    """Measured string power vs time (a UPS or load bank in constant-power mode): as
    ``CurrentProfile`` with ``watts`` (W, whole string, discharge positive); the current is
    ``P / V_string`` at each instant."""

    t_s: FloatArray
    watts: FloatArray
    source: str = ""
    origin_ms: int | None = None
    notes: tuple[str, ...] = ()

    @property
    def values(self) -> FloatArray:
        return self.watts

    @property
    def absolute(self) -> bool:
        return self.origin_ms is not None

    def describe(self) -> str:
        name = Path(self.source).name if self.source else "profile"
        return f"power profile {name} ({len(self.t_s)} points, mean {float(np.mean(self.watts)):.4g} W)"


Profile = CurrentProfile | PowerProfile
Load = ConstantCurrent | ConstantPower | CurrentProfile | PowerProfile

def load_from_quantity(quantity: Current | Power) -> ConstantCurrent | ConstantPower:
    """The analysis load of a parsed quantity (``smartlogger.quantities``: ``parse_current``,
    ``parse_power`` or ``parse_load``, the one parser of load texts)."""
    if isinstance(quantity, Current):
        return ConstantCurrent(quantity.amps)
    if isinstance(quantity, Power):
        return ConstantPower(quantity.watts)
    raise TypeError(f"not a load quantity: {quantity!r}")


_CURRENT_COLUMNS = ("current_a", "current", "amps", "i_a", "i", "load current", "strom")
_POWER_COLUMNS = ("power_w", "power", "p_w", "p", "load power", "leistung")


@dataclass(frozen=True)
class LoadCsvFormat:
    """How to read a load CSV (``--load-csv`` and its ``--load-*`` options).

    Times: ``time_format`` ``auto`` (seconds since the load was applied, h:mm:ss elapsed,
    ISO 8601, epoch, ...: see ``smartlogger.csvseries``). Absolute time stamps without a zone
    need ``timezone`` (the zone the instrument's clock was set to): they are aligned with the
    logs by absolute time, and an hour off would move the whole load. The value column is
    ``current_column`` (A) or ``power_column`` (W, whole string), or found by its usual names.
    """

    time_column: str | None = None
    time_format: str = "auto"
    timezone: str | None = None
    current_column: str | None = None
    power_column: str | None = None
    delimiter: str | None = None
    decimal: str | None = None
    disorder: Literal["sort", "refuse"] = "sort"
    max_disorder_s: float = 2.0
    max_gap_s: float | None = None


def read_load_csv(source: Source, fmt: LoadCsvFormat | None = None, *,
                  name: str | None = None) -> CurrentProfile | PowerProfile:
    """Read a load profile CSV (a path, its bytes or its text): the string current (A) or the
    string power (W) over time. Rows that repeat a time stamp with a new value are a step (the
    new value 1 ms later). A profile recorded with the charging-positive sign convention
    (mostly negative values) is negated, so discharge is positive. Raises ``InputFileError``
    naming the file, line and column."""
    f = fmt or LoadCsvFormat()
    if f.current_column and f.power_column:
        raise MetadataError("load_csv", "give a current column or a power column, not both")
    if f.power_column:
        col = Column("value", "power", name=f.power_column, option="--load-power-column")
    elif f.current_column:
        col = Column("value", "current", name=f.current_column, option="--load-current-column")
    else:
        col = Column("value", "current", aliases=_CURRENT_COLUMNS, option="--load-current-column")
    csv_fmt = CsvFormat(time_column=f.time_column, time_format=f.time_format, timezone=f.timezone,
                        naive="refuse", delimiter=f.delimiter, decimal=f.decimal, disorder=f.disorder,
                        max_disorder_s=f.max_disorder_s, duplicates="step", max_gap_s=f.max_gap_s,
                        time_option="--load-time-column", format_option="--load-time-format",
                        timezone_option="--load-timezone", gap_option="--load-max-gap",
                        disorder_option="--load-out-of-order")
    try:
        s = read_series(source, [col], csv_fmt, name=name)
    except InputFileError as err:
        if f.current_column is None and f.power_column is None and err.message.startswith("no current column"):
            # No current column by the usual names: perhaps it is a power column.
            try:
                s = read_series(source, [Column("value", "power", aliases=_POWER_COLUMNS)], csv_fmt, name=name)
            except InputFileError:
                raise err from None
        else:
            raise
    kind = "power" if s.units["value"] in ("W", "kW") else "current"
    has = s.present("value")
    t = s.t_s[has]
    v = s.values["value"][has]
    lines = s.lines[has]
    col_name = s.columns["value"]
    if t.size < 2:
        raise InputFileError(s.name, f"a load profile needs at least two rows with a value, found {t.size}",
                             column=col_name)
    notes = list(s.notes)
    if float(np.median(v)) < 0:
        v = -v
        notes.append("negative values (charging-positive convention): negated")
    if float(np.max(v)) <= 0:
        raise InputFileError(s.name, f"the load never came on (no positive {kind}): the wrong column or file?",
                             column=col_name)
    del lines
    origin = round(float(t[0]) * 1000.0) if s.absolute else None
    t_rel = t - t[0] if s.absolute else t
    if kind == "power":
        return PowerProfile(t_rel, v, s.name, origin, tuple(notes))
    return CurrentProfile(t_rel, v, s.name, origin, tuple(notes))


def read_current_csv(path: Source) -> CurrentProfile:
    """A current-vs-time CSV in the relative form (``t_s``: s since the load was applied,
    ``current_a``); see ``read_load_csv`` for everything else it reads."""
    prof = read_load_csv(path)
    if isinstance(prof, PowerProfile):
        raise InputFileError(prof.source, "this is a power profile, not a current profile")
    return prof


# --------------------------------------------------------------------------- datasheet

DatasheetUnit = Literal["A", "W/cell", "W/block"]


@dataclass(frozen=True, eq=False)
class Datasheet:
    """A rated constant-current or constant-power discharge table, as printed in VRLA datasheets.

    ``values[i, j]`` is the current (A, per block = string current) or power
    (W per cell or per block) at which a new battery at ``temperature_c`` reaches
    ``end_v_per_cell[i]`` (V per cell) after ``times_s[j]`` seconds.
    ``end_v_per_cell`` and ``times_s`` are strictly increasing; each row
    strictly decreases with time (a longer discharge needs a lower rate).
    """

    end_v_per_cell: FloatArray
    times_s: FloatArray
    values: FloatArray
    unit: DatasheetUnit = "A"
    temperature_c: float = 25.0
    source: str = ""

    def _row(self, end_v_per_cell: float) -> FloatArray:
        """The rates vs time at ``end_v_per_cell``, linear between the printed rows."""
        ev = self.end_v_per_cell
        if not ev[0] - 1e-9 <= end_v_per_cell <= ev[-1] + 1e-9:
            raise MetadataError(
                "end_v_per_cell",
                f"{end_v_per_cell:.3f} V/cell is outside the datasheet's end voltages "
                f"{ev[0]:.2f}..{ev[-1]:.2f} V/cell ({self.source or 'datasheet'})",
            )
        if len(ev) == 1:
            return np.asarray(self.values[0], dtype=np.float64)
        k = int(np.clip(np.searchsorted(ev, end_v_per_cell) - 1, 0, len(ev) - 2))
        w = (end_v_per_cell - ev[k]) / (ev[k + 1] - ev[k])
        return np.asarray((1 - w) * self.values[k] + w * self.values[k + 1], dtype=np.float64)

    def rated_time_s(self, rate: float, end_v_per_cell: float) -> float:
        """Time (s) a new battery at ``temperature_c`` lasts at ``rate`` (in ``unit``) to ``end_v_per_cell``.

        Interpolated linearly in log(rate) vs log(time), where datasheet
        curves are close to straight (Peukert).
        """
        row = self._row(end_v_per_cell)
        if not row[-1] <= rate <= row[0]:
            raise MetadataError(
                "datasheet",
                f"test rate {rate:.4g} {self.unit} is outside the datasheet's range "
                f"{row[-1]:.4g}..{row[0]:.4g} {self.unit} at {end_v_per_cell:.2f} V/cell",
            )
        # np.interp needs increasing x: reverse so log(rate) increases.
        return float(np.exp(np.interp(np.log(rate), np.log(row[::-1]), np.log(self.times_s[::-1]))))

    def rated_rate(self, time_s: float, end_v_per_cell: float) -> float:
        """The rate (in ``unit``) that a new battery sustains for ``time_s`` to ``end_v_per_cell``."""
        row = self._row(end_v_per_cell)
        t = self.times_s
        if not t[0] <= time_s <= t[-1]:
            raise MetadataError(
                "datasheet",
                f"discharge time {time_s / 60:.1f} min is outside the datasheet's range "
                f"{t[0] / 60:g}..{t[-1] / 60:g} min",
            )
        return float(np.exp(np.interp(np.log(time_s), np.log(t), np.log(row))))


def read_datasheet_csv(path: str | os.PathLike[str]) -> Datasheet:
    """``parse_datasheet_csv`` of the file at ``path``."""
    return parse_datasheet_csv(Path(path).read_bytes(), str(path))


def parse_datasheet_csv(text: str | bytes, source: str = "datasheet") -> Datasheet:
    """A datasheet table CSV (format in docs/CAPACITY.md); ``source`` names it in errors.

    ``# unit: A`` (or ``W/cell``, ``W/block``), ``# temperature_c: 25`` and
    ``# source: ...`` comment lines; a header ``end_v_per_cell,5min,10min,...,20h``;
    one row per end voltage per cell.
    """
    p = source
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as err:
            raise InputFileError(source, f"not UTF-8 text (byte {err.start})") from None
    meta: dict[str, tuple[int, str]] = {}
    data: list[tuple[int, str]] = []
    # Lines as open(path, newline="") gives them.
    with io.StringIO(text, newline="") as f:
        for i, line in enumerate(f, start=1):
            s = line.strip()
            if not s:
                continue
            if s.startswith("#"):
                if ":" in s:
                    key, _, value = s[1:].partition(":")
                    meta[key.strip().lower()] = (i, value.strip())
                continue
            data.append((i, s))
    if len(data) < 2:
        raise InputFileError(p, "a datasheet needs a header row and at least one end-voltage row")
    unit_line, unit = meta.get("unit", (0, "A"))
    units: dict[str, DatasheetUnit] = {"a": "A", "w/cell": "W/cell", "w/block": "W/block"}
    if unit.lower() not in units:
        raise InputFileError(p, f"unit {unit!r} is not A, W/cell or W/block", line=unit_line or None)
    temp_line, temp_text = meta.get("temperature_c", (0, "25"))
    try:
        temperature_c = float(temp_text)
    except ValueError:
        raise InputFileError(p, f"temperature_c {temp_text!r} is not a number", line=temp_line) from None
    rows = list(csv.reader([s for _, s in data]))
    header = [h.strip() for h in rows[0]]
    if header[0].lower() not in ("end_v_per_cell", "vpc", "end_v"):
        raise InputFileError(p, "first header column must be end_v_per_cell", line=data[0][0], column=header[0])
    times: list[float] = []
    for h in header[1:]:
        try:
            times.append(parse_duration(h, field="datasheet"))
        except QuantityError:
            raise InputFileError(p, f"{h!r} is not a discharge time such as 30min or 3h",
                                 line=data[0][0], column=h) from None
    if len(times) < 2 or any(b <= a for a, b in itertools.pairwise(times)):
        raise InputFileError(p, "need at least two discharge times, strictly increasing", line=data[0][0])
    ev: list[float] = []
    values: list[list[float]] = []
    for (lineno, _), row in zip(data[1:], rows[1:], strict=True):
        if len(row) != len(header):
            raise InputFileError(p, f"{len(row)} columns, header has {len(header)}", line=lineno)
        try:
            nums = [float(c) for c in row]
        except ValueError:
            bad = next(c for c in row if not _is_float(c))
            col = header[row.index(bad)]
            raise InputFileError(p, f"{bad!r} is not a number", line=lineno, column=col) from None
        if not 0.5 <= nums[0] <= 4.0:
            raise InputFileError(p, f"end voltage {nums[0]} V/cell is implausible", line=lineno, column=header[0])
        rates = nums[1:]
        if any(r <= 0 for r in rates) or any(b >= a for a, b in itertools.pairwise(rates)):
            raise InputFileError(p, "rates must be positive and decrease with discharge time", line=lineno)
        if ev and nums[0] <= ev[-1]:
            raise InputFileError(p, "end voltages must increase row by row", line=lineno, column=header[0])
        ev.append(nums[0])
        values.append(rates)
    return Datasheet(
        np.asarray(ev), np.asarray(times), np.asarray(values), units[unit.lower()], temperature_c,
        meta.get("source", (0, p))[1],
    )


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# --------------------------------------------------------------------------- test metadata

#: Default end-of-discharge voltage per cell by chemistry (V/cell). Lead-acid: 1.75 V/cell,
#: the usual end voltage of 1-8 h tests (PRODUCT.md: 1.60-1.80 V depending on duration).
DEFAULT_END_V_PER_CELL: dict[Chemistry, float] = {
    Chemistry.VRLA: 1.75,
    Chemistry.FLOODED: 1.75,
    Chemistry.NICD: 1.00,
    Chemistry.LIFEPO4: 2.50,
}

#: Plausible end voltages per cell by chemistry (V/cell); outside is bad metadata.
END_V_RANGE: dict[Chemistry, tuple[float, float]] = {
    Chemistry.VRLA: (1.50, 2.00),
    Chemistry.FLOODED: (1.50, 2.00),
    Chemistry.NICD: (0.80, 1.20),
    Chemistry.LIFEPO4: (2.00, 3.20),
}


@dataclass(frozen=True)
class TestMetadata:
    """What the technician states about a capacity test.

    ``rated_time_s`` (s) is the rated discharge time at this load to the end
    voltage at ``reference_temperature_c``; alternatively ``datasheet`` gives it
    by interpolation. ``end_v_per_cell`` (V/cell) defaults by chemistry.
    ``end_voltage`` gives it as typed, per cell, per block or for the string
    (``quantities.Voltage``; converted with the string's cells per block and blocks).
    ``string_blocks`` is the number of blocks in the string (to notice missing
    loggers; default: the number of logs).
    """

    __test__ = False  # not a pytest test class, despite the name

    load: Load
    rated_time_s: float | None = None
    datasheet: Datasheet | None = None
    end_v_per_cell: float | None = None
    string_blocks: int | None = None
    reference_temperature_c: float = 25.0
    test_id: str = ""
    notes: tuple[str, ...] = field(default=())
    end_voltage: Voltage | None = None

    def __post_init__(self) -> None:
        load = self.load
        if isinstance(load, ConstantCurrent) and not (load.amps > 0 and math.isfinite(load.amps)):
            raise MetadataError("load", f"current {load.amps!r} A must be positive")
        if isinstance(load, ConstantPower) and not (load.watts > 0 and math.isfinite(load.watts)):
            raise MetadataError("load", f"power {load.watts!r} W must be positive")
        if self.rated_time_s is not None and self.datasheet is not None:
            raise MetadataError("rated_time", "give either a rated time or a datasheet, not both")
        if self.rated_time_s is not None and not (0 < self.rated_time_s <= 1000 * 3600):
            raise MetadataError("rated_time", f"{self.rated_time_s!r} s is not a positive duration")
        if self.string_blocks is not None and not 1 <= self.string_blocks <= 10000:
            raise MetadataError("string_blocks", f"{self.string_blocks} is outside 1..10000")
        if not -40 <= self.reference_temperature_c <= 60:
            raise MetadataError("reference_temperature_c", f"{self.reference_temperature_c} C is implausible")
        if self.end_v_per_cell is not None and self.end_voltage is not None:
            raise MetadataError("end_voltage", "give the end voltage once (per cell, per block or per string)")
        if self.end_voltage is not None and self.end_voltage.scope == "cell" and not 0.5 <= self.end_voltage.volts <= 4.0:
            raise MetadataError("end_voltage", f"{self.end_voltage} is implausible for one cell")
        if self.end_v_per_cell is not None and not (0.5 <= self.end_v_per_cell <= 4.0):
            hint = " (looks like a per-block voltage; give volts per cell)" if self.end_v_per_cell > 4 else ""
            raise MetadataError("end_v_per_cell", f"{self.end_v_per_cell} V/cell is implausible{hint}")

    def end_voltage_for(self, chemistry: Chemistry, *, cells_per_block: int | None = None,
                        blocks: int | None = None) -> float:
        """End voltage per cell (V/cell) for this test and chemistry; checks plausibility.

        A per-block end voltage needs ``cells_per_block``, a string one also ``blocks``
        (the string's size, with missing loggers)."""
        lo, hi = END_V_RANGE[chemistry]
        if self.end_voltage is not None:
            if cells_per_block is None:
                raise MetadataError("end_voltage", f"{self.end_voltage}: the cells per block are not known")
            try:
                v = self.end_voltage.per_cell(cells_per_block, blocks if blocks is not None else self.string_blocks)
            except ConfigError as err:
                raise MetadataError("end_voltage", err.message) from None
            given = f"{self.end_voltage} = {v:.3f} V/cell ({cells_per_block} cells per block" + (
                f", {blocks} blocks)" if self.end_voltage.scope == "string" else ")")
        else:
            v = self.end_v_per_cell if self.end_v_per_cell is not None else DEFAULT_END_V_PER_CELL[chemistry]
            given = f"{v:.3f} V/cell"
        if not lo <= v <= hi:
            raise MetadataError(
                "end_voltage" if self.end_voltage is not None else "end_v_per_cell",
                f"{given} is outside {lo:.2f}..{hi:.2f} V/cell for {chemistry.value} blocks",
            )
        return v


def metadata_from_values(*, load: str | Load, rated_time: str | None = None,
                         datasheet: Datasheet | str | bytes | None = None,
                         end_v_per_cell: float | None = None, end_voltage: str | None = None,
                         string_blocks: int | None = None, reference_temperature_c: float = 25.0,
                         test_id: str = "", datasheet_source: str = "datasheet") -> TestMetadata:
    """``TestMetadata`` from the values a technician types or a test record stores.

    ``load``: a load text such as ``"20A"`` or ``"4.8kW"`` (``quantities.parse_load``), or a
    ``Load``; ``rated_time``: a duration text, hours if it has no unit (``"3h"``, ``"2.5"``);
    ``datasheet``: a ``Datasheet`` or the text of its CSV (named ``datasheet_source`` in
    errors); ``end_voltage``: ``"1.75V/cell"``, ``"10.5V/block"`` or ``"252V/string"``.
    The same parsers, hence the same messages, as the command line's options. Raises
    ``MetadataError``/``QuantityError`` naming the field, or ``InputFileError`` for the
    datasheet's CSV.
    """
    if isinstance(datasheet, str | bytes):
        datasheet = parse_datasheet_csv(datasheet, datasheet_source)
    return TestMetadata(load_from_quantity(parse_load(load, field="load")) if isinstance(load, str) else load,
                        rated_time_s=(parse_duration(rated_time, field="rated_time", default_unit="h")
                                      if rated_time else None),
                        datasheet=datasheet, end_v_per_cell=end_v_per_cell,
                        end_voltage=parse_voltage(end_voltage, field="end_voltage") if end_voltage else None,
                        string_blocks=string_blocks, reference_temperature_c=reference_temperature_c,
                        test_id=test_id)
