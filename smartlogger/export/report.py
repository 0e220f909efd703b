"""The customer report's content: one model, built from the result object, rendered twice.

Owns ``ReportContent`` (the verdict first, then who / where / which battery / how the test was
set up / what was found, the per-block table, the weakest blocks with the ranking rule, the
exceedances with h:mm:ss durations) and ``report_content(result)`` that builds it from an
``analysis.results.TestResult`` (its ``verdict`` and ``report_info``). The workbook's Summary
sheet (``export.string_report``) and the PDF (``export.pdf``) both render this model, so the
two say the same thing in the same words.

Colours are decided here once, by disposition: ``fail`` red, ``pass`` green,
``not_determined`` (a lower bound, "not determined further") a neutral blue-grey and never red.

``watch_annex(record, result, tz)`` turns the live watch record (``watch.json``, written by
``smartlogger test watch --folder``) into the annex "Live watch": when the watch ran, the alarm,
and the first block to reach its end voltage as seen live against the pulled logs.

Does not own any judgement (``analysis.verdict``) or any layout.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from smartlogger.analysis.results import BlockResult, TestResult
from smartlogger.analysis.verdict import ensure_verdict, pct_text
from smartlogger.quantities import format_duration

#: Fill colours (RGB hex) by disposition / verdict; the legend says what each means.
COLOURS = {"fail": "FF7C80", "pass": "A9D08E", "not_determined": "DDE4EE", "no_result": "FFFFFF",
           "inconclusive": "DDE4EE", "warning": "FFEB84"}
#: Words of each disposition in the block table.
DISPOSITION_WORDS = {"fail": "FAIL", "pass": "pass", "not_determined": "not determined", "no_result": "no result"}
LEGEND = ("Result: FAIL (red) = measured capacity below the acceptance criterion: replace. pass (green) = at or "
          "above it. not determined (blue-grey) = lower bound, not determined further: the block outlasted the "
          "test, its capacity is at least the '≥' figure; it is not a failure. ")

_HOW = {"voltage_step": "the blocks' load step", "load_profile": "the load file's time stamps",
        "firmware_event": "the loggers' discharge events", "threshold": "the start-voltage threshold",
        "end_voltage": "the string end voltage", "data_end": "the end of the logs"}
_END = {"end_voltage": "the string reached its end voltage", "load_removed": "the load was removed",
        "data_ended": "the logs ended"}


@dataclass(frozen=True)
class BlockRow:
    """One block of the report's table: typed values (for the workbook) and their texts."""

    position: int
    serial: str
    label: str
    capacity_pct: float | None
    lower_bound: bool
    capacity_text: str  # "42.1 %", "≥ 63.0 %" or "-"
    delivered_ah: float | None
    time_to_end: str  # h:mm:ss or "not reached"
    min_v: float | None
    max_c: float | None
    float_v: float | None
    resistance: str  # "4.61 ± 0.05 (+2 %)" or "-"
    resistance_status: str
    resistance_mohm: float | None
    resistance_uncertainty_mohm: float | None
    exceedances: str  # "2 red; longest 1:18:38" or "-"
    evidence: str
    disposition: str  # fail / pass / not_determined / no_result
    recommendation: str
    rank: int | None

    @property
    def result_word(self) -> str:
        return DISPOSITION_WORDS.get(self.disposition, self.disposition or "-")


@dataclass(frozen=True)
class ExceedanceLine:
    position: int
    serial: str
    what: str  # "voltage low (alarm)"
    colour: str  # yellow / red
    start: str  # local time
    duration: str  # h:mm:ss
    beyond_alarm: str  # h:mm:ss
    worst: str  # "9.700 V"


@dataclass(frozen=True)
class ReportContent:
    """Everything the customer report says (see module docstring)."""

    test_id: str
    title: str
    outcome: str  # pass / fail / inconclusive
    sentence: str
    criterion: str
    ranking_rule: str
    sections: list[tuple[str, list[tuple[str, str]]]]
    weakest: list[str]
    blocks: list[BlockRow]
    exceedances: list[ExceedanceLine]
    notes: list[str]
    evidence_statement: str
    verified_only: bool
    markers: list[str]
    tz: str
    legend: str = LEGEND
    excluded: list[str] = field(default_factory=list)
    #: The same, as (file, serial, reason, why) for a table.
    excluded_rows: list[tuple[str, str, str, str]] = field(default_factory=list)
    string_end_voltage_v: float | None = None
    start_ms: int | None = None
    end_ms: int | None = None
    #: The annex "Live watch" (label, value), empty without a watch record (``watch_annex``).
    watch: list[tuple[str, str]] = field(default_factory=list)

    @property
    def outcome_word(self) -> str:
        return self.outcome.upper()

    @property
    def footer(self) -> str:
        return f"Capacity test {self.test_id or '-'}"


