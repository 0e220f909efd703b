"""The one parser per quantity (smartlogger.quantities): a table of texts and what they mean."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smartlogger.errors import ConfigError
from smartlogger.quantities import (
    Current,
    Power,
    QuantityError,
    Voltage,
    format_duration,
    parse_current,
    parse_duration,
    parse_load,
    parse_power,
    parse_voltage,
)

CURRENTS = [("20A", 20.0), ("20 A", 20.0), ("20a", 20.0), ("500mA", 0.5), ("1.2kA", 1200.0),
            ("20", 20.0), ("0.5A", 0.5), ("1,5A", 1.5)]


@pytest.mark.parametrize(("text", "amps"), CURRENTS)
def test_current(text: str, amps: float) -> None:
    assert parse_current(text) == Current(pytest.approx(amps))


@pytest.mark.parametrize(("text", "watts"), [("4800W", 4800.0), ("4.8kW", 4800.0), ("4.8 KW", 4800.0),
                                             ("1MW", 1e6), ("250", 250.0)])
def test_power(text: str, watts: float) -> None:
    assert parse_power(text) == Power(pytest.approx(watts))


def test_the_unit_points_at_the_right_option() -> None:
    with pytest.raises(QuantityError, match=r"is a power, not a current; use --load-power 4\.8kW") as err:
        parse_current("4.8kW")
    assert err.value.field == "--load" and err.value.hint == "use --load-power 4.8kW"
    with pytest.raises(QuantityError, match="use --load 20A"):
        parse_power("20A")


@pytest.mark.parametrize("text", ["", "  ", "abc", "0A", "-3A", "20MA", "20 V", "nanA", "infA"])
def test_bad_currents_are_named(text: str) -> None:
    with pytest.raises(QuantityError) as err:
        parse_current(text, field="--load")
    assert str(err.value).startswith("--load: ")
    assert isinstance(err.value, ConfigError) and isinstance(err.value, ValueError)


def test_load_either_kind_but_never_a_bare_number() -> None:
    assert parse_load("20A") == Current(20.0)
    assert parse_load("4.8kW") == Power(4800.0)
    with pytest.raises(QuantityError, match="write 20A for a current or 20W for a power"):
        parse_load("20")


@pytest.mark.parametrize(("text", "seconds"), [
    ("3h", 10800.0), ("90min", 5400.0), ("45 s", 45.0), ("45s", 45.0), ("1h30m", 5400.0),
    ("2:45:00", 9900.0), ("2:45", 9900.0), ("1.5 h", 5400.0), ("10d", 864000.0),
    ("3 hours 20 min", 12000.0), ("250ms", 0.25),
])
def test_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


def test_bare_duration_needs_a_default_unit() -> None:
    assert parse_duration("3", default_unit="h") == 10800.0
    with pytest.raises(QuantityError, match="has no unit; write it as 3s, 3min or 3h"):
        parse_duration("3")


@pytest.mark.parametrize("text", ["-3h", "3x", "0s", "h", "3h 2", "1:75"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(QuantityError):
        parse_duration(text, field="--rated-time")


@pytest.mark.parametrize(("text", "volts", "scope"), [
    ("1.75V/cell", 1.75, "cell"), ("10.5V/block", 10.5, "block"), ("252V/string", 252.0, "string"),
    ("1750mV per cell", 1.75, "cell"), ("1.75", 1.75, "cell"), ("1.75V", 1.75, "cell"),
    ("1,75 V/cell", 1.75, "cell"), ("10.5 V per block", 10.5, "block"), ("10.6 V/b", 10.6, "block"),
])
def test_voltage(text: str, volts: float, scope: str) -> None:
    v = parse_voltage(text)
    assert v.volts == pytest.approx(volts) and v.scope == scope


def test_voltage_per_cell_from_each_scope() -> None:
    assert Voltage(1.75, "cell").per_cell(6) == 1.75
    assert Voltage(10.5, "block").per_cell(6) == pytest.approx(1.75)
    assert Voltage(420.0, "string").per_cell(6, 40) == pytest.approx(1.75)
    with pytest.raises(QuantityError, match="needs the number of blocks"):
        Voltage(420.0, "string").per_cell(6)


def test_a_block_voltage_without_scope_is_not_taken_as_per_cell() -> None:
    with pytest.raises(QuantityError, match=r"too high for one cell; write 10\.5V/block"):
        parse_voltage("10.5")
    with pytest.raises(QuantityError, match="does not say per what"):
        parse_voltage("1.75V", default_scope=None)
    with pytest.raises(QuantityError, match="is not a voltage"):
        parse_voltage("12A")


@pytest.mark.parametrize(("seconds", "text"), [(0, "0:00:00"), (9903.4, "2:45:03"), (93787, "26:03:07"),
                                               (None, "-"), (-61, "-0:01:01")])
def test_format_duration(seconds: float | None, text: str) -> None:
    assert format_duration(seconds) == text


@given(st.integers(min_value=1, max_value=10**7))
def test_format_and_parse_duration_round_trip(seconds: int) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


@given(st.text(max_size=20))
def test_arbitrary_text_never_escapes_as_another_error(text: str) -> None:
    for parse in (parse_current, parse_power, parse_load, parse_duration, parse_voltage):
        with contextlib.suppress(QuantityError):
            parse(text)
