"""One parser per physical quantity the user types: current, power, load, duration, voltage.

Every command, the API and metadata files read these quantities through this module, so
``20A`` means the same everywhere and every mistake gets the same message. It owns parsing and
formatting of user-typed text only; the load *models* (constant current/power, profiles) live in
``device.load`` and ``analysis.inputs`` and are built from what is parsed here.

Rules:

- Units are case-insensitive except the SI prefixes ``m`` (milli) and ``M`` (mega), which keep
  their case (``500mA`` is half an ampere; ``1MW`` a megawatt). Spaces between number and unit are
  allowed; a decimal comma is accepted (``1,75V/cell``).
- A text whose unit says it is another quantity gets a hint to the right option: ``4.8kW`` given
  as a current says ``use --load-power``.
- A bare number takes the caller's ``default_unit`` when one is given, and is an error otherwise
  (an error that names the unit to add).
- Voltages carry a scope, ``/cell``, ``/block`` or ``/string`` (also ``per cell`` ...), converted
  to volts per cell with the string's geometry by ``Voltage.per_cell``.

Stdlib only: the model layer may import it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from smartlogger.errors import ConfigError

__all__ = [
    "Current",
    "Power",
    "QuantityError",
    "Voltage",
    "VoltageScope",
    "format_duration",
    "parse_current",
    "parse_duration",
    "parse_load",
    "parse_power",
    "parse_resistance",
    "parse_voltage",
]


class QuantityError(ConfigError):
    """A typed quantity could not be read. ``field`` names the option or field
    (e.g. ``--load``), ``text`` is what was typed, ``hint`` the fix when one is known."""

    def __init__(self, field: str, text: str, message: str, *, hint: str | None = None) -> None:
        self.text = text
        self.hint = hint
        super().__init__(field, message + (f"; {hint}" if hint else ""))


@dataclass(frozen=True)
class Current:
    """A string current in amperes (discharge positive)."""

    amps: float

    def __str__(self) -> str:
        return f"{self.amps:g} A"


@dataclass(frozen=True)
class Power:
    """A string power in watts (discharge positive)."""

    watts: float

    def __str__(self) -> str:
        return f"{self.watts:g} W"


VoltageScope = Literal["cell", "block", "string"]


@dataclass(frozen=True)
class Voltage:
    """A voltage with the scope it was given in: per cell, per block or for the whole string."""

    volts: float
    scope: VoltageScope

    def per_cell(self, cells_per_block: int, blocks: int | None = None) -> float:
        """Volts per cell for a string of ``blocks`` blocks of ``cells_per_block`` cells.

        A string voltage needs the number of blocks; without it this raises ``QuantityError``.
        """
        if cells_per_block < 1:
            raise ValueError("cells_per_block must be at least 1")
        if self.scope == "cell":
            return self.volts
        if self.scope == "block":
            return self.volts / cells_per_block
        if not blocks:
            raise QuantityError(
                "end_voltage", str(self),
                "a string voltage needs the number of blocks in the string",
                hint="give --blocks, or the end voltage per cell or per block",
            )
        return self.volts / (cells_per_block * blocks)

    def __str__(self) -> str:
        return f"{self.volts:g}V/{self.scope}"


# number, then the unit text (letters, '/', spaces inside like "V per cell")
_NUMBER = r"([+-]?(?:\d+(?:[.,]\d*)?|[.,]\d+)(?:[eE][-+]?\d+)?)"
_QTY_RE = re.compile(r"^\s*" + _NUMBER + r"\s*([A-Za-zµΩ/ ]*?)\s*$")

_PREFIX = {"": 1.0, "k": 1e3, "K": 1e3, "m": 1e-3, "M": 1e6, "µ": 1e-6, "u": 1e-6}


def _split(text: str, field: str, what: str, examples: str) -> tuple[float, str]:
    if not isinstance(text, str) or not text.strip():
        raise QuantityError(field, str(text), f"no {what} given (examples: {examples})")
    m = _QTY_RE.match(text)
    if m is None:
        raise QuantityError(field, text, f"{text!r} is not a {what} (examples: {examples})")
    number = m.group(1).replace(",", ".")
    try:
        value = float(number)
    except ValueError:  # pragma: no cover - the pattern admits only float syntax
        raise QuantityError(field, text, f"{text!r} is not a {what} (examples: {examples})") from None
    if not math.isfinite(value):
        raise QuantityError(field, text, f"{text!r} is not a finite {what}")
    return value, m.group(2).strip()


def _unit(unit: str, base: str) -> float | None:
    """The prefix factor if ``unit`` is ``base`` with an SI prefix (``mA``, ``kW``), else None."""
    if unit.lower() == base.lower():
        return 1.0
    if len(unit) == len(base) + 1 and unit[1:].lower() == base.lower():
        prefix = unit[0]
        if prefix in _PREFIX:
            return _PREFIX[prefix]
        if prefix.lower() == "k":
            return 1e3
    return None


def _positive(value: float, field: str, text: str, what: str) -> None:
    if value <= 0:
        raise QuantityError(field, text, f"{text!r}: a {what} must be greater than zero")


_CURRENT_EXAMPLES = "20A, 500mA, 1.2kA"
_POWER_EXAMPLES = "4800W, 4.8kW"


def parse_current(
    text: str, *, field: str = "--load", default_unit: str | None = "A",
    power_option: str = "--load-power",
) -> Current:
    """``"20A"``, ``"500 mA"``, ``"1.2kA"`` (and a bare number in ``default_unit``) -> ``Current``."""
    value, unit = _split(text, field, "current", _CURRENT_EXAMPLES)
    if not unit:
        if default_unit is None:
            raise QuantityError(field, text, f"{text!r} has no unit", hint=f"write it as {text.strip()}A")
        unit = default_unit
    factor = _unit(unit, "A")
    if factor is None:
        if _unit(unit, "W") is not None:
            raise QuantityError(field, text, f"{text!r} is a power, not a current",
                                hint=f"use {power_option} {text.strip()}")
        raise QuantityError(field, text, f"{text!r} is not a current (examples: {_CURRENT_EXAMPLES})")
    if factor >= 1e6:
        raise QuantityError(field, text, f"{text!r}: mega-amperes is not a battery load")
    amps = value * factor
    _positive(amps, field, text, "current")
    return Current(amps)


def parse_power(
    text: str, *, field: str = "--load-power", default_unit: str | None = "W",
    current_option: str = "--load",
) -> Power:
    """``"4800W"``, ``"4.8kW"``, ``"1.2MW"`` (and a bare number in ``default_unit``) -> ``Power``."""
    value, unit = _split(text, field, "power", _POWER_EXAMPLES)
    if not unit:
        if default_unit is None:
            raise QuantityError(field, text, f"{text!r} has no unit", hint=f"write it as {text.strip()}W")
        unit = default_unit
    factor = _unit(unit, "W")
    if factor is None:
        if _unit(unit, "A") is not None:
            raise QuantityError(field, text, f"{text!r} is a current, not a power",
                                hint=f"use {current_option} {text.strip()}")
        raise QuantityError(field, text, f"{text!r} is not a power (examples: {_POWER_EXAMPLES})")
    watts = value * factor
    _positive(watts, field, text, "power")
    return Power(watts)


def parse_load(text: str, *, field: str = "load") -> Current | Power:
    """A load given either way: ``"20A"`` -> ``Current``, ``"4.8kW"`` -> ``Power``. A bare
    number is refused (it could be either)."""
    _value, unit = _split(text, field, "load", f"{_CURRENT_EXAMPLES}, {_POWER_EXAMPLES}")
    if not unit:
        raise QuantityError(field, text, f"{text!r} has no unit",
                            hint=f"write {text.strip()}A for a current or {text.strip()}W for a power")
    if _unit(unit, "A") is not None:
        return parse_current(text, field=field)
    if _unit(unit, "W") is not None:
        return parse_power(text, field=field)
    raise QuantityError(field, text,
                        f"{text!r} is not a load (examples: {_CURRENT_EXAMPLES}, {_POWER_EXAMPLES})")


_DURATION_UNITS = {
    "ms": 1e-3, "s": 1.0, "sec": 1.0, "secs": 1.0, "second": 1.0, "seconds": 1.0,
    "m": 60.0, "min": 60.0, "mins": 60.0, "minute": 60.0, "minutes": 60.0,
    "h": 3600.0, "hr": 3600.0, "hrs": 3600.0, "hour": 3600.0, "hours": 3600.0,
    "d": 86400.0, "day": 86400.0, "days": 86400.0,
    "w": 604800.0, "week": 604800.0, "weeks": 604800.0,
    "y": 365.25 * 86400.0, "year": 365.25 * 86400.0, "years": 365.25 * 86400.0,
}
_COMPOUND_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([a-z]+)")
_CLOCK_RE = re.compile(r"^\s*(\d+):([0-5]?\d)(?::([0-5]?\d(?:\.\d*)?))?\s*$")
_DURATION_EXAMPLES = "3h, 90min, 45s, 1h30m, 2:45:00"


def parse_duration(
    text: str, *, field: str = "duration", default_unit: str | None = None,
    allow_zero: bool = False,
) -> float:
    """A duration in seconds: ``"3h"``, ``"90min"``, ``"45 s"``, ``"1h30m"``, ``"2:45:00"``
    (h:mm:ss) or ``"2:45"`` (h:mm). A bare number takes ``default_unit`` (e.g. ``"h"`` for a
    rated time, as on datasheets) and is an error when there is none."""
    if not isinstance(text, str) or not text.strip():
        raise QuantityError(field, str(text), f"no duration given (examples: {_DURATION_EXAMPLES})")
    clock = _CLOCK_RE.match(text)
    if clock:
        h, m, s = clock.groups()
        seconds = int(h) * 3600.0 + int(m) * 60.0 + (float(s) if s else 0.0)
    else:
        compact = text.strip().lower().replace(",", ".")
        bare = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)(?:e[-+]?\d+)?", compact)
        if bare:
            if default_unit is None:
                raise QuantityError(field, text, f"{text!r} has no unit",
                                    hint=f"write it as {text.strip()}s, {text.strip()}min or {text.strip()}h")
            compact = compact + default_unit
        pos = 0
        seconds = 0.0
        parts = 0
        for m in _COMPOUND_RE.finditer(compact):
            if compact[pos:m.start()].strip():
                break
            unit = m.group(2)
            if unit not in _DURATION_UNITS:
                raise QuantityError(field, text, f"{text!r}: unknown time unit {unit!r} "
                                    f"(examples: {_DURATION_EXAMPLES})")
            seconds += float(m.group(1)) * _DURATION_UNITS[unit]
            pos = m.end()
            parts += 1
        if parts == 0 or compact[pos:].strip():
            raise QuantityError(field, text, f"{text!r} is not a duration (examples: {_DURATION_EXAMPLES})")
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not allow_zero):
        raise QuantityError(field, text, f"{text!r}: a duration must be greater than zero")
    return seconds


_SCOPE_RE = re.compile(r"^(?P<unit>[a-zµ]*v)\s*(?:/|per\s+|\s+)?\s*(?P<scope>cell|block|string|c|b|s)?$",
                       re.IGNORECASE)
_SCOPE_NAMES: dict[str, VoltageScope] = {"cell": "cell", "c": "cell", "block": "block", "b": "block",
                                         "string": "string", "s": "string"}
_VOLTAGE_EXAMPLES = "1.75V/cell, 10.5V/block, 252V/string"
#: no battery chemistry has a cell above this: a larger voltage without a scope is a block's
_MAX_CELL_V = 4.5


def parse_voltage(
    text: str, *, field: str = "--end-voltage", default_scope: VoltageScope | None = "cell",
) -> Voltage:
    """``"1.75V/cell"``, ``"10.5 V/block"``, ``"252V/string"``, ``"1750mV per cell"``; a voltage
    without a scope (``"1.75V"``, ``"1.75"``) takes ``default_scope`` and is an error without one."""
    value, unit = _split(text, field, "voltage", _VOLTAGE_EXAMPLES)
    if not unit or unit.lower() in ("/cell", "/block", "/string"):
        unit = "V" + unit
    m = _SCOPE_RE.match(unit)
    factor = _unit(m.group("unit"), "V") if m else None
    if m is None or factor is None:
        if _unit(unit, "A") is not None or _unit(unit, "W") is not None:
            raise QuantityError(field, text, f"{text!r} is not a voltage (examples: {_VOLTAGE_EXAMPLES})")
        raise QuantityError(field, text, f"{text!r} is not a voltage (examples: {_VOLTAGE_EXAMPLES})")
    scope_text = m.group("scope")
    if scope_text is None:
        if default_scope is None:
            raise QuantityError(field, text, f"{text!r} does not say per what",
                                hint=f"write {value:g}V/cell, {value:g}V/block or {value:g}V/string")
        scope: VoltageScope = default_scope
        if scope == "cell" and value * factor > _MAX_CELL_V:
            raise QuantityError(field, text, f"{text!r} is too high for one cell",
                                hint=f"write {value:g}V/block or {value:g}V/string")
    else:
        scope = _SCOPE_NAMES[scope_text.lower()]
    volts = value * factor
    _positive(volts, field, text, "voltage")
    return Voltage(volts, scope)


_RESISTANCE_EXAMPLES = "4.5mOhm, 4.5 mΩ, 0.0045 ohm"
_OHM_NAMES = {"ohm": 1.0, "ohms": 1.0, "Ω": 1.0, "mohm": 1e-3, "mΩ": 1e-3, "milliohm": 1e-3,
              "milliohms": 1e-3, "uohm": 1e-6, "µohm": 1e-6, "µΩ": 1e-6}


def parse_resistance(text: str, *, field: str = "--ir-reference", default_unit: str | None = "mOhm") -> float:
    """A resistance in ohms: ``"4.5mOhm"``, ``"4.5 mΩ"``, ``"0.0045 ohm"``, ``"450µΩ"``; a bare number
    takes ``default_unit`` (milliohms: what battery testers show)."""
    value, unit = _split(text, field, "resistance", _RESISTANCE_EXAMPLES)
    if not unit:
        if default_unit is None:
            raise QuantityError(field, text, f"{text!r} has no unit", hint=f"write it as {text.strip()}mOhm")
        unit = default_unit
    unit = unit.replace(" ", "")
    # 'M' would be mega: no battery has megohms, so refuse it rather than read it as milli
    factor = None if unit[:1] == "M" else _OHM_NAMES.get(unit, _OHM_NAMES.get(unit.lower()))
    if factor is None:
        raise QuantityError(field, text, f"{text!r} is not a resistance (examples: {_RESISTANCE_EXAMPLES})")
    ohms = value * factor
    _positive(ohms, field, text, "resistance")
    return ohms


def format_duration(seconds: float | None, *, none: str = "-") -> str:
    """``h:mm:ss`` (hours unbounded: ``26:03:07``), rounded to the second; ``none`` for None."""
    if seconds is None or not math.isfinite(seconds):
        return none
    sign = "-" if seconds < 0 else ""
    total = round(abs(seconds))
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    return f"{sign}{h}:{m:02d}:{s:02d}"
