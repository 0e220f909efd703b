"""The results of a capacity-test analysis: a dataclass tree, its JSON form and JSON schema.

Owns ``TestResult`` and its parts, ``to_json``/``from_json`` (lossless round
trip) and ``json_schema()`` (JSON Schema draft 2020-12, generated from the
dataclasses so it cannot drift from them). Every field documents its unit in
its ``doc`` metadata, which becomes the schema's ``description``.

Consumers: the CLI (``smartlogger test analyze --json``), the Excel export and
the API. Times are true (phone-aligned) ms since the Unix epoch, UTC;
durations in s; voltages in V; temperatures in C; charge in Ah.

Does not own any computation (see ``analysis.analyze``).
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar

from smartlogger.analysis.inputs import MetadataError

#: Version of the results JSON; bump on any incompatible change.
SCHEMA_VERSION = 1


@dataclass
class ExceedanceResult:
    """One exceedance of one block (see ``analysis.exceedances``)."""

    quantity: str = field(metadata={"doc": "'voltage' or 'temperature'"})
    side: str = field(metadata={"doc": "'low' or 'high'"})
    level: str = field(metadata={"doc": "highest level reached: 'warning' or 'alarm'"})
    severity: str = field(metadata={"doc": "'yellow' (slight or brief) or 'red' (massive or long)"})
    start_ms: int = field(metadata={"doc": "start, true time, ms since the Unix epoch (UTC)"})
    start_offset_s: float = field(metadata={"doc": "start relative to the discharge start, s (negative: before)"})
    duration_s: float = field(metadata={"doc": "time beyond the warning level, s"})
    alarm_duration_s: float = field(metadata={"doc": "time beyond the alarm level within it, s"})
    worst: float = field(metadata={"doc": "extreme value: V for voltage, C for temperature"})
    reason: str = field(metadata={"doc": "why it is red; empty when yellow"})


@dataclass
class GapResult:
    """A stretch without samples inside the analysed window."""

    start_ms: int = field(metadata={"doc": "last sample before the gap, true time, ms since epoch"})
    duration_s: float = field(metadata={"doc": "length of the gap, s"})


@dataclass
class ClockResult:
    """The fitted clock of one logger (see ``analysis.align``)."""

    drift_ppm: float = field(metadata={"doc": "fitted RTC frequency error, ppm (positive: logger fast)"})
    offset_ms: float = field(metadata={"doc": "true minus device time at the first sample, ms"})
    observations: int = field(metadata={"doc": "clock observations used (taps, pulls, phone-set jumps)"})
    drift_fitted: bool = field(metadata={"doc": "false when the drift was assumed zero (too few observations)"})
    residual_rms_ms: float = field(metadata={"doc": "RMS residual of the clock fit, ms"})
    uncertainty_ms: float | None = field(metadata={"doc": "largest alignment uncertainty during the discharge, ms; null if unreferenced"})
    note: str = field(default="", metadata={
        "doc": "how a clock whose observations disagree was placed on the string's time (empty: they agreed)"})


@dataclass
class ResistanceStepResult:
    """One block's internal resistance from one load step (see ``analysis.resistance``)."""

    time_ms: int = field(metadata={"doc": "step instant, true time, ms since epoch"})
    kind: str = field(metadata={"doc": "'on', 'off', 'pause', 'resume' or 'step' (a load step while on)"})
    delta_a: float = field(metadata={"doc": "current change at the step, A (positive: more discharge current)"})
    resistance_mohm: float = field(metadata={"doc": "DC step resistance: -dV/dI at the step instant, mOhm"})
    uncertainty_mohm: float = field(metadata={"doc": "standard uncertainty (sample noise and step timing), mOhm"})
    temperature_c: float | None = field(metadata={"doc": "block temperature at the step, C"})


