"""Threshold profiles: the TOML files a technician picks before programming a kit.

Owns the profile file format (human units: volts per block, degrees Celsius,
seconds), the bundled presets per chemistry and block voltage
(``smartlogger/field/profiles/*.toml``; ``vrla-12v`` is the default, empty at
9.9 V as on generation-1 loggers), and the mapping of every validation failure
onto the profile key that causes it. Validation itself is
``model.LoggerConfig``/``Thresholds``; this module only translates.

Does not own programming (``field.nfc``) or the config wire format.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smartlogger.errors import ConfigError, InputFileError
from smartlogger.model import BlockType, Chemistry, LoggerConfig, Thresholds

PRESET_DIR = Path(__file__).with_name("profiles")
DEFAULT_PRESET = "vrla-12v"

#: model field -> profile key, so errors name what the user wrote.
_FIELD_TO_KEY = {
    "thresholds.v_low_alarm_mv": "voltage.low_alarm",
    "thresholds.v_low_warn_mv": "voltage.low_warning",
    "thresholds.v_high_warn_mv": "voltage.high_warning",
    "thresholds.v_high_alarm_mv": "voltage.high_alarm",
    "thresholds.t_low_alarm_dc": "temperature.low_alarm",
    "thresholds.t_low_warn_dc": "temperature.low_warning",
    "thresholds.t_high_warn_dc": "temperature.high_warning",
    "thresholds.t_high_alarm_dc": "temperature.high_alarm",
    "float_rate_s": "log.float_rate_s",
    "discharge_rate_s": "log.discharge_rate_s",
    "rated_ah": "block.rated_ah",
    "block_type": "block",
    "block_type.cells": "block.cells",
    "block_type.chemistry": "block.chemistry",
    "block_type.nominal_v": "block.nominal_v",
}

_SECTIONS: dict[str, set[str]] = {
    "": {"name", "description", "block", "voltage", "temperature", "log"},
    "block": {"chemistry", "cells", "nominal_v", "rated_ah"},
    "voltage": {"low_alarm", "low_warning", "high_warning", "high_alarm"},
    "temperature": {"low_alarm", "low_warning", "high_warning", "high_alarm"},
    "log": {"float_rate_s", "discharge_rate_s"},
}


class ProfileError(ConfigError):
    """A profile is invalid; ``field`` is the profile key (e.g. ``voltage.low_warning``)."""

    def __init__(self, source: str, field: str, message: str) -> None:
        self.source = source
        super().__init__(field, message)
        self.args = (f"{source}: {field}: {message}",)

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class Profile:
    """A named configuration template: everything but label, position and test id."""

    name: str
    description: str
    config: LoggerConfig
    source: str  # file path or "preset:<key>"

    def for_block(self, position: int, *, label: str, test_id: str) -> LoggerConfig:
        """The configuration for the block at ``position`` in the string."""
        return self.config.with_changes(block_label=label, block_position=position, test_id=test_id)


def presets() -> dict[str, Path]:
    """Bundled presets by key (file stem)."""
    return {p.stem: p for p in sorted(PRESET_DIR.glob("*.toml"))}


def load_profile(spec: str | Path | None = None, *, rated_ah: float | None = None) -> Profile:
    """Load a preset by key (``vrla-12v``) or a profile file by path; None = the default preset.

    ``rated_ah`` overrides the profile's rated capacity.
    """
    spec = DEFAULT_PRESET if spec is None else spec
    path = Path(spec)
    known = presets()
    if str(spec) in known and not path.exists():
        path, source = known[str(spec)], f"preset:{spec}"
    else:
        source = str(path)
        if not path.is_file():
            raise InputFileError(
                source, f"no such profile file or preset (presets: {', '.join(known)})")
    return parse_profile(path.read_text(encoding="utf-8"), source, rated_ah=rated_ah)


def parse_profile(text: str, source: str = "<profile>", *, rated_ah: float | None = None) -> Profile:
    """Parse and validate profile TOML text; errors name ``source`` and the key."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        m = re.search(r"line (\d+)", str(err))
        raise InputFileError(source, f"not valid TOML: {err}",
                             line=int(m.group(1)) if m else None) from None
    _check_keys(source, doc)

    def get(section: str, key: str, kinds: tuple[type, ...], default: Any = None) -> Any:
        value = doc.get(section, {}).get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, kinds):
            want = "a number" if float in kinds else "an integer"
            raise ProfileError(source, f"{section}.{key}", f"{value!r} is not {want}")
        return value

    block_doc = doc.get("block", {})
    if "chemistry" not in block_doc:
        raise ProfileError(source, "block.chemistry", "missing (e.g. \"vrla\", \"nicd\")")
    chemistry_text = block_doc["chemistry"]
    if not isinstance(chemistry_text, str):
        raise ProfileError(source, "block.chemistry", f"{chemistry_text!r} is not a string")
    try:
        chemistry = Chemistry.parse(chemistry_text, "block.chemistry")
        cells = get("block", "cells", (int,))
        nominal_v = get("block", "nominal_v", (int, float))
        if cells is None and nominal_v is None:
            raise ProfileError(source, "block.cells", "give block.cells or block.nominal_v")
        if cells is None:
            per_cell = chemistry.cell_nominal_mv / 1000
            cells = round(nominal_v / per_cell)
            if abs(cells * per_cell - nominal_v) > 0.05 * nominal_v or cells < 1:
                raise ProfileError(source, "block.nominal_v",
                                   f"{nominal_v} V is not a whole number of {per_cell:g} V cells")
        block = BlockType(chemistry, cells)
    except ProfileError:
        raise
    except ConfigError as err:
        raise ProfileError(source, _FIELD_TO_KEY.get(err.field, err.field), err.message) from None

    defaults = Thresholds.default_for(block)
    volts = {k: get("voltage", k, (int, float)) for k in _SECTIONS["voltage"]}
    temps = {k: get("temperature", k, (int, float)) for k in _SECTIONS["temperature"]}

    def mv(key: str, fallback: int) -> int:
        v = volts[key]
        return fallback if v is None else round(v * 1000)  # V -> mV, resolution 1 mV

    def dc(key: str, fallback: int) -> int:
        t = temps[key]
        return fallback if t is None else round(t * 10)  # C -> 0.1 C

    thresholds = Thresholds(
        mv("low_alarm", defaults.v_low_alarm_mv), mv("low_warning", defaults.v_low_warn_mv),
        mv("high_warning", defaults.v_high_warn_mv), mv("high_alarm", defaults.v_high_alarm_mv),
        dc("low_alarm", defaults.t_low_alarm_dc), dc("low_warning", defaults.t_low_warn_dc),
        dc("high_warning", defaults.t_high_warn_dc), dc("high_alarm", defaults.t_high_alarm_dc),
    )
    ah = rated_ah if rated_ah is not None else get("block", "rated_ah", (int, float), 100.0)
    try:
        config = LoggerConfig(
            block_type=block,
            thresholds=thresholds,
            rated_ah=float(ah),
            float_rate_s=get("log", "float_rate_s", (int,), 60),
            discharge_rate_s=get("log", "discharge_rate_s", (int,), 1),
        )
    except ConfigError as err:
        raise ProfileError(source, _FIELD_TO_KEY.get(err.field, err.field), err.message) from None
    name = doc.get("name", Path(source).stem)
    description = doc.get("description", "")
    if not isinstance(name, str) or not isinstance(description, str):
        raise ProfileError(source, "name", "name and description must be strings")
    return Profile(name, description, config, source)