def _zone(name: str) -> dt.tzinfo:
    if not name or name == "UTC":
        return dt.UTC
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError):  # pragma: no cover - test.json checks the zone when written
        return dt.UTC


def local_time(t_ms: int, tz: str) -> str:
    t = dt.datetime.fromtimestamp(t_ms / 1000.0, tz=_zone(tz))
    return t.strftime("%Y-%m-%d %H:%M:%S")


def _num(x: float | None, nd: int, unit: str = "") -> str:
    return "-" if x is None else f"{x:.{nd}f}{' ' + unit if unit else ''}"


def _join(*parts: str, sep: str = ", ") -> str:
    return sep.join(p for p in parts if p) or "-"


def block_row(b: BlockResult) -> BlockRow:
    cap = "-" if b.capacity_pct is None else pct_text(b.capacity_pct, b.lower_bound, 1)
    ir = "-"
    if b.resistance_mohm is not None:
        ir = f"{b.resistance_mohm:.2f}"
        if b.resistance_uncertainty_mohm is not None:
            ir += f" ± {b.resistance_uncertainty_mohm:.2f}"
        if b.resistance_change_pct is not None:
            ir += f" ({b.resistance_change_pct:+.0f} %)"
    exc = "-"
    if b.exceedances:
        counts = [f"{n} {w}" for n, w in ((b.red, "red"), (b.yellow, "yellow")) if n]
        longest = max(e.duration_s for e in b.exceedances)
        exc = f"{', '.join(counts)}; longest {format_duration(longest)}"
    return BlockRow(
        position=b.position, serial=b.serial, label=b.label, capacity_pct=b.capacity_pct, lower_bound=b.lower_bound,
        capacity_text=cap, delivered_ah=b.delivered_ah,
        time_to_end=format_duration(b.time_to_end_s) if b.reached_end_voltage else "not reached",
        min_v=b.min_voltage_v, max_c=b.max_temperature_c, float_v=b.float_voltage_v, resistance=ir,
        resistance_status=b.resistance_status or "", resistance_mohm=b.resistance_mohm,
        resistance_uncertainty_mohm=b.resistance_uncertainty_mohm, exceedances=exc, evidence=b.evidence.status,
        disposition=b.disposition, recommendation=b.recommendation, rank=b.rank)


