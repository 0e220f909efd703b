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

import math
from dataclasses import dataclass, field
from typing import Protocol, overload, runtime_checkable

import numpy as np
import numpy.typing as npt

from smartlogger.csvseries import Column, CsvFormat, Source, read_series
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
    source: Source, *, time_column: str = "t_s", current_column: str = "current_a", name: str | None = None,
) -> CurrentProfile:
    """Read a current profile for the simulation from a CSV (a path, its bytes or its text).

    ``time_column`` is seconds since the load was applied (or h:mm:ss elapsed), ``current_column``
    the string current in A (a unit in the header or the cells is converted). Rows that repeat a
    time with a new current are a step (the new value 1 ms later). The CSV itself is read by
    ``smartlogger.csvseries`` (delimiter, decimal comma, rows slightly out of order); raises
    ``InputFileError`` naming the line (1-based, the header is line 1) and column of a problem.
    """
    fmt = CsvFormat(time_column=time_column, time_format="auto", duplicates="step")
    s = read_series(source, [Column("current", "current", name=current_column)], fmt, name=name)
    if s.absolute:
        raise InputFileError(s.name, "the simulation needs times since the load was applied (seconds or "
                             "h:mm:ss), not clock times", line=s.line_at(0), column=s.time_column)
    has = s.present("current")
    t, a = s.t_s[has], s.values["current"][has]
    if t.size and t[0] < 0:
        raise InputFileError(s.name, f"time {t[0]:g} s is negative", line=int(s.lines[has][0]),
                             column=s.time_column)
    if t.size < 2:
        raise InputFileError(s.name, f"needs at least two data rows, found {t.size}")
    return CurrentProfile(t, a)