def _check_keys(source: str, doc: dict[str, Any]) -> None:
    for key, value in doc.items():
        if key not in _SECTIONS[""]:
            raise ProfileError(source, key, f"unknown key (known: {', '.join(sorted(_SECTIONS['']))})")
        if key in _SECTIONS:
            if not isinstance(value, dict):
                raise ProfileError(source, key, "must be a [table]")
            for sub in value:
                if sub not in _SECTIONS[key]:
                    raise ProfileError(source, f"{key}.{sub}",
                                       f"unknown key (known: {', '.join(sorted(_SECTIONS[key]))})")


def describe_thresholds(config: LoggerConfig) -> str:
    """One self-explaining line for lists: which level is which, with units.

    ``V alarm <9.90 warn <10.80 | warn >14.10 alarm >14.70; C alarm <0.0 warn <5.0 |
    warn >35.0 alarm >45.0; log 60 s float, 1 s discharge``
    """
    t = config.thresholds
    return (f"V alarm <{t.v_low_alarm_mv / 1000:.2f} warn <{t.v_low_warn_mv / 1000:.2f} | "
            f"warn >{t.v_high_warn_mv / 1000:.2f} alarm >{t.v_high_alarm_mv / 1000:.2f}; "
            f"C alarm <{t.t_low_alarm_dc / 10:.1f} warn <{t.t_low_warn_dc / 10:.1f} | "
            f"warn >{t.t_high_warn_dc / 10:.1f} alarm >{t.t_high_alarm_dc / 10:.1f}; "
            f"log {config.float_rate_s} s float, {config.discharge_rate_s} s discharge")


def thresholds_dict(config: LoggerConfig) -> dict[str, float | int]:
    """The levels with named keys and units (V, C, s): for JSON output."""
    t = config.thresholds
    return {
        "v_low_alarm_v": t.v_low_alarm_mv / 1000, "v_low_warn_v": t.v_low_warn_mv / 1000,
        "v_high_warn_v": t.v_high_warn_mv / 1000, "v_high_alarm_v": t.v_high_alarm_mv / 1000,
        "t_low_alarm_c": t.t_low_alarm_dc / 10, "t_low_warn_c": t.t_low_warn_dc / 10,
        "t_high_warn_c": t.t_high_warn_dc / 10, "t_high_alarm_c": t.t_high_alarm_dc / 10,
        "float_rate_s": config.float_rate_s, "discharge_rate_s": config.discharge_rate_s,
    }
