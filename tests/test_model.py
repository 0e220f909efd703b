"""Every validation rule of ``smartlogger.model``: each row names the field the error must name."""

from __future__ import annotations

import contextlib
from array import array

import pytest

from smartlogger.errors import ConfigError
from smartlogger.model import (
    MEASURING_RANGE_MV,
    BlockType,
    Chemistry,
    Generation,
    Level,
    LoggerConfig,
    LoggerIdentity,
    Quantity,
    SampleBlock,
    Side,
    Thresholds,
    gen1_config,
)

B12 = BlockType.lead_acid(12)
TH12 = Thresholds(9900, 10800, 14100, 14700, 0, 50, 350, 450)


# --------------------------------------------------------------------------- identity

@pytest.mark.parametrize("serial", ["SL2-000123", "ABC", "A" * 32, "9-9"])
def test_serial_accepted(serial: str) -> None:
    assert LoggerIdentity(serial, Generation.GEN2, "2.0").serial == serial


@pytest.mark.parametrize("serial", ["AB", "A" * 33, "abc", "-ABC", "AB C", "AB_C", ""])
def test_serial_rejected(serial: str) -> None:
    with pytest.raises(ConfigError) as ei:
        LoggerIdentity(serial, Generation.GEN2, "2.0")
    assert ei.value.field == "identity.serial"


def test_generation_coerced_and_checked() -> None:
    assert LoggerIdentity("ABC", 1, "1.0").generation is Generation.GEN1  # type: ignore[arg-type]
    for bad in (3, 0, "x", None):
        with pytest.raises(ConfigError) as ei:
            LoggerIdentity("ABC", bad, "1.0")  # type: ignore[arg-type]
        assert ei.value.field == "identity.generation"


@pytest.mark.parametrize("firmware", ["", "x" * 33])
def test_firmware_length(firmware: str) -> None:
    with pytest.raises(ConfigError) as ei:
        LoggerIdentity("ABC", Generation.GEN2, firmware)
    assert ei.value.field == "identity.firmware"


def test_markers() -> None:
    assert LoggerIdentity("ABC", Generation.GEN2, "2").markers == ()
    both = LoggerIdentity("ABC", Generation.GEN2, "2", simulated=True, replayed=True)
    assert both.markers == ("SIMULATED", "REPLAYED")


# --------------------------------------------------------------------------- block types

@pytest.mark.parametrize(("text", "chem"), [("AGM", Chemistry.VRLA), ("gel", Chemistry.VRLA),
                                            ("lead-acid", Chemistry.VRLA), ("VLA", Chemistry.FLOODED),
                                            ("LFP", Chemistry.LIFEPO4), ("Ni Cd", Chemistry.NICD)])
def test_chemistry_aliases(text: str, chem: Chemistry) -> None:
    assert Chemistry.parse(text) is chem


def test_unknown_chemistry_names_field() -> None:
    with pytest.raises(ConfigError) as ei:
        BlockType("zinc-air", 6)  # type: ignore[arg-type]
    assert ei.value.field == "block_type.chemistry"
    assert "zinc-air" in str(ei.value)


@pytest.mark.parametrize("cells", [0, 25, -1])
def test_cells_bounds(cells: int) -> None:
    with pytest.raises(ConfigError) as ei:
        BlockType(Chemistry.VRLA, cells)
    assert ei.value.field == "block_type.cells"


@pytest.mark.parametrize(("chem", "cells"), [(Chemistry.NICD, 1), (Chemistry.LIFEPO4, 3), (Chemistry.VRLA, 11)])
def test_block_without_measuring_class(chem: Chemistry, cells: int) -> None:
    with pytest.raises(ConfigError) as ei:
        BlockType(chem, cells)
    assert ei.value.field == "block_type"


@pytest.mark.parametrize(("nominal_v", "cls"), [(2, 2000), (4, 4000), (6, 6000), (12, 12000), (16, 16000)])
def test_lead_acid_classes(nominal_v: int, cls: int) -> None:
    bt = BlockType.lead_acid(nominal_v)
    assert bt.measuring_class_mv == cls
    assert bt.measuring_range_mv == MEASURING_RANGE_MV[cls]
    assert BlockType.lead_acid(nominal_v, vented=True).chemistry is Chemistry.FLOODED