@dataclass
class FileEvidence:
    """One logfile given to the analysis: its verification and what the analysis did with it.

    The exclusion record shared by every loader: a file not used has ``used`` false, a
    ``reason`` code and a ``message`` naming why (docs/EVIDENCE.md lists the codes).
    """

    file: str = field(metadata={"doc": "the file as given (path or name)"})
    sha256: str | None = field(metadata={"doc": "SHA-256 of the file's bytes, hex; null if it could not be read"})
    serial: str | None = field(metadata={"doc": "logger serial the file claims; null if unreadable"})
    position: int = field(metadata={"doc": "string position the file names (configuration or phone metadata); 0 unknown"})
    status: str = field(metadata={"doc": "verification: 'verified' (hardware evidence), 'simulated', 'unsigned', "
                                         "'tampered' or 'unreadable'"})
    authority: str | None = field(metadata={"doc": "certificate authority: 'production' or 'test'; null unsigned"})
    markers: list[str] = field(metadata={"doc": "provenance markers the file carries (SIMULATED, REPLAYED)"})
    device_key: str | None = field(metadata={"doc": "fingerprint of the certified device key"})
    latest_pull: int | None = field(metadata={"doc": "device pull counter of the file's latest signed pull"})
    used: bool = field(metadata={"doc": "the analysis used this file's data"})
    reason: str = field(metadata={"doc": "why not used: '' (used), 'unreadable', 'tampered', 'unsigned_not_merged', "
                                         "'simulated_not_merged', 'second_device_key', ..."})
    message: str = field(metadata={"doc": "the verdict on the file (used) or why it was excluded"})


@dataclass
class BlockEvidence:
    """What a block's numbers rest on."""

    status: str = field(metadata={"doc": "weakest evidence of the data used: 'verified' (hardware evidence), "
                                         "'simulated', 'unsigned', or 'unchecked' (not loaded from logfiles)"})
    files: list[FileEvidence] = field(metadata={"doc": "this logger's files, used and excluded"})
    note: str = field(metadata={"doc": "what was used and what was excluded, in words"})


@dataclass
class TestEvidence:
    """What the whole result rests on."""

    __test__ = False  # not a pytest test class, despite the name

    status: str = field(metadata={"doc": "weakest block evidence: 'verified', 'simulated', 'unsigned' or 'unchecked'"})
    verified_only: bool = field(metadata={"doc": "every block rests on verified hardware evidence only"})
    statement: str = field(metadata={"doc": "what the result rests on and what was excluded, in words"})
    blocks: dict[str, int] = field(metadata={"doc": "number of blocks per evidence status"})
    files_used: int = field(metadata={"doc": "logfiles whose data was used"})
    files_excluded: int = field(metadata={"doc": "logfiles given but not used (see excluded)"})


