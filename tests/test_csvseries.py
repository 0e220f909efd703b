"""The one time-series CSV reader: layouts from real instruments, time formats and zones,
disorder and repeated stamps, and bad input that names the file, line, column and fix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smartlogger.csvseries import Column, CsvFormat, parse_timezone, read_series
from smartlogger.errors import ConfigError, InputFileError

V = Column("v", "voltage", aliases=("voltage", "u", "v"))
I = Column("i", "current", aliases=("current", "i", "strom"), required=False)  # noqa: E741
T0 = 1_772_438_400.0  # 2026-03-02T08:00:00Z


@pytest.mark.parametrize(("text", "fmt", "t", "v", "i"), [
    # plain, relative seconds
    ("time,voltage\n0,13.6\n1,12.5\n", CsvFormat(), [0, 1], [13.6, 12.5], None),
    # semicolons, decimal commas, units in the header, a load bank's preamble
    ("Load bank XL-300\nSerial 1234\nZeit;U [mV];Strom (A)\n0;13600;0,0\n1;12500;20,5\n",
     CsvFormat(time_column="zeit"), [0, 1], [13.6, 12.5], [0.0, 20.5]),
    # tabs, units after each number, h:mm:ss elapsed
    ("elapsed\tvoltage\tcurrent\n0:00:00\t13.6 V\t0 A\n1:00:00\t12.5 V\t500 mA\n",
     CsvFormat(), [0, 3600], [13.6, 12.5], [0.0, 0.5]),
    # ISO with zone, ISO without zone in a named zone, epoch seconds and milliseconds
    ("time,voltage\n2026-03-02T09:00:00+01:00,13.6\n2026-03-02T08:00:01Z,12.5\n", CsvFormat(),
     [T0, T0 + 1], [13.6, 12.5], None),
    ("time,voltage\n2026-03-02 09:00:00,13.6\n2026-03-02 09:00:01,12.5\n",
     CsvFormat(timezone="Europe/Berlin"), [T0, T0 + 1], [13.6, 12.5], None),
    ("time,voltage\n1772438400,13.6\n1772438401,12.5\n", CsvFormat(), [T0, T0 + 1], [13.6, 12.5], None),
    ("time,voltage\n1772438400000,13.6\n1772438401500,12.5\n", CsvFormat(), [T0, T0 + 1.5], [13.6, 12.5], None),
    # German dates (detected), a strptime pattern with an offset, day/month told apart by a day > 12
    ("time;voltage\n02.03.2026 08:00:00;13,6\n02.03.2026 08:00:01;12,5\n", CsvFormat(),
     [T0, T0 + 1], [13.6, 12.5], None),
    ("when,voltage\n2026/03/02-10:00:00 +0200,13.6\n2026/03/02-10:00:01 +0200,12.5\n",
     CsvFormat(time_column="when", time_format="%Y/%m/%d-%H:%M:%S %z"), [T0, T0 + 1], [13.6, 12.5], None),
    ("time,voltage\n02/03/2026 08:00:00,13.6\n13/03/2026 08:00:00,12.5\n", CsvFormat(),
     [T0, T0 + 11 * 86400], [13.6, 12.5], None),
    # Excel serial days in UTC
    ("time,voltage\n46083.333333333336,13.6\n46083.34027777778,12.5\n", CsvFormat(time_format="excel"),
     [T0, T0 + 600], [13.6, 12.5], None),
    # UTF-8 BOM, Fahrenheit is not volts: only the asked columns are read
    ("\ufefftime,voltage,temp [F]\n0,13.6,77\n1,12.5,78\n", CsvFormat(), [0, 1], [13.6, 12.5], None),
])
def test_layouts_and_time_formats(text: str, fmt: CsvFormat, t: list[float], v: list[float],
                                  i: list[float] | None) -> None:
    s = read_series(text.encode("utf-8"), [V, I], fmt, name="x.csv")
    np.testing.assert_allclose(s.t_s, t, atol=1e-3)
    np.testing.assert_allclose(s.values["v"], v)
    if i is None:
        assert "i" not in s.values
    else:
        np.testing.assert_allclose(s.values["i"], i)


def test_path_bytes_and_text_give_the_same_series(tmp_path: Path) -> None:
    text = "time;voltage\n0;13,6\n1;12,5\n"
    p = tmp_path / "trace.csv"
    p.write_text(text, encoding="cp1252")
    a, b, c = (read_series(src, [V]) for src in (p, text.encode(), text))
    for s in (b, c):
        np.testing.assert_array_equal(a.t_s, s.t_s)
        np.testing.assert_array_equal(a.values["v"], s.values["v"])
    assert a.name == str(p) and b.name == "<data>" and c.name == "<text>"
    assert (a.delimiter, a.decimal) == (";", ",")


def test_utf16_and_windows_1252() -> None:
    s = read_series("time\tvoltage\n0\t13.6\n1\t12.5\n".encode("utf-16"), [V])
    assert s.values["v"].tolist() == [13.6, 12.5]
    s = read_series("time,voltage,note\n0,13.6,Batterie Raum 2 \xb0C\n1,12.5,\n".encode("cp1252"), [V])
    assert any("Windows-1252" in n for n in s.notes)


def test_rows_slightly_out_of_order_are_sorted_and_reported() -> None:
    # Two instruments merged by time stamp: voltage and temperature rows up to 0.1 s out of order.
    text = ("time,voltage,temperature\n"
            "2026-03-02T08:00:00.000Z,13.60,\n2026-03-02T08:00:00.950Z,,25.0\n"
            "2026-03-02T08:00:00.900Z,13.59,\n2026-03-02T08:00:02.000Z,12.50,\n")
    c = Column("c", "temperature", aliases=("temperature",))
    s = read_series(text, [V, c])
    assert s.reordered == 1 and s.max_disorder_s == pytest.approx(0.05)
    assert np.all(np.diff(s.t_s) > 0)
    assert s.lines.tolist() == [2, 4, 3, 5]
    assert any("1 row(s) out of time order by up to 0.05 s: sorted" in n for n in s.notes)
    with pytest.raises(InputFileError) as info:
        read_series(text, [V, c], CsvFormat(disorder="refuse"))
    assert info.value.line == 4 and "0.05 s before line 3" in info.value.message


def test_repeated_time_stamps_are_merged_and_counted() -> None:
    text = "time,voltage,current\n0,13.6,\n0,,0\n1,12.5,20\n1,12.7,20\n2,12.4,20\n"
    s = read_series(text, [V, I])
    assert s.t_s.tolist() == [0, 1, 2]
    assert s.values["v"].tolist() == pytest.approx([13.6, 12.6, 12.4])
    assert s.values["i"].tolist() == [0, 20, 20]
    assert (s.duplicates, s.conflicts) == (2, 1)
    # a load profile: a repeated stamp with a new value is a step
    step = read_series("t_s,current_a\n0,20\n3600,20\n3600,10\n7200,10\n",
                       [Column("i", "current", name="current_a")], CsvFormat(duplicates="step"))
    assert step.t_s.tolist() == pytest.approx([0, 3600, 3600.001, 7200])
    assert step.values["i"].tolist() == [20, 20, 10, 10]
    with pytest.raises(InputFileError, match="line 3 repeats the time stamp of line 2") as info:
        read_series(text, [V, I], CsvFormat(duplicates="refuse"))
    assert info.value.line == 3
    # each cell with its own unit is converted; a unit on some cells only is refused
    s = read_series("time,voltage\n0,13.6 V\n1,13500 mV\n", [V])
    assert s.values["v"].tolist() == [13.6, 13.5]


@pytest.mark.parametrize(("text", "fmt", "line", "column", "words"), [
    ("time,voltage\n0,13.6\n3600,13.5\n10,13.4\n", CsvFormat(), 4, "time", "time goes backwards: line 4 is 59.8 min"),
    ("time,voltage\n2026-10-25T02:30:00,13.6\n2026-10-25T02:59:00,13.5\n2026-10-25T02:01:00,13.4\n",
     CsvFormat(), 4, "time", "time goes backwards"),
    ("time,voltage\n0,13.6\n1,13.6\n5000,13.6\n", CsvFormat(max_gap_s=600), 4, "time", "a gap of 83.3 min"),
    ("time,voltage\n0,13.6\n1,13.6 mV\n", CsvFormat(), 3, "voltage", "mixed units"),
    ("time,voltage [V]\n0,13.6 mV\n", CsvFormat(), 2, "voltage [V]", "mixed units"),
    ("time,voltage\n0,13,6\n1,13,5\n", CsvFormat(), 2, None, "decimal commas in a comma-separated file"),
    ("time;voltage\n0;13,6\n1;13.5\n", CsvFormat(), 3, "voltage", "mixed decimal separators"),
    ("time;voltage\n0;13,6\n", CsvFormat(decimal="."), 2, "voltage", "decimal comma?"),
    ("time,voltage\n0,1_3\n", CsvFormat(), 2, "voltage", "not a number"),
    ("time,voltage\n0,inf\n", CsvFormat(), 2, "voltage", "not a finite number"),
    ("time,voltage\nnoon,13.6\n", CsvFormat(), 2, "time", "no known format"),
    ("time,voltage\n03/02/2026 08:00,13.6\n04/02/2026 08:00,13.6\n", CsvFormat(), 2, "time", "ambiguous"),
    ("time,voltage\n2026-03-02T08:00:00,13.6\n", CsvFormat(naive="refuse", timezone_option="--load-timezone"), 2,
     "time", "give --load-timezone"),
    ("time,voltage\n2026-03-02T08:00:00,13.6\n2026-03-02T08:00:01Z,13.6\n", CsvFormat(), None, "time",
     "some time stamps carry a zone"),
    ("when,voltage\n0,13.6\n", CsvFormat(time_column="time"), 1, "time", "no 'time' in the header"),
    ("time,volts\n0,13.6\n", CsvFormat(), 1, None, "no voltage column"),
    ("time,voltage\n,13.6\n", CsvFormat(), 2, "time", "blank"),
    ("time,voltage\n", CsvFormat(), 1, None, "no data rows"),
    ("", CsvFormat(), 1, None, "empty"),
    ("\x00\x01\x02binary", CsvFormat(), 1, None, "not a text"),
])
def test_bad_input_names_file_line_column_and_fix(text: str, fmt: CsvFormat, line: int | None,
                                                  column: str | None, words: str) -> None:
    with pytest.raises(InputFileError) as info:
        read_series(text.encode("utf-8"), [V], fmt, name="bench.csv")
    err = info.value
    assert (err.line, err.column) == (line, column), str(err)
    assert words in err.message, err.message
    assert str(err).startswith("bench.csv") and "\n" not in str(err)


def test_bad_options_are_config_errors() -> None:
    for kw in ({"time_format": "fortnights"}, {"decimal": ";"}, {"timezone": "Mars/Olympus"},
               {"max_disorder_s": -1.0}, {"max_gap_s": 0.0}):
        with pytest.raises(ConfigError):
            CsvFormat(**kw)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        Column("v", "voltage", unit="furlong")
    assert parse_timezone("+05:30").utcoffset(None).total_seconds() == 19800  # type: ignore[union-attr]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10**6), st.integers(9000, 14000)), min_size=1, max_size=40),
       st.sampled_from([(",", "."), (";", ","), ("\t", ".")]))
def test_any_table_round_trips(rows: list[tuple[int, int]], sep: tuple[str, str]) -> None:
    delim, dec = sep
    body = "".join(f"{t / 10}{delim}{str(mv / 1000).replace('.', dec)}\n" for t, mv in rows)
    text = f"time{delim}voltage\n{body}"
    try:
        s = read_series(text, [V], CsvFormat(max_disorder_s=1e9))
    except InputFileError as err:  # only a refused layout may fail, and then it says where
        assert err.line is not None or err.column is not None
        return
    ts = sorted({t / 10 for t, _ in rows})
    np.testing.assert_allclose(s.t_s, ts)
    assert s.rows == len(rows) and s.duplicates == len(rows) - len(ts)
