"""Tests of discharge loads: parsing load texts and reading current profiles from CSV."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from smartlogger.device.load import (
    ConstantCurrent,
    ConstantPower,
    CurrentProfile,
    Load,
    load_from_csv,
    load_from_text,
)
from smartlogger.errors import ConfigError, InputFileError, SmartLoggerError


@pytest.mark.parametrize(("text", "expected"), [
    ("20A", ConstantCurrent(20.0)),
    ("20 A", ConstantCurrent(20.0)),
    (" 12.5a ", ConstantCurrent(12.5)),
    ("500mA", ConstantCurrent(0.5)),
    ("4800W", ConstantPower(4800.0)),
    ("4.8kW", ConstantPower(4800.0)),
    ("4.8 kW", ConstantPower(4800.0)),
    ("1.2MW", ConstantPower(1.2e6)),
    (".5A", ConstantCurrent(0.5)),
    ("1e3W", ConstantPower(1000.0)),
])
def test_parse_load_accepts(text: str, expected: Load) -> None:
    got = load_from_text(text)
    assert got == expected
    assert isinstance(got, Load)


@pytest.mark.parametrize("text", ["", "20", "A", "-5A", "0A", "0 W", "20 V", "4.8kWh", "twenty A",
                                  "20A 5", "2MA", "nanA", "4.8kW/cell"])
def test_parse_load_rejects_with_field(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_from_text(text)
    assert info.value.field == "load"
    assert isinstance(info.value, SmartLoggerError)
    assert str(info.value).startswith("load: ")


@given(st.text(max_size=12))
def test_parse_load_never_raises_anything_else(text: str) -> None:
    try:
        load = load_from_text(text)
    except ConfigError:
        return
    assert isinstance(load, ConstantCurrent | ConstantPower)


def test_constant_power_current_is_power_over_voltage() -> None:
    load = ConstantPower(4800.0)
    assert load.current_a(10.0, 240.0) == pytest.approx(20.0)
    arr = load.current_a(np.array([0.0, 1.0]), np.array([240.0, 200.0]))
    np.testing.assert_allclose(arr, [20.0, 24.0])
    assert load.end_s is None


def test_profile_interpolates_and_holds_first_value() -> None:
    prof = CurrentProfile(np.array([10.0, 20.0]), np.array([4.0, 8.0]))
    assert prof.current_a(0.0, 0.0) == 4.0
    assert prof.current_a(15.0, 0.0) == pytest.approx(6.0)
    np.testing.assert_allclose(prof.current_a(np.array([10.0, 20.0]), 0.0), [4.0, 8.0])
    assert prof.end_s == 20.0
    with pytest.raises(ConfigError):
        CurrentProfile(np.array([0.0, 0.0]), np.array([1.0, 2.0]))


def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "load.csv"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_load_from_csv_reads_profile(tmp_path: Path) -> None:
    path = _write(tmp_path, "t_s,current_a,note\n0,10,start\n60,12.5,\n\n120,15,end\n")
    prof = load_from_csv(path)
    np.testing.assert_array_equal(prof.t_s, [0.0, 60.0, 120.0])
    np.testing.assert_array_equal(prof.amps, [10.0, 12.5, 15.0])


def test_load_from_csv_custom_columns(tmp_path: Path) -> None:
    path = _write(tmp_path, "seconds;amps\n".replace(";", ",") + "0,1\n1,2\n")
    prof = load_from_csv(path, time_column="seconds", current_column="amps")
    assert prof.end_s == 1.0


@pytest.mark.parametrize(("text", "line", "column", "words"), [
    ("t_s,amps\n0,1\n", 1, "current_a", "missing column"),
    ("t_s,current_a\n0,1\n60,abc\n", 3, "current_a", "'abc' is not a number"),
    ("t_s,current_a\n0,1\n60,2\n30,3\n", 4, "t_s", "time goes backwards"),
    ("t_s,current_a\n0,1\n60,2\n60,3 mA\n", 4, "current_a", "mixed units"),
    ("t_s,current_a\n0,1\n,2\n", 3, "t_s", "blank"),
    ("t_s,current_a\n-5,1\n0,2\n", 2, "t_s", "negative"),
    ("t_s,current_a\n0,1\n10,inf\n", 3, "current_a", "not a finite number"),
    ("", 1, None, "empty"),
])
def test_load_from_csv_errors_name_line_and_column(
        tmp_path: Path, text: str, line: int, column: str | None, words: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(InputFileError) as info:
        load_from_csv(path)
    err = info.value
    assert err.line == line
    assert err.column == column
    assert words in err.message
    assert f"line {line}" in str(err)


def test_load_from_csv_needs_two_rows_and_an_existing_file(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="at least two data rows"):
        load_from_csv(_write(tmp_path, "t_s,current_a\n0,1\n"))
    with pytest.raises(InputFileError, match="cannot open"):
        load_from_csv(str(tmp_path / "missing.csv"))
