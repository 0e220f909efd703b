"""Discharge loads for the battery simulation: what the string has to deliver.

Owns the ``Load`` seam (current asked of a string at a time and string voltage)
and its three forms: constant current, constant power (string power, the
current follows the falling string voltage) and a measured current-vs-time
profile, built from the quantities ``smartlogger.quantities`` parses (``"20A"``,
``"4.8kW"``) or read from a load CSV.

Does not own the battery (see ``battery``): the string model solves the
operating point each step by asking the load for its current at the string
voltage that current produces.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from typing import Protocol, overload, runtime_checkable

import numpy as np
import numpy.typing as npt

from smartlogger.errors import ConfigError, InputFileError
from smartlogger.quantities import Current, Power, parse_load

__all__ = [
    "ConstantCurrent",
    "ConstantPower",
    "CurrentProfile",
    "Load",
    "load_from_csv",
    "load_from_quantity",
    "load_from_text",
]

FloatArray = npt.NDArray[np.float64]


@runtime_checkable
class Load(Protocol):
    """What a discharge load asks of a string.

    ``current_a`` gets the time since the load was applied (s) and the string
    terminal voltage (V) and returns the string current in A (positive =
    discharge). It accepts scalars or equal-shaped arrays. ``end_s`` is the
    time after which the load is removed on its own (None: it runs until the
    string reaches its end voltage).
    """

    @property
    def end_s(self) -> float | None: ...

    @overload
    def current_a(self, t_s: float, v_string: float) -> float: ...
    @overload
    def current_a(self, t_s: FloatArray, v_string: FloatArray | float) -> FloatArray: ...
    def current_a(
        self, t_s: float | FloatArray, v_string: float | FloatArray
    ) -> float | FloatArray: ...


@dataclass(frozen=True)
class ConstantCurrent:
    """A load bank in constant-current mode."""

    amps: float  # A, positive = discharge

    def __post_init__(self) -> None:
        if not (math.isfinite(self.amps) and self.amps > 0):
            raise ConfigError("load", f"constant current {self.amps!r} A must be a positive number")

    @property
    def end_s(self) -> float | None:
        return None

    @overload
    def current_a(self, t_s: float, v_string: float) -> float: ...
    @overload
    def current_a(self, t_s: FloatArray, v_string: FloatArray | float) -> FloatArray: ...
    def current_a(
        self, t_s: float | FloatArray, v_string: float | FloatArray
    ) -> float | FloatArray:
        if isinstance(t_s, np.ndarray):
            return np.full(t_s.shape, float(self.amps))
        return float(self.amps)


@dataclass(frozen=True)
class ConstantPower:
    """A constant-power load (a UPS inverter): ``watts`` is the power taken from the whole string."""

    watts: float  # W, string power

    def __post_init__(self) -> None:
        if not (math.isfinite(self.watts) and self.watts > 0):
            raise ConfigError("load", f"constant power {self.watts!r} W must be a positive number")

    @property
    def end_s(self) -> float | None:
        return None

    @overload
    def current_a(self, t_s: float, v_string: float) -> float: ...
    @overload
    def current_a(self, t_s: FloatArray, v_string: FloatArray | float) -> FloatArray: ...
    def current_a(
        self, t_s: float | FloatArray, v_string: float | FloatArray
    ) -> float | FloatArray:
        # A collapsed string (v -> 0) cannot deliver the power; the current is capped
        # at the power drawn at 1 V so the solver sees a finite, huge demand.
        if isinstance(t_s, np.ndarray) or isinstance(v_string, np.ndarray):
            v = np.maximum(np.asarray(v_string, dtype=np.float64), 1.0)
            return np.broadcast_to(self.watts / v, np.shape(t_s)).astype(np.float64)
        return float(self.watts / max(float(v_string), 1.0))


@dataclass(frozen=True)
class CurrentProfile:
    """A measured current-vs-time profile, piecewise-linear between points.

    ``t_s`` is seconds since the load was applied (strictly increasing, first
    point at or after 0); ``amps`` the string current at those times. Before
    the first point the first value holds; the load ends after the last point.
    """

    t_s: FloatArray = field(compare=False)
    amps: FloatArray = field(compare=False)

    def __post_init__(self) -> None:
        t = np.asarray(self.t_s, dtype=np.float64)
        a = np.asarray(self.amps, dtype=np.float64)
        if t.ndim != 1 or a.shape != t.shape or t.size < 2:
            raise ConfigError("load", "a current profile needs at least two (time, current) points")
        if not (np.all(np.isfinite(t)) and np.all(np.isfinite(a))):
            raise ConfigError("load", "current profile contains non-finite values")
        if t[0] < 0 or np.any(np.diff(t) <= 0):
            raise ConfigError("load", "current profile times must start at >= 0 s and increase strictly")
        object.__setattr__(self, "t_s", t)
        object.__setattr__(self, "amps", a)

    @property
    def end_s(self) -> float | None:
        return float(self.t_s[-1])

    @overload
    def current_a(self, t_s: float, v_string: float) -> float: ...
    @overload
    def current_a(self, t_s: FloatArray, v_string: FloatArray | float) -> FloatArray: ...
    def current_a(
        self, t_s: float | FloatArray, v_string: float | FloatArray
    ) -> float | FloatArray:
        if isinstance(t_s, np.ndarray):
            return np.interp(t_s, self.t_s, self.amps).astype(np.float64)
        return float(np.interp(float(t_s), self.t_s, self.amps))


def load_from_quantity(quantity: Current | Power) -> ConstantCurrent | ConstantPower:
    """The simulated load of a parsed quantity (``smartlogger.quantities``, the one parser of
    load texts: ``parse_load("20A")``, ``parse_current``, ``parse_power``)."""
    if isinstance(quantity, Current):
        return ConstantCurrent(quantity.amps)
    if isinstance(quantity, Power):
        return ConstantPower(quantity.watts)
    raise TypeError(f"not a load quantity: {quantity!r}")


def load_from_text(text: str, *, field: str = "load") -> ConstantCurrent | ConstantPower:
    """``"20A"`` / ``"4.8kW"`` -> the simulated load, through ``quantities.parse_load``."""
    return load_from_quantity(parse_load(text, field=field))


def load_from_csv(
    path: str, *, time_column: str = "t_s", current_column: str = "current_a"
) -> CurrentProfile:
    """Read a current profile from a CSV with a header row.

    ``time_column`` is seconds since the load was applied, ``current_column`` the
    string current in A. Blank rows are skipped. Raises ``InputFileError`` naming
    the line (1-based, the header is line 1) and column of the first problem.
    """
    try:
        fh = open(path, newline="", encoding="utf-8-sig")  # noqa: SIM115 - closed below
    except OSError as err:
        raise InputFileError(path, f"cannot open: {err.strerror or err}") from None
    times: list[float] = []
    amps: list[float] = []
    with fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            raise InputFileError(path, "file is empty (expected a header row)", line=1) from None
        except (csv.Error, UnicodeDecodeError) as err:
            raise InputFileError(path, f"not a readable CSV: {err}", line=1) from None
        names = [h.strip() for h in header]
        for col in (time_column, current_column):
            if col not in names:
                raise InputFileError(
                    path, f"missing column {col!r} (header has: {', '.join(names)})",
                    line=1, column=col,
                )
        ti, ci = names.index(time_column), names.index(current_column)
        last_t = -math.inf
        line = 1
        try:
            for row in reader:
                line = reader.line_num
                if not row or all(not cell.strip() for cell in row):
                    continue
                t = _cell_float(path, row, ti, time_column, line)
                a = _cell_float(path, row, ci, current_column, line)
                if t < 0:
                    raise InputFileError(path, f"time {t:g} s is negative", line=line, column=time_column)
                if t <= last_t:
                    raise InputFileError(
                        path, f"time {t:g} s does not increase (previous {last_t:g} s)",
                        line=line, column=time_column,
                    )
                last_t = t
                times.append(t)
                amps.append(a)
        except (csv.Error, UnicodeDecodeError) as err:
            raise InputFileError(path, f"not a readable CSV: {err}", line=line + 1) from None
    if len(times) < 2:
        raise InputFileError(path, f"needs at least two data rows, found {len(times)}")
    return CurrentProfile(np.array(times, dtype=np.float64), np.array(amps, dtype=np.float64))


def _cell_float(path: str, row: list[str], index: int, column: str, line: int) -> float:
    cell = row[index].strip() if index < len(row) else ""
    if not cell:
        raise InputFileError(path, "blank cell", line=line, column=column)
    try:
        value = float(cell)
    except ValueError:
        raise InputFileError(path, f"{cell!r} is not a number", line=line, column=column) from None
    if not math.isfinite(value):
        raise InputFileError(path, f"{cell!r} is not a finite number", line=line, column=column)
    return value