def test_lead_acid_rejects_other_voltages() -> None:
    with pytest.raises(ConfigError) as ei:
        BlockType.lead_acid(8)
    assert ei.value.field == "block_type.nominal_v"


def test_measuring_class_is_nearest_fitting() -> None:
    assert BlockType(Chemistry.LIFEPO4, 1).measuring_class_mv == 4000  # 3.2 V: 2 V and 4 V fit, 4 V nearer
    assert BlockType(Chemistry.NICD, 10).measuring_class_mv == 12000


# --------------------------------------------------------------------------- thresholds

def test_valid_thresholds_pass() -> None:
    TH12.validate(B12)


@pytest.mark.parametrize(("field", "value"), [
    ("v_low_alarm_mv", 9600), ("v_low_warn_mv", 9600), ("v_high_warn_mv", 17001), ("v_high_alarm_mv", 17001),
])
def test_voltage_outside_measuring_range(field: str, value: int) -> None:
    th = Thresholds(**{**TH12.__dict__, field: value})
    with pytest.raises(ConfigError) as ei:
        th.validate(B12)
    assert ei.value.field == f"thresholds.{field}"
    assert "measuring range" in ei.value.message


@pytest.mark.parametrize("field", ["v_low_warn_mv", "t_high_alarm_dc"])
def test_threshold_must_be_integer(field: str) -> None:
    th = Thresholds(**{**TH12.__dict__, field: 10800.5})
    with pytest.raises(ConfigError) as ei:
        th.validate(B12)
    assert ei.value.field == f"thresholds.{field}"


@pytest.mark.parametrize(("changes", "field"), [
    ({"v_low_alarm_mv": 10800}, "thresholds.v_low_warn_mv"),  # alarm not below warning
    ({"v_low_warn_mv": 12000, "v_low_alarm_mv": 11000}, "thresholds.v_low_warn_mv"),  # warning not below nominal
    ({"v_high_warn_mv": 12000}, "thresholds.v_high_warn_mv"),  # warning not above nominal
    ({"v_high_alarm_mv": 14100}, "thresholds.v_high_alarm_mv"),  # alarm not above warning
    ({"t_low_alarm_dc": 50}, "thresholds.t_low_warn_dc"),
    ({"t_low_warn_dc": 200, "t_low_alarm_dc": 100}, "thresholds.t_low_warn_dc"),  # not below 20 C
    ({"t_high_warn_dc": 200}, "thresholds.t_high_warn_dc"),
    ({"t_high_alarm_dc": 350}, "thresholds.t_high_alarm_dc"),
])
def test_threshold_order(changes: dict[str, int], field: str) -> None:
    th = Thresholds(**{**TH12.__dict__, **changes})
    with pytest.raises(ConfigError) as ei:
        th.validate(B12)
    assert ei.value.field == field


@pytest.mark.parametrize(("field", "value"), [("t_low_alarm_dc", -351), ("t_high_alarm_dc", 851)])
def test_temperature_outside_sensor_range(field: str, value: int) -> None:
    th = Thresholds(**{**TH12.__dict__, field: value})
    with pytest.raises(ConfigError) as ei:
        th.validate(B12)
    assert ei.value.field == f"thresholds.{field}"
    assert "sensor range" in ei.value.message


def test_level_lookup() -> None:
    assert TH12.level(Quantity.VOLTAGE, Side.LOW, Level.ALARM) == 9900
    assert TH12.level(Quantity.VOLTAGE, Side.HIGH, Level.WARNING) == 14100
    assert TH12.level(Quantity.TEMPERATURE, Side.HIGH, Level.ALARM) == 450
    assert TH12.level(Quantity.TEMPERATURE, Side.LOW, Level.WARNING) == 50


def _all_block_types() -> list[BlockType]:
    out = []
    for chem in Chemistry:
        for cells in range(1, 25):
            with contextlib.suppress(ConfigError):
                out.append(BlockType(chem, cells))
    return out


