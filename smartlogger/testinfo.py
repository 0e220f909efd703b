"""The test metadata file: one place for everything stated about a capacity test.

A test lives in one folder: the pulled logfiles, ``test.json`` (this module) and, once
analysed, ``result.json``. ``test.json`` is written by ``smartlogger test new`` / ``test set``
(and by ``test analyze`` for the options it was given), read by ``test analyze``, ``export xlsx
--test``, ``sync`` (which creates the site, system, string and test on the server from it) and
the customer report. Layout (every key optional; unknown keys are kept when the file is
rewritten)::

    {"format": "smartlogger-test/1",
     "test_id": "UPS-A-2026", "name": "Annual capacity test", "client_key": "3f2a...",
     "site": {"name": "Plant North", "customer": "Bank", "address": "Hall 3"},
     "system": {"name": "UPS A", "kind": "UPS"},
     "string": {"name": "String 1", "blocks": 24},
     "technician": "Tina", "company": "Acme Service",
     "battery": {"make": "CSB", "model": "GP12400", "chemistry": "vrla",
                 "block_voltage_v": 12, "rated_ah": 100},
     "load": "20A", "rated_time": "3h", "datasheet": "datasheet.csv",
     "end_voltage": "1.75V/cell", "reference_temperature_c": 25,
     "tz": "Europe/Berlin", "notes": "...",
     "ambient_c": 22.5, "load_setup": "load bank", "load_source": "load bank display",
     "cutoff": "load bank end-voltage cutoff at 252 V"}

Quantities are kept as typed (``"20A"``, ``"4.8kW"``, ``"3h"``) and read with
``smartlogger.quantities``, so the file, the CLI and the API say the same thing the same way.
Files written for the sync client before this module (``load``, ``rated_time``, ``blocks``,
``name``, ``string_id``, ``datasheet_csv``, ``metadata``, ``client_key``, ``end_v_per_cell``) read
unchanged.

Stdlib only (plus ``quantities``): every part may read a test folder's metadata.
"""

from __future__ import annotations

import json
import math
import os
import uuid
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from smartlogger.errors import ConfigError
from smartlogger.quantities import (
    Current,
    Power,
    Voltage,
    parse_duration,
    parse_load,
    parse_voltage,
)

TEST_FILE = "test.json"
RESULT_FILE = "result.json"
WATCH_FILE = "watch.json"  # the live watch record (smartlogger test watch --folder), docs/LIVE.md
DATASHEET_FILE = "datasheet.csv"
FORMAT = "smartlogger-test/1"


class TestInfoError(ConfigError):
    """``test.json`` is unusable; ``field`` names the key (dotted), the message the file."""

    __test__ = False


class TestInfoConflict(ConfigError):
    """An option contradicts what the test folder already states; names both values."""

    __test__ = False

    def __init__(self, option: str, given: str, recorded: str, where: str, hint: str = "") -> None:
        self.option = option
        self.given = given
        self.recorded = recorded
        # str(): "--load: 30A conflicts with the test's load 20A in logs/test.json; ..."
        super().__init__(option, f"{given} conflicts with {recorded} in {where}"
                         + (f"; {hint}" if hint else ""))


@dataclass
class SiteInfo:
    name: str = ""
    customer: str = ""
    address: str = ""


@dataclass
class SystemInfo:
    name: str = ""
    kind: str = ""  # e.g. UPS, telecom plant


@dataclass
class StringInfo:
    name: str = ""
    blocks: int | None = None  # blocks in the string


@dataclass
class BatteryInfo:
    make: str = ""
    model: str = ""
    chemistry: str = ""  # vrla, flooded, nicd, lifepo4
    block_voltage_v: float | None = None  # nominal block voltage, V
    rated_ah: float | None = None  # rated capacity, Ah


