"""Click parameter types for the quantities a technician types: current, power, duration.

Every command reads ``--load``, ``--load-power``, ``--rated-time``, timeouts and log rates
through these types, which call ``smartlogger.quantities``: ``20A`` means the same in every
command and every mistake gets the same one-line message (a ``QuantityError`` naming the
option, with a hint to the right option when the unit says it: ``--load 4.8kW`` ->
``use --load-power 4.8kW``). The types convert to the quantity objects, or to plain seconds for
durations, and leave ``None`` alone.

Owns nothing but the click glue; parsing rules live in ``smartlogger.quantities``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from smartlogger.quantities import (
    Current,
    Power,
    QuantityError,
    format_duration,
    parse_current,
    parse_duration,
    parse_power,
)

if TYPE_CHECKING:  # click >= 8.2 makes ParamType generic; 8.1 (still allowed) does not
    _CurrentBase = click.ParamType[Current]
    _PowerBase = click.ParamType[Power]
    _DurationBase = click.ParamType[float]
else:
    _CurrentBase = _PowerBase = _DurationBase = click.ParamType


def _option_name(param: click.Parameter | None, fallback: str) -> str:
    if param is not None and param.opts:
        return max(param.opts, key=len)  # "--load" rather than "-l"
    return fallback


class CurrentType(_CurrentBase):
    """``20A``, ``500mA``, ``1.2kA``; a bare number is amperes."""

    name = "current"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Current:
        if isinstance(value, Current):
            return value
        return parse_current(str(value), field=_option_name(param, "--load"))


class PowerType(_PowerBase):
    """``4800W``, ``4.8kW``; a bare number is watts."""

    name = "power"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Power:
        if isinstance(value, Power):
            return value
        return parse_power(str(value), field=_option_name(param, "--load-power"))


class DurationType(_DurationBase):
    """``3h``, ``90min``, ``45s``, ``1h30m``, ``2:45:00`` -> seconds (float).

    ``default_unit`` is the unit of a bare number (``s`` for timeouts and log rates, ``h`` for a
    rated time as on datasheets); ``allow_zero`` admits ``0``.
    """

    name = "duration"

    def __init__(self, default_unit: str | None = "s", *, allow_zero: bool = False,
                 max_s: float | None = None, whole_seconds: bool = False) -> None:
        self.default_unit = default_unit
        self.allow_zero = allow_zero
        self.max_s = max_s
        self.whole_seconds = whole_seconds

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        field = _option_name(param, "duration")
        if isinstance(value, int | float) and not isinstance(value, bool):
            seconds = float(value)
            text = f"{value}"
        else:
            text = str(value)
            seconds = parse_duration(text, field=field, default_unit=self.default_unit,
                                     allow_zero=self.allow_zero)
        if self.max_s is not None and seconds > self.max_s:
            raise QuantityError(field, text, f"{text!r} is longer than the {format_duration(self.max_s)} allowed")
        if self.whole_seconds:
            if seconds != int(seconds):
                raise QuantityError(field, text, f"{text!r} is not a whole number of seconds")
            return int(seconds)
        return seconds


CURRENT = CurrentType()
POWER = PowerType()
SECONDS = DurationType("s")
#: A log interval: whole seconds, at most a day (``60``, ``1min``, ``10s``).
LOG_INTERVAL = DurationType("s", whole_seconds=True, max_s=86400.0)


def load_text(load: Current | None, load_power: Power | None, *, default: str | None = None) -> str | None:
    """The canonical text (``20A``, ``4800W``) of ``--load`` / ``--load-power`` for the libraries
    that take a load text; a ``UsageError`` when both are given."""
    if load is not None and load_power is not None:
        raise click.UsageError("give --load (a current) or --load-power (a power), not both")
    if load is not None:
        return f"{load.amps:g}A"
    if load_power is not None:
        return f"{load_power.watts:g}W"
    return default