@pytest.mark.parametrize("bt", _all_block_types(), ids=lambda b: b.describe())
def test_default_thresholds_valid_where_possible(bt: BlockType) -> None:
    lo, hi = bt.measuring_range_mv
    assert lo < bt.nominal_mv < hi
    LoggerConfig.default_for(bt, 100.0)  # validates


def test_block_without_charging_headroom_fits_no_class() -> None:
    # 4-cell lead-acid (8 V) would sit on the top edge of the 6 V class (4.8-8.0 V)
    with pytest.raises(ConfigError) as ei:
        BlockType(Chemistry.VRLA, 4)
    assert ei.value.field == "block_type" and "fits no measuring range" in str(ei.value)


def test_default_12v_lead_acid_is_gen1_empty_level() -> None:
    assert Thresholds.default_for(B12).v_low_alarm_mv == 9900


# --------------------------------------------------------------------------- configuration

@pytest.mark.parametrize(("field", "value"), [
    ("float_rate_s", 0), ("float_rate_s", 86401), ("float_rate_s", 1.5), ("float_rate_s", True),
    ("discharge_rate_s", 0), ("discharge_rate_s", 86401),
])
def test_log_rate_bounds(field: str, value: object) -> None:
    with pytest.raises(ConfigError) as ei:
        LoggerConfig(B12, TH12, 100.0, **{field: value})  # type: ignore[arg-type]
    assert ei.value.field == field


def test_log_rate_edges_accepted() -> None:
    LoggerConfig(B12, TH12, 100.0, float_rate_s=86400, discharge_rate_s=1)
    LoggerConfig(B12, TH12, 100.0, float_rate_s=1, discharge_rate_s=1)


def test_discharge_rate_not_slower_than_float() -> None:
    with pytest.raises(ConfigError) as ei:
        LoggerConfig(B12, TH12, 100.0, float_rate_s=10, discharge_rate_s=20)
    assert ei.value.field == "discharge_rate_s"


@pytest.mark.parametrize("ah", [0.05, 20001, float("nan"), float("inf"), "100", True])
def test_rated_ah_bounds(ah: object) -> None:
    with pytest.raises(ConfigError) as ei:
        LoggerConfig(B12, TH12, ah)  # type: ignore[arg-type]
    assert ei.value.field == "rated_ah"


@pytest.mark.parametrize(("field", "value"), [
    ("block_label", "x" * 17), ("block_label", "ä" * 9),  # 18 bytes in UTF-8
    ("block_position", -1), ("block_position", 65536),
    ("test_id", "t" * 33),
])
def test_label_position_test_id(field: str, value: object) -> None:
    with pytest.raises(ConfigError) as ei:
        LoggerConfig(B12, TH12, 100.0, **{field: value})  # type: ignore[arg-type]
    assert ei.value.field == field


def test_config_validates_thresholds_against_block() -> None:
    nicd6 = BlockType(Chemistry.NICD, 5)  # 6 V class: 4.8-8.0 V
    with pytest.raises(ConfigError) as ei:
        LoggerConfig(nicd6, TH12, 100.0)
    assert ei.value.field.startswith("thresholds.v_")


def test_with_changes_revalidates() -> None:
    cfg = LoggerConfig(B12, TH12, 100.0)
    assert cfg.with_changes(block_label="B7").block_label == "B7"
    with pytest.raises(ConfigError):
        cfg.with_changes(float_rate_s=0)


def test_gen1_profile() -> None:
    cfg = gen1_config()
    assert cfg.thresholds.v_low_alarm_mv == 9900
    assert cfg.float_rate_s == cfg.discharge_rate_s == 10
    assert cfg.block_type == B12


# --------------------------------------------------------------------------- samples

def test_sample_block_rules() -> None:
    with pytest.raises(ValueError, match="equal length"):
        SampleBlock(0, 1000, array("i", [1, 2]), array("i", [1]))
    with pytest.raises(ValueError, match="interval_ms"):
        SampleBlock.of(0, 0, [1], [1])
    blk = SampleBlock.of(1000, 500, [13600, 13590, 13580], [250, 251, 252])
    assert len(blk) == 3 and blk.end_ms == 2000
    assert [s.t_ms for s in blk.samples()] == [1000, 1500, 2000]
    assert blk.samples()[2].mv == 13580 and blk.samples()[2].dc == 252