@dataclass
class TestInfo:
    """The content of ``test.json`` (see module docstring)."""

    __test__ = False  # not a pytest test class

    test_id: str = ""
    name: str = ""
    client_key: str = ""  # stable id of the test on any server (every laptop syncing the folder)
    site: SiteInfo = field(default_factory=SiteInfo)
    system: SystemInfo = field(default_factory=SystemInfo)
    string: StringInfo = field(default_factory=StringInfo)
    technician: str = ""
    company: str = ""
    battery: BatteryInfo = field(default_factory=BatteryInfo)
    load: str = ""  # "20A" (constant current) or "4.8kW" (constant string power)
    rated_time: str = ""  # rated time at this load to the end voltage, "3h" (bare number: hours)
    datasheet: str = ""  # rated-discharge table CSV, a file in the test folder
    end_voltage: str = ""  # "1.75V/cell", "10.5V/block" or "252V/string" (a bare number is per cell)
    end_v_per_cell: float | None = None  # V/cell (older files; end_voltage says it with its scope)
    reference_temperature_c: float | None = None  # rating temperature of rated_time, C
    tz: str = ""  # IANA zone of the site, for local times in reports
    notes: str = ""
    ambient_c: float | None = None  # ambient (room) temperature before the test, C
    load_setup: str = ""  # how the load was applied: "load bank", "real load", "transfer to a second UPS"
    load_source: str = ""  # where the load's current figure comes from: "load bank display", "clamp meter"
    cutoff: str = ""  # what stops the test: "load bank end-voltage cutoff at 252 V"
    string_id: int | None = None  # the server's string id, when known
    datasheet_csv: str = ""  # the datasheet inline (older files; the API's form)
    metadata: dict[str, str] = field(default_factory=dict)  # free key -> value
    extra: dict[str, Any] = field(default_factory=dict)  # keys this version does not know

    # ------------------------------------------------------------------ reading

    @classmethod
    def from_dict(cls, data: Any, where: str = TEST_FILE) -> TestInfo:
        if not isinstance(data, dict):
            raise TestInfoError("test", f"{where}: not a JSON object")
        known = {f.name for f in fields(cls)} - {"extra"}
        info = cls(extra={k: v for k, v in data.items() if k not in known and k not in ("format", "blocks")})
        for key in ("test_id", "name", "client_key", "technician", "company", "load", "rated_time",
                    "datasheet", "tz", "notes", "datasheet_csv", "end_voltage", "load_setup", "load_source",
                    "cutoff"):
            if key in data and data[key] is not None:
                setattr(info, key, _text(data[key], key, where))
        for key, cls_ in (("site", SiteInfo), ("system", SystemInfo), ("string", StringInfo),
                          ("battery", BatteryInfo)):
            if key in data and data[key] is not None:
                setattr(info, key, _part(cls_, data[key], key, where))
        if "blocks" in data and data["blocks"] is not None and info.string.blocks is None:
            info.string.blocks = _int(data["blocks"], "blocks", where)  # the sync client's older key
        for key in ("end_v_per_cell", "reference_temperature_c", "ambient_c"):
            if key in data and data[key] is not None:
                setattr(info, key, _number(data[key], key, where))
        if data.get("string_id") is not None:
            info.string_id = _int(data["string_id"], "string_id", where)
        if data.get("metadata") is not None:
            meta = data["metadata"]
            if not isinstance(meta, dict):
                raise TestInfoError("metadata", f"{where}: metadata: not an object of texts")
            info.metadata = {str(k): str(v) for k, v in meta.items()}
        info.check(where)
        return info

    @classmethod
    def read(cls, folder: str | os.PathLike[str]) -> TestInfo | None:
        """The test folder's ``test.json``, or None when there is none."""
        path = Path(folder) / TEST_FILE
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as err:
            raise TestInfoError("test", f"{path}: not JSON ({err})") from None
        return cls.from_dict(data, str(path))

    def check(self, where: str = TEST_FILE) -> None:
        """Every stated quantity reads with the shared parsers (the error names the key)."""
        if self.load:
            self.parsed_load(where)
        if self.rated_time:
            self.rated_time_s(where)
        if self.end_voltage:
            self.parsed_end_voltage(where)
        if self.end_voltage and self.end_v_per_cell is not None:
            raise TestInfoError("end_voltage", f"{where}: give end_voltage or end_v_per_cell, not both")
        if self.rated_time and (self.datasheet or self.datasheet_csv):
            raise TestInfoError("rated_time", f"{where}: give either rated_time or a datasheet, not both")
        if self.tz:
            try:
                ZoneInfo(self.tz)
            except (ZoneInfoNotFoundError, ValueError):
                raise TestInfoError("tz", f"{where}: tz: {self.tz!r} is not an IANA time zone "
                                          "(e.g. Europe/Berlin)") from None
        if self.string.blocks is not None and not 1 <= self.string.blocks <= 10000:
            raise TestInfoError("string.blocks", f"{where}: string.blocks: {self.string.blocks} is outside 1..10000")
        if self.battery.rated_ah is not None and not 0 < self.battery.rated_ah <= 100000:
            raise TestInfoError("battery.rated_ah", f"{where}: battery.rated_ah: {self.battery.rated_ah} Ah is implausible")
        if len(self.test_id.encode()) > 32:
            raise TestInfoError("test_id", f"{where}: test_id: longer than the 32 bytes a logger holds")

    def parsed_load(self, where: str = TEST_FILE) -> Current | Power | None:
        return parse_load(self.load, field=f"{where}: load") if self.load else None

    def parsed_end_voltage(self, where: str = TEST_FILE) -> Voltage | None:
        """The end voltage with its scope (``end_v_per_cell`` of older files is per cell)."""
        if self.end_voltage:
            return parse_voltage(self.end_voltage, field=f"{where}: end_voltage")
        if self.end_v_per_cell is not None:
            return Voltage(self.end_v_per_cell, "cell")
        return None

    def rated_time_s(self, where: str = TEST_FILE) -> float | None:
        if not self.rated_time:
            return None
        return parse_duration(self.rated_time, field=f"{where}: rated_time", default_unit="h")

    # ------------------------------------------------------------------ writing

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"format": FORMAT}
        for f in fields(self):
            if f.name == "extra":
                continue
            value = getattr(self, f.name)
            if isinstance(value, SiteInfo | SystemInfo | StringInfo | BatteryInfo):
                part = {k.name: getattr(value, k.name) for k in fields(value)
                        if getattr(value, k.name) not in ("", None)}
                if part:
                    out[f.name] = part
            elif value not in ("", None, {}):
                out[f.name] = value
        out.update(self.extra)
        return out

    def write(self, folder: str | os.PathLike[str]) -> Path:
        """Write ``folder/test.json`` atomically (a crash leaves the old file)."""
        path = Path(folder) / TEST_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(tmp, path)
        return path

    def with_client_key(self) -> TestInfo:
        return self if self.client_key else replace(self, client_key=uuid.uuid4().hex)

    # ------------------------------------------------------------------ derived

    @property
    def string_blocks(self) -> int | None:
        return self.string.blocks

    def datasheet_path(self, folder: str | os.PathLike[str]) -> Path | None:
        return Path(folder) / self.datasheet if self.datasheet else None

    def server_metadata(self) -> dict[str, str]:
        """Everything the API's test has no column for, as its ``metadata`` (text -> text)."""
        out = dict(self.metadata)
        flat = {"test_id": self.test_id, "site": self.site.name, "customer": self.site.customer,
                "site_address": self.site.address, "system": self.system.name, "system_kind": self.system.kind,
                "string": self.string.name, "technician": self.technician, "company": self.company,
                "battery.make": self.battery.make, "battery.model": self.battery.model,
                "battery.chemistry": self.battery.chemistry,
                "battery.block_voltage_v": "" if self.battery.block_voltage_v is None else f"{self.battery.block_voltage_v:g}",
                "battery.rated_ah": "" if self.battery.rated_ah is None else f"{self.battery.rated_ah:g}",
                "tz": self.tz, "notes": self.notes,
                "ambient_c": "" if self.ambient_c is None else f"{self.ambient_c:g}",
                "load_setup": self.load_setup, "load_source": self.load_source, "cutoff": self.cutoff,
                "test_name": self.name,
                "rating": (f"rated time {self.rated_time}" if self.rated_time else
                           f"datasheet ({self.datasheet or 'inline table'})" if self.datasheet or self.datasheet_csv
                           else "")}
        out.update({k: v for k, v in flat.items() if v})
        return out

    def report_info(self) -> dict[str, str]:
        """What the customer report shows of the test's metadata (``TestResult.report_info``)."""
        return self.server_metadata()