@dataclass
class BlockResult:
    """One block (one logger) of the tested string."""

    serial: str = field(metadata={"doc": "logger serial"})
    position: int = field(metadata={"doc": "1-based position in the string; 0 if not set"})
    label: str = field(metadata={"doc": "block label from the logger configuration"})
    markers: list[str] = field(metadata={"doc": "provenance markers, e.g. SIMULATED, REPLAYED"})
    block_type: str = field(metadata={"doc": "block description, e.g. '12 V vrla (6 cells)'"})
    cells: int = field(metadata={"doc": "cells in series in the block"})
    rated_ah: float = field(metadata={"doc": "nominal capacity from the logger configuration, Ah"})
    samples: int = field(metadata={"doc": "samples of this logger inside the analysed window"})
    end_voltage_v: float = field(metadata={"doc": "this block's end voltage (end V/cell x cells), V"})
    reached_end_voltage: bool = field(metadata={"doc": "the block reached its end voltage during the discharge"})
    time_to_end_s: float | None = field(metadata={"doc": "discharge start to this block's end voltage, s; null if not reached"})
    discharge_time_s: float = field(metadata={"doc": "time counted for this block (to its end voltage or the discharge end), s"})
    delivered_ah: float = field(metadata={"doc": "charge delivered in discharge_time_s, Ah (integral of I dt)"})
    temperature_c: float | None = field(metadata={"doc": "mean block temperature over the first minute of the discharge, C"})
    k_t: float | None = field(metadata={"doc": "temperature correction factor K_T used, dimensionless"})
    capacity_pct_time_adjusted: float | None = field(metadata={"doc": "time-adjusted % capacity; null without rated time"})
    capacity_pct_rate_adjusted: float | None = field(metadata={"doc": "rate-adjusted % capacity; null without datasheet"})
    capacity_pct: float | None = field(metadata={"doc": "% capacity by the method of the test (capacity.method)"})
    soh_pct: float | None = field(metadata={"doc": "state of health: delivered Ah / Ah of a new block at this rate and temperature, %"})
    lower_bound: bool = field(metadata={"doc": "capacity and SOH are lower bounds (end voltage not reached)"})
    rank: int | None = field(metadata={"doc": "1 = weakest block of the string; null without % capacity"})
    replace: bool = field(metadata={"doc": "measured capacity (not a lower bound) below the replacement limit (80 %)"})
    min_voltage_v: float | None = field(metadata={"doc": "lowest voltage during the discharge, V"})
    max_temperature_c: float | None = field(metadata={"doc": "highest temperature in the analysed window, C"})
    yellow: int = field(metadata={"doc": "number of yellow exceedances"})
    red: int = field(metadata={"doc": "number of red exceedances"})
    clock: ClockResult = field(metadata={"doc": "clock fit of this logger"})
    gaps: list[GapResult] = field(metadata={"doc": "gaps in this logger's samples inside the analysed window"})
    exceedances: list[ExceedanceResult] = field(metadata={"doc": "threshold exceedances in the analysed window"})
    warnings: list[str] = field(metadata={"doc": "problems found with this block's data"})
    # Added in issue 19 (optional when reading older results):
    resistance_mohm: float | None = field(default=None, metadata={
        "doc": "internal (DC step) resistance, mOhm: from the first load-on step (the block charged); "
               "null when no step gave one"})
    resistance_uncertainty_mohm: float | None = field(default=None, metadata={
        "doc": "standard uncertainty of resistance_mohm, mOhm"})
    resistance_step: str | None = field(default=None, metadata={"doc": "kind of step resistance_mohm is from"})
    resistance_temperature_c: float | None = field(default=None, metadata={
        "doc": "block temperature at that step, C (resistance rises in the cold)"})
    resistance_change_pct: float | None = field(default=None, metadata={
        "doc": "resistance_mohm above (+) or below the test's resistance reference, %"})
    resistance_status: str | None = field(default=None, metadata={
        "doc": "'ok', 'warning' (above reference x (1 + warn)) or 'fail' (above reference x (1 + fail))"})
    resistance_steps: list[ResistanceStepResult] = field(default_factory=list, metadata={
        "doc": "the resistance from every load step of the test"})
    # Added in issue 17 (optional when reading older results):
    evidence: BlockEvidence = field(default_factory=lambda: unchecked_block_evidence(), metadata={
        "doc": "the evidence of the data this block was computed from"})
    # Added in issue 20 (optional when reading older results; see analysis.verdict):
    disposition: str = field(default="", metadata={
        "doc": "'fail' (measured below the acceptance criterion), 'pass' (measured, or a lower bound, at or above "
               "it), 'not_determined' (a lower bound below it: the block outlasted the test) or 'no_result'; "
               "empty in results written before issue 20"})
    recommendation: str = field(default="", metadata={"doc": "what to do with the block, in words"})
    float_voltage_v: float | None = field(default=None, metadata={
        "doc": "pre-test float voltage: median block voltage over the 10 min before the discharge start, V; "
               "null when the log holds none"})


@dataclass
class EvidenceResult:
    """What one source of evidence said about the discharge start or end (see ``analysis.discharge``)."""

    what: str = field(metadata={"doc": "'start' or 'end'"})
    source: str = field(metadata={"doc": "'voltage_step' (the blocks stepped together), 'firmware_event' "
                                         "(DISCHARGE_START/END), 'load_profile' (the load file's time stamps), "
                                         "'threshold', 'end_voltage' or 'data_end'"})
    time_ms: int | None = field(metadata={"doc": "the instant it gives, true time, ms since epoch; null: none"})
    used: bool = field(metadata={"doc": "this source placed the instant"})
    detail: str = field(metadata={"doc": "what it saw, in words"})