def report_content(result: TestResult, info: dict[str, str] | None = None) -> ReportContent:
    """The report of ``result``; ``info`` (test.json's ``report_info``) replaces the result's own."""
    r = ensure_verdict(result)
    v = r.verdict
    assert v is not None
    i = dict(r.report_info)
    if info:
        i.update(info)
    tz = i.get("tz") or "UTC"
    d, c = r.discharge, r.capacity
    blocks = sorted(r.blocks, key=lambda b: (b.position or 1 << 30, b.serial))
    rows = [block_row(b) for b in blocks]
    floats = [b.float_voltage_v for b in blocks if b.float_voltage_v is not None]
    cells = {b.cells for b in blocks}
    end_block = blocks[0].end_voltage_v if blocks and len({b.end_voltage_v for b in blocks}) == 1 else None
    method = {"time_adjusted": "IEEE 450/1188 time-adjusted (actual time / rated time × K_T)",
              "rate_adjusted": "rate-adjusted from the datasheet (IEEE 450)",
              "none": "none (no rated time or datasheet)"}.get(c.method, c.method)
    rating = i.get("rating") or (f"rated time {format_duration(c.rated_time_s)}" if c.rated_time_s else "-")
    sections: list[tuple[str, list[tuple[str, str]]]] = [
        ("Test", [
            ("Site", _join(i.get("site", ""), i.get("site_address", ""), i.get("customer", ""))),
            ("System / string", _join(i.get("system", ""), i.get("string", ""), sep=" / ")),
            ("Technician / company", _join(i.get("technician", ""), i.get("company", ""), sep=" / ")),
            ("Date", f"{local_time(d.start_ms, tz)} ({tz})"),
            ("Test id", r.test_id or "-"),
        ]),
        ("Battery", [
            ("Make / model", _join(i.get("battery.make", ""), i.get("battery.model", ""), sep=" / ")),
            ("Chemistry", i.get("battery.chemistry") or (blocks[0].block_type if blocks else "-")),
            ("Block voltage / cells", _join(f"{i['battery.block_voltage_v']} V" if i.get("battery.block_voltage_v")
                                            else "", "/".join(map(str, sorted(cells))) + " cells" if cells else "",
                                            sep=" / ")),
            ("Rated capacity", f"{i['battery.rated_ah']} Ah" if i.get("battery.rated_ah") else
             (f"{blocks[0].rated_ah:g} Ah (logger configuration)" if blocks else "-")),
            ("Rating used", f"{rating}; rating at {c.rating_reference_c:g} °C"),
            ("Blocks", f"{len(r.blocks)} logged of {r.string_blocks}"
                       + (f"; positions {', '.join(map(str, r.missing_positions))} not logged"
                          if r.missing_positions else "")),
        ]),
        ("Test setup", [
            ("Load", _join(r.load, i.get("load_setup", ""))),
            ("Load current from", i.get("load_source") or "as stated for the analysis"),
            ("End voltage", f"{d.end_v_per_cell:.3f} V/cell" + (f", {end_block:.2f} V/block" if end_block else "")
                            + f", {d.string_end_voltage_v:.1f} V/string"),
            ("Cutoff", i.get("cutoff") or "-"),
            ("Acceptance criterion", v.criterion),
        ]),
        ("Before the test", [
            ("Float V per block", f"{min(floats):.2f} - {max(floats):.2f} V (median of the 10 min before the "
                                        "load)" if floats else "not logged"),
            ("Ambient temperature", f"{i['ambient_c']} °C" if i.get("ambient_c") else "not stated"),
            ("Block temp. at start", _num(c.temperature_c, 1, "°C")),
        ]),
        ("Discharge", [
            ("Start", local_time(d.start_ms, tz)),
            ("End", local_time(d.end_ms, tz)),
            ("Duration", format_duration(d.load_time_s if d.load_time_s is not None else d.duration_s)
             + (f" under load ({len(d.interruptions)} interruption(s))" if d.interruptions else "")),
            ("How found", f"start from {_HOW.get(d.start_method, d.start_method)}; end: "
                          f"{_END.get(d.end_reason, d.end_reason)} ({_HOW.get(d.end_method, d.end_method)})"),
            ("Delivered", f"{d.delivered_ah:.1f} Ah at {d.mean_current_a:.1f} A mean"),
            ("String capacity", ("-" if c.capacity_pct is None else pct_text(c.capacity_pct, c.lower_bound, 1))
             + (" (lower bound, not determined further)" if c.lower_bound and c.capacity_pct is not None else "")
             + f"; method {method}"),
            ("Temp. correction", f"K_T {c.k_t:.3f} at {c.temperature_c:.1f} °C" if c.k_t is not None
             and c.temperature_c is not None else "none"),
        ]),
    ]
    by_rank = sorted((b for b in blocks if b.rank is not None), key=lambda b: b.rank or 0)
    weakest = [f"{b.rank}. block {b.position or '-'} ({b.serial}): "
               f"{'-' if b.capacity_pct is None else pct_text(b.capacity_pct, b.lower_bound, 1)}"
               + (f", {b.min_voltage_v:.2f} V lowest" if b.min_voltage_v is not None else "")
               + f" - {DISPOSITION_WORDS.get(b.disposition, b.disposition)}" for b in by_rank[:5]]
    exc: list[ExceedanceLine] = []
    for b in blocks:
        for e in b.exceedances:
            exc.append(ExceedanceLine(
                b.position, b.serial, f"{e.quantity} {e.side} ({e.level})", e.severity, local_time(e.start_ms, tz),
                format_duration(e.duration_s), format_duration(e.alarm_duration_s) if e.alarm_duration_s else "-",
                f"{e.worst:.3f} V" if e.quantity == "voltage" else f"{e.worst:.1f} °C"))
    title = f"Capacity test {r.test_id}".strip()
    return ReportContent(
        test_id=r.test_id, title=title, outcome=v.outcome, sentence=v.sentence, criterion=v.criterion,
        ranking_rule=v.ranking_rule, sections=sections, weakest=weakest, blocks=rows, exceedances=exc,
        notes=list(r.warnings), evidence_statement=r.evidence.statement, verified_only=r.evidence.verified_only,
        markers=list(r.markers), tz=tz, string_end_voltage_v=d.string_end_voltage_v, start_ms=d.start_ms,
        end_ms=d.end_ms,
        excluded=[f"{f.file} ({f.serial or 'unknown logger'}): {f.reason}: {f.message}" for f in r.excluded],
        excluded_rows=[(f.file, f.serial or "-", f.reason, f.message) for f in r.excluded])