def _text(value: Any, key: str, where: str) -> str:
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise TestInfoError(key, f"{where}: {key}: expected a text")
    return str(value)


def _number(value: Any, key: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TestInfoError(key, f"{where}: {key}: expected a number")
    return float(value)


def _int(value: Any, key: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TestInfoError(key, f"{where}: {key}: expected a whole number")
    return value


def _part(cls: type[Any], data: Any, key: str, where: str) -> Any:
    if not isinstance(data, dict):
        raise TestInfoError(key, f"{where}: {key}: expected an object")
    kwargs: dict[str, Any] = {}
    for f in fields(cls):
        if data.get(f.name) is None:
            continue
        name = f"{key}.{f.name}"
        if f.name in ("blocks",):
            kwargs[f.name] = _int(data[f.name], name, where)
        elif f.name in ("block_voltage_v", "rated_ah"):
            kwargs[f.name] = _number(data[f.name], name, where)
        else:
            kwargs[f.name] = _text(data[f.name], name, where)
    unknown = set(data) - {f.name for f in fields(cls)}
    if unknown:
        raise TestInfoError(key, f"{where}: {key}: unknown key(s) {', '.join(sorted(unknown))}")
    return cls(**kwargs)


# --------------------------------------------------------------------------- options vs the file


def load_text(q: Current | Power) -> str:
    """The canonical text of a load quantity, as kept in ``test.json``: ``20A``, ``4800W``."""
    return f"{q.amps:g}A" if isinstance(q, Current) else f"{q.watts:g}W"


def duration_text(seconds: float) -> str:
    """A rated time as kept in ``test.json``: ``3h``, ``90min``, ``45s``."""
    if seconds % 3600 == 0:
        return f"{seconds / 3600:g}h"
    if seconds % 60 == 0:
        return f"{seconds / 60:g}min"
    return f"{seconds:g}s"


@dataclass(frozen=True)
class StatedOptions:
    """What a command was told about the test (None: not given)."""

    load: Current | Power | None = None
    rated_time_s: float | None = None
    datasheet: str | None = None  # a CSV path
    end_voltage: Voltage | None = None
    blocks: int | None = None
    test_id: str | None = None
    reference_temperature_c: float | None = None


def _same(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def adopt_options(info: TestInfo, given: StatedOptions, folder: str | os.PathLike[str], *,
                  overwrite: bool = False) -> tuple[TestInfo, list[str]]:
    """``info`` with the given options filled in; the list says what changed (``"load: 20A"``).

    A given option that contradicts what ``info`` states is a ``TestInfoConflict`` naming both
    values, unless ``overwrite`` (``test set``). A datasheet is copied into the folder as
    ``datasheet.csv`` so the folder stays complete when it is moved or synced.
    """
    where = str(Path(folder) / TEST_FILE)
    hint = f"change the test with 'smartlogger test set {folder} ...', or leave the option out"
    new = replace(info, site=replace(info.site), system=replace(info.system), string=replace(info.string),
                  battery=replace(info.battery))
    changed: list[str] = []

    def conflict(option: str, given_text: str, recorded_text: str, what: str) -> None:
        raise TestInfoConflict(option, given_text, f"the test's {what} {recorded_text}", where, hint)

    if given.load is not None:
        text = load_text(given.load)
        recorded = info.parsed_load(where)
        same = recorded is not None and type(recorded) is type(given.load) and _same(
            recorded.amps if isinstance(recorded, Current) else recorded.watts,
            given.load.amps if isinstance(given.load, Current) else given.load.watts)
        if recorded is not None and not same and not overwrite:
            option = "--load" if isinstance(given.load, Current) else "--load-power"
            conflict(option, text, info.load, "load")
        if not same:
            new.load = text
            changed.append(f"load: {text}")
    if given.rated_time_s is not None:
        recorded_s = info.rated_time_s(where)
        text = duration_text(given.rated_time_s)
        if info.datasheet or info.datasheet_csv:
            if not overwrite:
                conflict("--rated-time", text, info.datasheet or "inline table", "datasheet")
            new.datasheet, new.datasheet_csv = "", ""
        if recorded_s is not None and not _same(recorded_s, given.rated_time_s) and not overwrite:
            conflict("--rated-time", text, info.rated_time, "rated time")
        if recorded_s is None or not _same(recorded_s, given.rated_time_s):
            new.rated_time = text
            changed.append(f"rated time: {text}")
    if given.datasheet is not None:
        content = Path(given.datasheet).read_text(encoding="utf-8")
        target = Path(folder) / DATASHEET_FILE
        recorded_text = ""
        if info.datasheet:
            p = Path(folder) / info.datasheet
            recorded_text = p.read_text(encoding="utf-8") if p.exists() else ""
        elif info.datasheet_csv:
            recorded_text = info.datasheet_csv
        if info.rated_time and not overwrite:
            conflict("--datasheet", given.datasheet, info.rated_time, "rated time")
        if (info.datasheet or info.datasheet_csv) and recorded_text != content and not overwrite:
            conflict("--datasheet", given.datasheet, info.datasheet or "inline table", "datasheet")
        if recorded_text != content or not info.datasheet:
            if Path(given.datasheet).resolve() != target.resolve():
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(content, encoding="utf-8")
            new.datasheet, new.datasheet_csv, new.rated_time = DATASHEET_FILE, "", ""
            changed.append(f"datasheet: {DATASHEET_FILE} (from {given.datasheet})")
    if given.end_voltage is not None:
        recorded_ev = info.parsed_end_voltage(where)
        text = str(given.end_voltage)
        same = (recorded_ev is not None and recorded_ev.scope == given.end_voltage.scope
                and _same(recorded_ev.volts, given.end_voltage.volts))
        if recorded_ev is not None and not same and not overwrite:
            conflict("--end-voltage", text, str(recorded_ev), "end voltage")
        if not same:
            new.end_voltage, new.end_v_per_cell = text, None
            changed.append(f"end voltage: {text}")
    for option, attr, value, what in (
            ("--reference-temp", "reference_temperature_c", given.reference_temperature_c, "reference temperature"),):
        if value is None:
            continue
        recorded_v = getattr(info, attr)
        if recorded_v is not None and not _same(recorded_v, value) and not overwrite:
            conflict(option, f"{value:g}", f"{recorded_v:g}", what)
        if recorded_v is None or not _same(recorded_v, value):
            setattr(new, attr, float(value))
            changed.append(f"{what}: {value:g}")
    if given.blocks is not None:
        if info.string.blocks is not None and info.string.blocks != given.blocks and not overwrite:
            conflict("--blocks", str(given.blocks), str(info.string.blocks), "string size (blocks)")
        if info.string.blocks != given.blocks:
            new.string.blocks = given.blocks
            changed.append(f"blocks: {given.blocks}")
    if given.test_id:
        if info.test_id and info.test_id != given.test_id and not overwrite:
            conflict("--test-id", given.test_id, info.test_id, "test id")
        if info.test_id != given.test_id:
            new.test_id = given.test_id
            changed.append(f"test id: {given.test_id}")
    new.check(where)
    return new, changed