@dataclass
class InterruptionResult:
    """The load was off for a while inside the discharge (the test paused and resumed)."""

    start_ms: int = field(metadata={"doc": "load off, true time, ms since epoch"})
    duration_s: float = field(metadata={"doc": "how long it was off, s (not counted as discharge time)"})


@dataclass
class DischargeResult:
    """The string discharge."""

    start_ms: int = field(metadata={"doc": "load applied, true time, ms since epoch"})
    end_ms: int = field(metadata={"doc": "end of the discharge, true time, ms since epoch"})
    duration_s: float = field(metadata={"doc": "end minus start, s"})
    end_reason: str = field(metadata={"doc": "'end_voltage', 'load_removed' (aborted) or 'data_ended'"})
    end_v_per_cell: float = field(metadata={"doc": "end voltage per cell used, V/cell"})
    string_end_voltage_v: float = field(metadata={"doc": "string end voltage (end V/cell x cells in the string), V"})
    min_string_voltage_v: float = field(metadata={"doc": "lowest estimated string voltage during the discharge, V"})
    mean_current_a: float = field(metadata={"doc": "mean string current during the discharge, A"})
    delivered_ah: float = field(metadata={"doc": "charge delivered by the string during the discharge, Ah"})
    mean_temperature_c: float | None = field(metadata={"doc": "mean of the blocks' start temperatures, C"})
    # Added in issue 19 (optional when reading older results):
    start_method: str = field(default="threshold", metadata={
        "doc": "how the start was found: 'voltage_step', 'load_profile', 'firmware_event' or 'threshold'"})
    start_uncertainty_s: float | None = field(default=None, metadata={
        "doc": "standard uncertainty of the start instant, s"})
    end_method: str = field(default="", metadata={
        "doc": "how the end was found: 'end_voltage', 'voltage_step', 'load_profile', 'firmware_event' or "
               "'data_end'"})
    end_uncertainty_s: float | None = field(default=None, metadata={
        "doc": "standard uncertainty of the end instant, s"})
    load_time_s: float | None = field(default=None, metadata={
        "doc": "time under load: duration_s less the interruptions, s (the time the capacity counts)"})
    interruptions: list[InterruptionResult] = field(default_factory=list, metadata={
        "doc": "stretches inside the discharge where the load was off"})
    load_shift_s: float | None = field(default=None, metadata={
        "doc": "a load profile with clock time stamps was moved by this to match the blocks' load step, s"})
    evidence: list[EvidenceResult] = field(default_factory=list, metadata={
        "doc": "what each source of evidence said about the start and the end"})


@dataclass
class CapacityResult:
    """The string's % capacity."""

    method: str = field(metadata={"doc": "'time_adjusted', 'rate_adjusted' or 'none' (no rated time or datasheet)"})
    capacity_pct: float | None = field(metadata={"doc": "string % capacity at the reference temperature"})
    lower_bound: bool = field(metadata={"doc": "the string did not reach its end voltage: % is a lower bound"})
    rated_time_s: float | None = field(metadata={"doc": "rated time at this load to the end voltage, s"})
    k_t: float | None = field(metadata={"doc": "temperature correction factor for the string temperature"})
    temperature_c: float | None = field(metadata={"doc": "string temperature used for K_T, C"})
    rating_reference_c: float = field(metadata={"doc": "temperature of the rating (rated time or datasheet), C"})


@dataclass
class VerdictResult:
    """The string's pass / fail / inconclusive against the acceptance criterion (see ``analysis.verdict``)."""

    outcome: str = field(metadata={"doc": "'pass', 'fail' or 'inconclusive'"})
    acceptance_pct: float = field(metadata={"doc": "acceptance criterion: capacity at or above this % of rated"})
    criterion: str = field(metadata={"doc": "the acceptance criterion, in words"})
    sentence: str = field(metadata={"doc": "the reason for the outcome in one sentence (the CLI, the workbook, "
                                           "the PDF and the app show this)"})
    failed: list[str] = field(metadata={"doc": "serials of the blocks measured below the criterion, weakest first"})
    not_determined: list[str] = field(metadata={"doc": "serials whose capacity is a lower bound below the criterion"})
    ranking_rule: str = field(metadata={"doc": "how 'weakest first' (rank, ranking) is ordered, in words"})