def _first_live_crossing(record: dict[str, Any]) -> tuple[int, int, int] | None:
    """(phone ms, position, mV) of the first discharge sample at or below the watch's end voltage."""
    end_mv = float(record.get("options", {}).get("end_v") or 0) * 1000.0
    best: tuple[int, int, int] | None = None
    for b in record.get("blocks", []):
        for t, mv in b.get("samples", []):
            if mv <= end_mv:
                if best is None or t < best[0]:
                    best = (int(t), int(b["position"]), int(mv))
                break
    return best


def watch_annex(record: dict[str, Any], result: TestResult, tz: str) -> list[tuple[str, str]]:
    """The annex "Live watch" of a watch record (``watch.json``, docs/LIVE.md) beside ``result``:
    when the watch started and ended, what it heard, the end alarm, and the first block to reach
    its end voltage as seen live and as found in the pulled logs. ``ValueError`` if ``record``
    is not a watch record."""
    if not isinstance(record, dict) or record.get("format") != "smartlogger-watch":
        raise ValueError("not a smartlogger watch record (format smartlogger-watch)")
    serials = {b.position: b.serial for b in result.blocks if b.position}

    def block(pos: int | None) -> str:
        return "-" if pos is None else f"block {pos}" + (f" ({serials[pos]})" if pos in serials else "")

    def when(ms: Any) -> str:
        return "-" if ms is None else local_time(int(ms), tz)

    opts = record.get("options") or {}
    rows: list[tuple[str, str]] = [
        ("Watch started", f"{when(record.get('started_ms') or record.get('first_seen_ms'))} ({tz})"),
        ("Watch ended", when(record.get("ended_ms"))),
        ("Watched for", f"end voltage {float(opts.get('end_v') or 0):.2f} V/block"
                        + (f", alarm {float(opts['guard_v']):.2f} V above it" if opts.get("guard_v") else "")
                        + f"; blocks heard: {len(record.get('blocks') or [])}"),
        ("Adverts", f"{record.get('accepted', 0)} accepted"
                    + "".join(f", {n} rejected ({why})" for why, n in sorted((record.get("rejected") or {}).items()))),
    ]
    alarm = record.get("alarm")
    if alarm:
        late = (alarm["fired_ms"] - alarm["sample_ms"]) / 1000.0
        rows.append(("End alarm", f"{block(alarm.get('position'))} at {float(alarm['v']):.3f} V (alarm at "
                                  f"{float(alarm['alarm_v']):.3f} V), measured {when(alarm['sample_ms'])}, "
                                  f"raised {late:.1f} s later"
                                  + (f", {format_duration(alarm['elapsed_s'])} into the discharge"
                                     if alarm.get("elapsed_s") is not None else "")))
    else:
        rows.append(("End alarm", "did not fire during the watch"))
    live = _first_live_crossing(record)
    rows.append(("First at end V, live", "no block reached the end voltage while watched" if live is None else
                 f"{block(live[1])} at {when(live[0])} ({live[2] / 1000:.3f} V)"))
    reached = [b for b in result.blocks if b.reached_end_voltage and b.time_to_end_s is not None]
    logs = min(reached, key=lambda b: b.time_to_end_s or 0.0) if reached else None
    logs_ms = None if logs is None else result.discharge.start_ms + round((logs.time_to_end_s or 0.0) * 1000)
    rows.append(("First at end V, logs", "no block reached its end voltage" if logs is None else
                 f"{block(logs.position)} at {when(logs_ms)}"))
    if live is not None and logs is not None and logs_ms is not None:
        dt_s = (live[0] - logs_ms) / 1000.0
        same = "the same block" if live[1] == logs.position else \
            f"different blocks (live {live[1]}, logs {logs.position}: the logs decide)"
        rows.append(("Live vs logs", f"{same}; live {abs(dt_s):.0f} s {'later' if dt_s >= 0 else 'earlier'}"))
    return rows


def lower_bounds_coloured_as_fail(content: ReportContent, fills: dict[str, str]) -> int:
    """How many lower-bound blocks a renderer's ``fills`` (serial -> RGB of its capacity cell) shows in
    the failure colour: the benchmark's and the tests' check that a bound is never a failure."""
    return sum(1 for b in content.blocks if b.lower_bound and fills.get(b.serial, "").upper() == COLOURS["fail"])


__all__ = ["COLOURS", "LEGEND", "BlockRow", "ExceedanceLine", "ReportContent", "block_row", "local_time",
           "lower_bounds_coloured_as_fail", "report_content", "watch_annex"]
