"""Test metadata, loads, datasheet import and interpolation (smartlogger.analysis.inputs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from smartlogger.analysis.inputs import (
    BlockLog,
    ClockJump,
    ConstantCurrent,
    ConstantPower,
    MetadataError,
    TestMetadata,
    block_log_from_records,
    load_from_quantity,
    read_current_csv,
    read_datasheet_csv,
)
from smartlogger.errors import InputFileError
from smartlogger.model import (
    BlockType,
    Chemistry,
    ClockSet,
    ConfigChange,
    Event,
    EventKind,
    Generation,
    LoggerConfig,
    LoggerIdentity,
    Record,
    SampleBlock,
)
from smartlogger.quantities import parse_load

DATA = Path(__file__).parent / "data"
DATASHEET = DATA / "datasheet_synthetic_12v100.csv"


@pytest.mark.parametrize(("text", "expected"), [
    ("20A", ConstantCurrent(20.0)),
    ("20 a", ConstantCurrent(20.0)),
    ("500mA", ConstantCurrent(0.5)),
    ("4800W", ConstantPower(4800.0)),
    ("4.8kW", ConstantPower(4800.0)),
])
def test_loads_come_from_the_one_quantity_parser(text: str, expected: object) -> None:
    assert load_from_quantity(parse_load(text)) == expected


def test_load_from_quantity_refuses_other_things() -> None:
    with pytest.raises(TypeError):
        load_from_quantity(3.0)  # type: ignore[arg-type]


def test_datasheet_import_and_interpolation() -> None:
    ds = read_datasheet_csv(DATASHEET)
    assert ds.unit == "A" and ds.temperature_c == 25.0
    assert ds.times_s[0] == 300 and ds.times_s[-1] == 72000
    # Printed points come back exactly.
    assert ds.rated_time_s(10.0, 1.75) == pytest.approx(36000.0)
    assert ds.rated_rate(3600.0, 1.75) == pytest.approx(100.0)
    # Between printed points the table is I*t = 360000 A s at 1.75 V/cell, a straight
    # line in log-log: interpolation must stay on it.
    assert ds.rated_time_s(25.0, 1.75) == pytest.approx(14400.0, rel=1e-4)  # table rounded to 0.01 A
    # Between end-voltage rows: linear in end voltage (1.725 V/cell is halfway).
    assert ds.rated_rate(3600.0, 1.725) == pytest.approx((105.0 + 100.0) / 2)


def test_datasheet_outside_range_is_an_error_naming_the_rate() -> None:
    ds = read_datasheet_csv(DATASHEET)
    with pytest.raises(MetadataError, match="outside the datasheet's range"):
        ds.rated_time_s(2000.0, 1.75)
    with pytest.raises(MetadataError, match="end_v_per_cell"):
        ds.rated_time_s(10.0, 1.60)


def test_datasheet_errors_name_line_and_column(tmp_path: Path) -> None:
    bad = tmp_path / "ds.csv"
    bad.write_text("# unit: A\nend_v_per_cell,1h,3h\n1.75,100,oops\n")
    with pytest.raises(InputFileError) as info:
        read_datasheet_csv(bad)
    assert info.value.line == 3 and info.value.column == "3h"
    bad.write_text("end_v_per_cell,1h,3h\n1.75,30,40\n")
    with pytest.raises(InputFileError, match="decrease with discharge time") as info:
        read_datasheet_csv(bad)
    assert info.value.line == 2
    bad.write_text("end_v_per_cell,1h,fortnight\n1.75,30,20\n")
    with pytest.raises(InputFileError, match="fortnight"):
        read_datasheet_csv(bad)
    bad.write_text("# unit: furlongs\nend_v_per_cell,1h,3h\n1.75,30,20\n")
    with pytest.raises(InputFileError, match="unit") as info:
        read_datasheet_csv(bad)
    assert info.value.line == 1


def test_current_csv(tmp_path: Path) -> None:
    f = tmp_path / "clamp.csv"
    f.write_text("# clamp meter\nt_s,current_a\n0,-20.5\n60,-20.1\n120,-19.8\n")
    prof = read_current_csv(f)
    assert prof.amps.tolist() == [20.5, 20.1, 19.8]  # charging-positive convention flipped
    assert prof.t_s.tolist() == [0, 60, 120]
    f.write_text("t_s,current_a\n0,20\n60,20\n30,20\n")
    with pytest.raises(InputFileError) as info:
        read_current_csv(f)
    assert info.value.line == 4 and info.value.column == "t_s"
    f.write_text("time,volts\n0,12\n")
    with pytest.raises(InputFileError, match="no current column"):
        read_current_csv(f)


def test_metadata_validation() -> None:
    with pytest.raises(MetadataError, match="not both"):
        TestMetadata(ConstantCurrent(10), rated_time_s=3600, datasheet=read_datasheet_csv(DATASHEET))
    with pytest.raises(MetadataError) as info:
        TestMetadata(ConstantCurrent(-1))
    assert info.value.field == "load"
    with pytest.raises(MetadataError, match="per-block voltage"):
        TestMetadata(ConstantCurrent(10), end_v_per_cell=10.5)
    meta = TestMetadata(ConstantCurrent(10), end_v_per_cell=1.2)
    with pytest.raises(MetadataError, match="for vrla blocks"):
        meta.end_voltage_for(Chemistry.VRLA)
    assert TestMetadata(ConstantCurrent(10)).end_voltage_for(Chemistry.VRLA) == 1.75


def _ident() -> LoggerIdentity:
    return LoggerIdentity("TEST-0001", Generation.GEN2, "2.0.0")


def test_block_log_from_records_places_jumps_and_pull() -> None:
    cfg = LoggerConfig.default_for(BlockType.lead_acid(12), 100.0).with_changes(block_position=3)
    recs: list[Record] = [
        Event(1000, EventKind.POWER_ON),
        ConfigChange(1000, cfg, 1),
        SampleBlock.of(2000, 1000, [13000, 13001], [250, 251]),
        ClockSet(3500, 9_000_000),
        SampleBlock.of(9_000_500, 1000, [12000, 11999, 11998], [252, 253, 254]),
    ]
    log = block_log_from_records(_ident(), enumerate(recs), pull=(9_010_000, 9_010_020))
    assert log.t_ms.tolist() == [2000, 3000, 9_000_500, 9_001_500, 9_002_500]
    assert log.mv.dtype == np.int32 and log.dc.dtype == np.int16
    assert log.clock_jumps == (ClockJump(2, 3500, 9_000_000),)
    assert log.clock_observations[0].segment == 1
    assert log.position == 3 and len(log.events) == 1


def test_block_log_rejects_inconsistent_arrays() -> None:
    cfg = LoggerConfig.default_for(BlockType.lead_acid(12), 100.0)
    with pytest.raises(MetadataError, match="equal length"):
        BlockLog(_ident(), cfg, np.arange(3), np.arange(2, dtype=np.int32), np.arange(3, dtype=np.int16))
    with pytest.raises(MetadataError, match="jump index"):
        BlockLog(_ident(), cfg, np.arange(3), np.arange(3, dtype=np.int32), np.arange(3, dtype=np.int16),
                 clock_jumps=(ClockJump(9, 0, 1),))