@dataclass
class TestResult:
    """Everything the analysis of one capacity test found."""

    __test__ = False  # not a pytest test class, despite the name

    schema_version: int = field(metadata={"doc": "version of this JSON layout"})
    test_id: str = field(metadata={"doc": "test id (from the metadata or the loggers' configuration)"})
    load: str = field(metadata={"doc": "human-readable load description"})
    load_kind: str = field(metadata={"doc": "'constant_current', 'constant_power', 'current_profile' or 'power_profile'"})
    string_blocks: int = field(metadata={"doc": "blocks in the string (expected loggers)"})
    grid_step_s: float = field(metadata={"doc": "step of the common time base, s"})
    discharge: DischargeResult = field(metadata={"doc": "the string discharge"})
    capacity: CapacityResult = field(metadata={"doc": "the string's % capacity"})
    blocks: list[BlockResult] = field(metadata={"doc": "per block, in string position order"})
    ranking: list[str] = field(metadata={"doc": "serials, weakest block first"})
    missing_positions: list[int] = field(metadata={"doc": "string positions without a logger"})
    alignment_uncertainty_ms: float | None = field(metadata={"doc": "largest alignment uncertainty of any block, ms"})
    exceedance_rule: dict[str, float] = field(metadata={"doc": "the yellow/red rule used (see ExceedanceRule)"})
    markers: list[str] = field(metadata={"doc": "provenance markers of any block (SIMULATED, REPLAYED)"})
    warnings: list[str] = field(metadata={"doc": "problems found with the test as a whole"})
    # Added in issue 19 (optional when reading older results):
    resistance_reference: str = field(default="none", metadata={
        "doc": "what the blocks' resistance is judged against: 'datasheet' (a value given), 'string_median' "
               "(the median block of this test) or 'none'"})
    resistance_reference_mohm: float | None = field(default=None, metadata={
        "doc": "the resistance reference, mOhm"})
    resistance_rule: dict[str, float] = field(default_factory=dict, metadata={
        "doc": "warn_pct and fail_pct: warning above reference x (1 + warn_pct/100), fail above "
               "reference x (1 + fail_pct/100)"})
    # Added in issue 17 (optional when reading older results):
    evidence: TestEvidence = field(default_factory=lambda: unchecked_test_evidence(), metadata={
        "doc": "what the whole result rests on (verified evidence only?)"})
    excluded: list[FileEvidence] = field(default_factory=list, metadata={
        "doc": "logfiles given but not used, each with its reason"})
    # Added in issue 20 (optional when reading older results):
    verdict: VerdictResult | None = field(default=None, metadata={
        "doc": "pass / fail / inconclusive with its reason; null in results written before issue 20 "
               "(analysis.verdict.verdict_of computes it)"})
    report_info: dict[str, str] = field(default_factory=dict, metadata={
        "doc": "what the test's metadata (test.json) states for the report: site, system, string, technician, "
               "company, battery.*, tz, ambient_c, ... (text -> text)"})

    def to_json(self, *, indent: int | None = 2) -> str:
        return json.dumps(to_dict(self), indent=indent, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> TestResult:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise MetadataError("results", f"not JSON: {err}") from None
        return cls.from_data(data)

    @classmethod
    def from_data(cls, data: Any) -> TestResult:
        """The result from its JSON value (what ``json.loads`` of ``to_json`` gives, or a stored copy)."""
        if not isinstance(data, dict) or data.get("schema_version") != SCHEMA_VERSION:
            raise MetadataError("results.schema_version", f"expected schema version {SCHEMA_VERSION}")
        return from_dict(cls, data)

    def block(self, serial: str) -> BlockResult:
        for b in self.blocks:
            if b.serial == serial:
                return b
        raise KeyError(serial)


UNRECORDED = "not recorded: results written before evidence was tracked; the evidence behind them is not known"


def unchecked_block_evidence() -> BlockEvidence:
    """The evidence of a block of a result written before evidence was recorded."""
    return BlockEvidence("unchecked", [], UNRECORDED)


def unchecked_test_evidence() -> TestEvidence:
    """The evidence of a result written before evidence was recorded."""
    return TestEvidence("unchecked", False, UNRECORDED, {}, 0, 0)


T = TypeVar("T")


def to_dict(obj: Any) -> Any:
    """Plain JSON-ready data of a results dataclass tree."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list):
        return [to_dict(x) for x in obj]
    if isinstance(obj, dict):
        return {str(k): to_dict(v) for k, v in obj.items()}
    return obj


def from_dict(cls: type[T], data: Any, path: str = "$") -> T:
    """Rebuild a results dataclass from ``to_dict`` output; ``MetadataError`` names a bad path."""
    return typing.cast(T, _build(cls, data, path))


def _build(tp: Any, data: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if data is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _build(inner[0], data, path)
    if origin is list:
        if not isinstance(data, list):
            raise MetadataError(path, "expected a list")
        (item,) = typing.get_args(tp)
        return [_build(item, x, f"{path}[{i}]") for i, x in enumerate(data)]
    if origin is dict:
        if not isinstance(data, dict):
            raise MetadataError(path, "expected an object")
        _, vt = typing.get_args(tp)
        return {k: _build(vt, v, f"{path}.{k}") for k, v in data.items()}
    if dataclasses.is_dataclass(tp):
        if not isinstance(data, dict):
            raise MetadataError(path, "expected an object")
        hints = typing.get_type_hints(tp)
        kwargs = {}
        for f in dataclasses.fields(tp):
            if f.name not in data:
                if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING:
                    continue  # a field added later: results written before it keep its default
                raise MetadataError(f"{path}.{f.name}", "missing")
            kwargs[f.name] = _build(hints[f.name], data[f.name], f"{path}.{f.name}")
        return typing.cast(Any, tp)(**kwargs)
    if tp is float:
        if isinstance(data, bool) or not isinstance(data, int | float):
            raise MetadataError(path, "expected a number")
        return float(data)
    if tp is int:
        if isinstance(data, bool) or not isinstance(data, int):
            raise MetadataError(path, "expected an integer")
        return data
    if tp in (str, bool):
        if not isinstance(data, tp):
            raise MetadataError(path, f"expected {tp.__name__}")
        return data
    raise MetadataError(path, f"unsupported type {tp!r}")  # pragma: no cover - schema bug


def json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of ``TestResult.to_json()``."""
    defs: dict[str, Any] = {}
    root = _schema(TestResult, defs)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://smartlogger.example/schemas/capacity-test-result.json",
        "title": "smartlogger capacity test result",
        **root,
        "$defs": defs,
    }


