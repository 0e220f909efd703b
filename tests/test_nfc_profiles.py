"""Threshold profiles (field.profiles): presets, the TOML format, errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from smartlogger.errors import InputFileError
from smartlogger.field.profiles import ProfileError, load_profile, parse_profile, presets
from smartlogger.model import BlockType, Chemistry, Thresholds

MINIMAL = '[block]\nchemistry = "vrla"\ncells = 6\n'


@pytest.mark.parametrize("key", sorted(presets()))
def test_every_preset_is_valid_and_matches_its_block(key: str) -> None:
    profile = load_profile(key)
    cfg = profile.config
    assert profile.source == f"preset:{key}"
    cfg.validate()
    volts = int("".join(ch for ch in key.split("-")[1] if ch.isdigit()))
    assert abs(cfg.block_type.nominal_mv / 1000 - volts) <= 1  # LiFePO4 12.8 V is "12v"


def test_default_is_vrla_12v_empty_at_9v9() -> None:
    profile = load_profile()
    assert profile.config.block_type == BlockType.lead_acid(12)
    assert profile.config.thresholds.v_low_alarm_mv == 9900
    assert (profile.config.float_rate_s, profile.config.discharge_rate_s) == (60, 1)


def test_missing_levels_default_for_the_block_and_units_convert() -> None:
    p = parse_profile(MINIMAL + "[voltage]\nlow_alarm = 11.5\nlow_warning = 11.8\n"
                      "[temperature]\nhigh_alarm = 50.5\n", "field.toml", rated_ah=250)
    th = p.config.thresholds
    default = Thresholds.default_for(BlockType.lead_acid(12))
    assert (th.v_low_alarm_mv, th.v_low_warn_mv, th.t_high_alarm_dc) == (11500, 11800, 505)
    assert th.v_high_alarm_mv == default.v_high_alarm_mv
    assert p.config.rated_ah == 250.0 and p.name == "field"


def test_nominal_voltage_instead_of_cells() -> None:
    p = parse_profile('[block]\nchemistry = "nicd"\nnominal_v = 12\n')
    assert p.config.block_type == BlockType(Chemistry.NICD, 10)
    with pytest.raises(ProfileError) as info:
        parse_profile('[block]\nchemistry = "vrla"\nnominal_v = 13\n', "x.toml")
    assert info.value.field == "block.nominal_v"


@pytest.mark.parametrize(("extra", "field", "words"), [
    ("[voltage]\nlow_warning = 9.5\n", "voltage.low_warning", "measuring range"),
    ("[voltage]\nlow_warning = 9.8\n", "voltage.low_warning", "above the low alarm"),
    ("[voltage]\nhigh_warning = 12.0\n", "voltage.high_warning", "above the nominal"),
    ("[temperature]\nlow_warning = 25.0\n", "temperature.low_warning", "below the reference"),
    ("[temperature]\nhigh_alarm = 90.0\n", "temperature.high_alarm", "sensor range"),
    ("[log]\nfloat_rate_s = 0\n", "log.float_rate_s", "outside 1 s"),
    ("[log]\nfloat_rate_s = 10\ndischarge_rate_s = 20\n", "log.discharge_rate_s", "not be slower"),
    ("[log]\nfloat_rate_s = 1.5\n", "log.float_rate_s", "not an integer"),
    ("[voltage]\nlow_alarm = true\n", "voltage.low_alarm", "not a number"),
    ("[voltage]\nlo_alarm = 10.0\n", "voltage.lo_alarm", "unknown key"),
    ("colour = 1\n", "colour", "unknown key"),
])
def test_errors_name_the_profile_key(extra: str, field: str, words: str) -> None:
    text = extra + MINIMAL if not extra.startswith("[") else MINIMAL + extra
    with pytest.raises(ProfileError) as info:
        parse_profile(text, "kit.toml")
    assert info.value.field == field
    assert words in str(info.value) and str(info.value).startswith(f"kit.toml: {field}: ")


def test_block_errors() -> None:
    with pytest.raises(ProfileError) as info:
        parse_profile('[block]\nchemistry = "lead-zinc"\ncells = 6\n', "x.toml")
    assert info.value.field == "block.chemistry"
    with pytest.raises(ProfileError) as info:
        parse_profile('[block]\nchemistry = "vrla"\ncells = 30\n', "x.toml")
    assert info.value.field == "block.cells"
    with pytest.raises(ProfileError) as info:
        parse_profile('[block]\ncells = 6\n', "x.toml")
    assert info.value.field == "block.chemistry"


def test_toml_syntax_error_has_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text(MINIMAL + "[voltage\nlow_alarm = 10\n")
    with pytest.raises(InputFileError) as info:
        load_profile(path)
    assert info.value.line == 4 and info.value.path == str(path)
    with pytest.raises(InputFileError, match="presets: "):
        load_profile(tmp_path / "nope.toml")