def _schema(tp: Any, defs: dict[str, Any]) -> dict[str, Any]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return {"anyOf": [_schema(inner[0], defs), {"type": "null"}]}
    if origin is list:
        (item,) = typing.get_args(tp)
        return {"type": "array", "items": _schema(item, defs)}
    if origin is dict:
        _, vt = typing.get_args(tp)
        return {"type": "object", "additionalProperties": _schema(vt, defs)}
    if dataclasses.is_dataclass(tp):
        name = typing.cast(type, tp).__name__
        if name not in defs:
            defs[name] = {}  # placeholder against recursion
            hints = typing.get_type_hints(tp)
            props = {}
            for f in dataclasses.fields(tp):
                s = dict(_schema(hints[f.name], defs))
                s["description"] = f.metadata.get("doc", "")
                props[f.name] = s
            defs[name] = {
                "type": "object",
                "description": (tp.__doc__ or "").strip().splitlines()[0],
                "properties": props,
                "required": [f.name for f in dataclasses.fields(tp)
                             if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING],
                "additionalProperties": False,
            }
        if tp is TestResult:
            root: dict[str, Any] = defs.pop(name)
            return root
        return {"$ref": f"#/$defs/{name}"}
    simple = {float: "number", int: "integer", str: "string", bool: "boolean"}
    return {"type": simple[tp]}
