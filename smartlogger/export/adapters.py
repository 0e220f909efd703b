"""Thin adapters from logfiles and analysis results to the exporters' plain inputs.

Owns the translation, nothing else: ``logger_export_inputs`` (one logfile ->
samples, exceedances, evidence), ``longterm_inputs`` (a blackbox logfile ->
``LongtermData``), ``string_report_inputs`` (an ``analysis.results.TestResult`` +
logs -> report inputs) and ``report_inputs_from_logfiles`` (a test's logfiles, and its
result if there is one -> everything the string report needs, running the
analysis otherwise). Every one takes data: logfile bytes (or a read ``Logfile``)
and objects; a path is accepted as a convenience, and ``load_test_dir`` is the
folder convenience of the CLI on top of ``report_inputs_from_logfiles``. The API calls the
same functions with the bytes from its file store.

Imports of ``logfile`` and ``analysis`` are here only, so the writers stay
testable with plain values. Verification never raises: a file that fails is
exported with its failure written in red on the Summary/Evidence sheets. A test's
logfiles are loaded as evidence (``analysis.loading.load_test_files``): tampered and
unreadable files, and a logger's unsigned or simulated files beside its signed ones,
are excluded from the analysis, the charts and the Data sheet, and named.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from smartlogger.analysis.align import align_block
from smartlogger.analysis.analyze import analyze_test
from smartlogger.analysis.exceedances import find_exceedances
from smartlogger.analysis.inputs import BlockLog, TestMetadata, load_from_quantity
from smartlogger.analysis.loading import LoadedTest, load_test_files
from smartlogger.analysis.results import TestResult
from smartlogger.analysis.testfolder import folder_files, metadata_of, stale_reason
from smartlogger.analysis.verdict import ensure_verdict
from smartlogger.errors import ExportError
from smartlogger.export.inputs import (
    BlockOutcome,
    DailyRow,
    EvidenceRow,
    ExceedanceRow,
    LoggerSamples,
    LongtermData,
    SampleSeries,
    StringTestOutcome,
)
from smartlogger.export.longterm import daily_rows
from smartlogger.export.report import report_content, watch_annex
from smartlogger.logfile import Logfile, load_events, load_samples, read_logfile, verify_logfile
from smartlogger.logfile.evidence import Authority
from smartlogger.logfile.verify import VerifyReport
from smartlogger.model import (
    ConfigChange,
    DailySummary,
    DischargeSummary,
    Level,
    LoggerConfig,
    Quantity,
    Side,
    Thresholds,
)
from smartlogger.quantities import (
    Current,
    Power,
    Voltage,
    parse_duration,
    parse_load,
    parse_voltage,
)
from smartlogger.testinfo import RESULT_FILE, WATCH_FILE, StatedOptions, TestInfo, adopt_options

#: A logfile as the adapters take it: its bytes, or the file read already, or (a convenience
#: of the command line) its path.
LogfileSource = bytes | Logfile | str | os.PathLike[str]


def _read(source: LogfileSource, name: str | None) -> tuple[Logfile, str]:
    """The read logfile and the name it goes by in the workbook (file name, else the serial)."""
    if isinstance(source, Logfile):
        return source, name or source.identity.serial
    if isinstance(source, bytes):
        lf = read_logfile(source)
        return lf, name or lf.identity.serial
    return read_logfile(source), name or Path(source).name


@dataclass
class LoggerExportInputs:
    """Everything ``write_logger_workbook`` takes, read from one logfile."""

    series: LoggerSamples
    exceedances: list[ExceedanceRow]
    evidence: EvidenceRow


def evidence_from_report(report: VerifyReport, file: str) -> EvidenceRow:
    """An ``EvidenceRow`` from a ``logfile.verify.VerifyReport``."""
    status = report.status
    if report.verified:
        result = "VERIFIED: hardware evidence (production authority), signatures valid, chain intact"
    elif status == "simulated":
        result = (f"SIMULATED: intact, certified by the TEST authority ({report.provenance} logger): "
                  "not evidence")
    elif status == "unsigned":
        result = "UNSIGNED: intact as far as can be seen, but nothing signed it: not evidence"
    else:
        kinds = ", ".join(sorted(report.problem_kinds())) or status
        result = f"{status.upper()}: {kinds}: not evidence"
    details: list[tuple[str, str]] = [
        ("Status", status),
        ("Verdict", report.verdict),
        ("Signed", "yes" if report.signed else "no"),
        ("Certificate", _yes_no(report.certificate_valid)),
        ("Signatures", _yes_no(report.signatures_valid)),
        ("Hash chain", _yes_no(report.chain_intact)),
        ("Format", report.format_version or "-"),
    ]
    for st in report.streams:
        over = ("" if st.oldest_on_device is None or st.oldest_on_device <= st.first_seq
                else f"; overwritten before seq {st.oldest_on_device}")
        details.append((f"Stream {st.name}", f"seq {st.first_seq}..{st.next_seq - 1}, {st.records} records{over}"))
    if report.config_changes:
        details.append(("Config changes", str(len(report.config_changes))))
    if report.clock_jumps:
        details.append(("Clock jumps", str(len(report.clock_jumps))))
    for p in report.problems[:20]:
        where = f" (seq {p.seq})" if p.seq is not None else f" (byte {p.offset})" if p.offset is not None else ""
        details.append((f"Problem: {p.kind}", p.message + where))
    for w in report.warnings[:10]:
        details.append(("Warning", w))
    return EvidenceRow(file=file, sha256=report.sha256, serial=report.serial, verified=report.verified,
                       result=result, key_fingerprint=report.device_key or "",
                       markers=tuple(report.markers), details=tuple(details), status=status,
                       verdict=report.verdict)


def evidence_rows_of(loaded: LoadedTest) -> list[EvidenceRow]:
    """One ``EvidenceRow`` per file of a loaded test: used files first (in block order), then
    the excluded ones, each saying whether and why it was not used."""
    rows = []
    for f in loaded.files:
        name = Path(f.file).name
        report = loaded.reports.get(f.file)
        if report is not None:
            row = evidence_from_report(report, name)
        else:
            row = EvidenceRow(name, f.sha256 or "", f.serial or "", False, f"{f.status.upper()}: {f.message}",
                              status=f.status, verdict=f.message)
        rows.append(replace(row, used=f.used, excluded_because="" if f.used else f"{f.reason}: {f.message}"))
    return rows


def _yes_no(v: bool | None) -> str:
    return "-" if v is None else "valid" if v else "INVALID"


def exceedances_of(series: SampleSeries, t_ms: np.ndarray | None = None) -> list[ExceedanceRow]:
    """Classify the exceedances of one logger with the analysis rule (yellow/red)."""
    t = np.asarray(series.t_ms if t_ms is None else t_ms, dtype=np.float64)
    out: list[ExceedanceRow] = []
    th = series.config.thresholds
    for q, values in ((Quantity.VOLTAGE, np.asarray(series.mv) / 1000.0),
                      (Quantity.TEMPERATURE, np.asarray(series.dc) / 10.0)):
        for iv in find_exceedances(t, values, q, th):
            out.append(_row_from_interval(series.identity.serial, series.config, q, iv.side, iv.level,
                                          int(iv.start_ms), iv.duration_s, iv.worst, iv.severity,
                                          iv.reason))
    return out


def _row_from_interval(serial: str, config: LoggerConfig, q: Quantity, side: Side, level: Level,
                       start_ms: int, duration_s: float, worst: float, severity: str,
                       reason: str) -> ExceedanceRow:
    scale = 1000.0 if q is Quantity.VOLTAGE else 10.0
    return ExceedanceRow(serial, q, side, level, start_ms, start_ms + round(duration_s * 1000),
                         round(worst * scale), config.thresholds.level(q, side, level),
                         config.block_position, severity, reason)


def _thresholds_history(changes: Sequence[ConfigChange]) -> list[tuple[int, Thresholds]]:
    return [(c.t_ms, c.config.thresholds) for c in sorted(changes, key=lambda c: c.t_ms)]


def _config_of(lf: Logfile) -> tuple[LoggerConfig, list[ConfigChange]]:
    changes: list[ConfigChange] = list(lf.config_history)
    if not changes:
        raise ExportError(f"{lf.identity.serial}: the logfile holds no configuration "
                          "(no config change record); cannot draw thresholds")
    return changes[-1].config, changes


def logger_export_inputs(source: LogfileSource, *, name: str | None = None,
                         trust: Sequence[Authority] | None = None) -> LoggerExportInputs:
    """Read and verify one logfile (``trust``: the verifier's trust list); samples in device time
    (as the logger recorded them). ``name``: what the workbook calls the file (default: its file
    name, else the serial)."""
    lf, name = _read(source, name)
    report = verify_logfile(lf, trust=trust)
    t, mv, dc = load_samples(lf)
    if len(t) == 0:
        raise ExportError(f"{name}: the logfile holds no samples")
    config, changes = _config_of(lf)
    order = np.argsort(t, kind="stable")
    if np.any(order != np.arange(len(t))):
        # Clock sets can move device time backwards; the sheet must be in time order.
        t, mv, dc = t[order], mv[order], dc[order]
    series = LoggerSamples(lf.identity, config, t, mv, dc, _thresholds_history(changes))
    return LoggerExportInputs(series, exceedances_of(series), evidence_from_report(report, name))


def longterm_inputs(source: LogfileSource, *, tz: str = "UTC", name: str | None = None,
                    trust: Sequence[Authority] | None = None) -> LongtermData:
    """A blackbox logfile as ``LongtermData``: daily rows from the summary stream's
    ``DailySummary`` records where present, otherwise computed from the samples."""
    lf, name = _read(source, name)
    report = verify_logfile(lf, trust=trust)
    config, changes = _config_of(lf)
    t, mv, dc = load_samples(lf)
    samples = None
    if len(t):
        order = np.argsort(t, kind="stable")
        samples = LoggerSamples(lf.identity, config, t[order], mv[order], dc[order],
                                _thresholds_history(changes))
    summaries = [rec for st in lf.streams for raw in st.records
                 for rec in [raw.record] if isinstance(rec, DailySummary)]
    discharges = sorted({(d.start_ms, d.end_ms): d for st in lf.streams for raw in st.records
                         for d in [raw.record] if isinstance(d, DischargeSummary)}.values(),
                        key=lambda d: d.start_ms)
    daily: list[DailyRow]
    if summaries:
        daily = [DailyRow.of(d) for d in sorted({d.day_start_ms: d for d in summaries}.values(),
                                                key=lambda d: d.day_start_ms)]
    elif samples is not None:
        daily = daily_rows(samples, tz)
    else:
        raise ExportError(f"{name}: no samples and no daily summaries in the logfile")
    return LongtermData(lf.identity, config, daily, load_events(lf), discharges, samples,
                        evidence_from_report(report, name))


#: A log spanning more than this (ms) is charted around its test only (``string_report_inputs``):
#: two days, so a test pulled the day after it was set up is charted whole, as it always was.
REPORT_WHOLE_LOG_MS = 2 * 86_400_000
#: ... from this long before the discharge (the float level before it) ...
REPORT_BEFORE_MS = 3_600_000
#: ... to this long after it (the recovery and the start of the recharge).
REPORT_AFTER_MS = 2 * 3_600_000


def string_report_inputs(result: TestResult, logs: Sequence[BlockLog],
                         evidence: Sequence[EvidenceRow] = ()
                         ) -> tuple[StringTestOutcome, list[LoggerSamples], list[ExceedanceRow]]:
    """Report inputs from an ``analysis.results.TestResult`` and the ``BlockLog``s analysed.

    Sample times are put on true (phone-aligned) time with the analysis' own clock
    fit, so the charts and the Data sheet line up with the result's times. A log longer than
    ``REPORT_WHOLE_LOG_MS`` (a logger left on the string, its float history pulled with the test)
    is charted from ``REPORT_BEFORE_MS`` before the discharge to ``REPORT_AFTER_MS`` after it.
    """
    if not isinstance(result, TestResult):
        raise TypeError("result must be an analysis TestResult")
    by_serial: dict[str, BlockLog] = {}
    for log in logs:
        if not isinstance(log, BlockLog):
            raise TypeError("logs must be analysis BlockLogs")
        by_serial[log.serial] = log
    series: list[LoggerSamples] = []
    exceed: list[ExceedanceRow] = []
    blocks: list[BlockOutcome] = []
    d = result.discharge
    clip = ([d.start_ms - REPORT_BEFORE_MS, d.end_ms + REPORT_AFTER_MS]
            if d is not None and d.start_ms is not None and d.end_ms is not None else None)
    for b in result.blocks:
        found = by_serial.get(b.serial)
        if found is None:
            raise ExportError(f"string report: no log for block {b.position} ({b.serial})")
        log = found
        aligned = align_block(log)
        # Rounded a chunk at a time into the true times' own buffer (align_block made it for this
        # call alone), and reordered only if rounding could have unordered them (true_ms is
        # sorted): the series costs its 8 bytes of time per sample and shares the log's values.
        true, mv, dc = aligned.true_ms, aligned.mv, aligned.dc
        t = true.view(np.int64) if true.flags.owndata and true.flags.writeable else np.empty(true.size, np.int64)
        for i in range(0, t.size, 1 << 18):
            t[i:i + (1 << 18)] = np.round(true[i:i + (1 << 18)])
        del true, aligned
        if t.size > 1 and bool(np.any(t[1:] < t[:-1])):
            order = np.argsort(t, kind="stable")
            t, mv, dc = t[order], mv[order], dc[order]
        if clip is not None and t.size and int(t[-1]) - int(t[0]) > REPORT_WHOLE_LOG_MS:
            lo, hi = np.searchsorted(t, clip)
            t, mv, dc = t[lo:hi], mv[lo:hi], dc[lo:hi]
        series.append(LoggerSamples(log.identity, log.config, t, mv, dc))
        status = "alarm" if b.replace or b.red else "warning" if b.yellow else "ok"
        note = "; ".join([*(["lower bound (end voltage not reached)"] if b.lower_bound else []),
                          *b.warnings])
        blocks.append(BlockOutcome(b.position, b.serial, b.capacity_pct, b.delivered_ah, b.time_to_end_s,
                                   None if b.min_voltage_v is None else round(b.min_voltage_v * 1000),
                                   None if b.max_temperature_c is None else round(b.max_temperature_c * 10),
                                   status, b.label, note, b.resistance_mohm,
                                   b.resistance_uncertainty_mohm, b.resistance_status, evidence=b.evidence.status))
        for e in b.exceedances:
            exceed.append(_row_from_interval(b.serial, log.config, Quantity(e.quantity), Side(e.side),
                                             Level(e.level), e.start_ms, e.duration_s, e.worst,
                                             e.severity, e.reason))
    by_rank = {s: i for i, s in enumerate(result.ranking)}
    weakest = [b.position for b in sorted(result.blocks, key=lambda b: by_rank.get(b.serial, 10**9))][:3]
    cap = result.capacity
    method = {"time_adjusted": "IEEE 450/1188 time-adjusted (actual time / rated time x K_T)",
              "rate_adjusted": "rate-adjusted from the datasheet (IEEE 450 method 2)",
              "none": "none: no rated time or datasheet given"}.get(cap.method, cap.method)
    if cap.lower_bound:
        method += "; lower bound (end voltage not reached)"
    tc = (f"K_T = {cap.k_t:.3f} at {cap.temperature_c:.1f} C (rating at {cap.rating_reference_c:g} C)"
          if cap.k_t is not None and cap.temperature_c is not None else "none")
    d = result.discharge
    failed = cap.capacity_pct is not None and cap.capacity_pct < 80.0
    verdict = ensure_verdict(result).verdict
    outcome = StringTestOutcome(
        test_id=result.test_id, result=verdict.outcome.upper() if verdict is not None else
        "FAIL" if failed or any(b.replace for b in result.blocks) else "PASS",
        capacity_pct=cap.capacity_pct, method=method, duration_s=d.duration_s, load=result.load,
        temperature_correction=tc, blocks=blocks, weakest=weakest, start_ms=d.start_ms,
        end_v_per_cell=d.end_v_per_cell,
        notes=[f"Discharge ended: {d.end_reason.replace('_', ' ')}", *result.warnings],
        start_found=_how_found(d.start_method, d.end_method),
        resistance_reference=(
            f"{result.resistance_reference_mohm:.2f} mOhm ({result.resistance_reference.replace('_', ' ')}); "
            f"warning above +{result.resistance_rule.get('warn_pct', 0):g} %, fail above "
            f"+{result.resistance_rule.get('fail_pct', 0):g} %" if result.resistance_reference_mohm is not None
            else ""),
        evidence_status=result.evidence.status, evidence_statement=result.evidence.statement,
        verified_only=result.evidence.verified_only,
        excluded=[(f.file, f.serial or "", f.reason, f.message) for f in result.excluded],
        report=report_content(result),
    )
    return outcome, series, exceed


#: Keys of the phone's test metadata (in the logfiles) the customer report shows.
_PHONE_REPORT_KEYS = ("site", "system", "string", "technician", "company", "customer", "tz", "notes")

_HOW = {"voltage_step": "the blocks' load step", "load_profile": "the load file's time stamps",
        "firmware_event": "the loggers' discharge events", "threshold": "the start-voltage threshold",
        "end_voltage": "the string end voltage", "data_end": "the end of the logs"}


def _how_found(start: str, end: str) -> str:
    return f"start from {_HOW.get(start, start)}; end from {_HOW.get(end, end)}"


@dataclass
class TestReportInputs:
    """Everything the string report needs, from a test's logfiles (and its result)."""

    __test__ = False

    outcome: StringTestOutcome
    series: list[LoggerSamples]
    exceedances: list[ExceedanceRow]
    evidence: list[EvidenceRow]
    result: TestResult | None = None  # the analysis result the outcome is of


def report_inputs_from_logfiles(logfiles: Iterable[tuple[str, LogfileSource]], *, result: TestResult | None = None,
                                meta: TestMetadata | None = None, load: Current | Power | None = None,
                                rated_time_s: float | None = None, end_v_per_cell: float | None = None,
                                end_voltage: Voltage | None = None, where: str = "test",
                                trust: Sequence[Authority] | None = None,
                                registered_keys: dict[str, str] | None = None,
                                test_id: str | None = None, max_samples: int | None = None) -> TestReportInputs:
    """Read and verify a test's logfiles (``(name, bytes or Logfile)``; the name is what the
    Evidence sheet calls the file) and put them with the test's result.

    Loading is ``analysis.loading.load_test_files`` (``trust``, ``registered_keys``): tampered
    and unreadable files are excluded and named, and no logger's signed data is merged with its
    unsigned or simulated files; the Evidence sheet lists every file, used or not.
    ``result`` is used as is when given (what the API stored, or a current ``result.json``);
    otherwise the test is analysed with ``meta`` (a test folder's ``test.json``), or with the
    load and rated time taken from the arguments or else from the used logfiles' test metadata
    (keys ``load``, ``rated_time``,
    ``end_voltage`` (per cell, block or string) or ``end_v_per_cell``, ``test_id``).
    ``where`` names the test in error messages. ``max_samples``: most samples the loaded logs may
    hold (``analysis.inputs.TooManySamples`` above it; the API's per-test budget).
    """
    # With the result known, the report needs each log around its test only: a logger left on the
    # string for years brings its whole float history, which the charts do not show (see
    # ``string_report_inputs``); without one, the test is analysed here on the whole logs.
    loaded = load_test_files(logfiles, trust=trust, registered_keys=registered_keys, test_id=test_id,
                             window=result is not None, max_samples=max_samples)
    if not loaded.logs and not loaded.excluded:
        raise ExportError(f"{where}: no logfiles")
    logs = loaded.logs
    evidence = evidence_rows_of(loaded)
    test_meta: dict[str, str] = {}
    for lf in loaded.used_logfiles():  # the phone's metadata of the files whose data is used (never signed)
        for k, v in lf.metadata.test.items():
            test_meta.setdefault(k, v)
    if result is None and meta is not None:
        result = analyze_test(logs, meta, excluded=loaded.excluded)
    if result is None:
        if load is None and test_meta.get("load"):
            load = parse_load(test_meta["load"], field="logfile test metadata 'load'")
        if load is None:
            raise ExportError(f"{where}: no {RESULT_FILE} and no load given (use --load, e.g. 50A)")
        if rated_time_s is None and test_meta.get("rated_time"):
            rated_time_s = parse_duration(test_meta["rated_time"], field="logfile test metadata 'rated_time'",
                                          default_unit="h")
        ev: float | None = None
        if end_voltage is None and end_v_per_cell is None:
            if test_meta.get("end_voltage"):
                end_voltage = parse_voltage(test_meta["end_voltage"], field="logfile test metadata 'end_voltage'")
            elif "end_v_per_cell" in test_meta:
                end_voltage = parse_voltage(test_meta["end_v_per_cell"],
                                            field="logfile test metadata 'end_v_per_cell'")
        elif end_voltage is None:
            ev = end_v_per_cell
        meta = TestMetadata(load_from_quantity(load), rated_time_s=rated_time_s,
                            end_v_per_cell=ev, end_voltage=end_voltage, test_id=test_meta.get("test_id", ""))
        result = analyze_test(logs, meta, excluded=loaded.excluded)
    outcome, series, exceed = string_report_inputs(result, logs, evidence)
    # The series share the logs' values and have their own (true) times: the logs' device times
    # can go now, before the workbook or PDF is built (a long log's 8 bytes per sample).
    del logs
    loaded.logs.clear()
    if test_meta.get("site"):
        outcome = StringTestOutcome(**{**outcome.__dict__, "site": test_meta["site"]})
    # What the phone's metadata says of the test fills in what the result does not carry.
    said = {k: v for k, v in test_meta.items() if k in _PHONE_REPORT_KEYS and v and k not in result.report_info}
    if said:
        outcome = replace(outcome, report=report_content(result, {**result.report_info, **said}))
    return TestReportInputs(outcome, series, exceed, evidence, result)


def load_test_dir(directory: str | os.PathLike[str], *, load: Current | Power | None = None,
                  rated_time_s: float | None = None, end_v_per_cell: float | None = None,
                  end_voltage: Voltage | None = None, trust: Sequence[Authority] | None = None,
                  registered_keys: dict[str, str] | None = None) -> TestReportInputs:
    """``report_inputs_from_logfiles`` of the test folder ``directory`` (the command line's folder).

    One test, one place: the folder's ``result.json`` (kept there by ``smartlogger test analyze
    DIR``) is used while it is current, i.e. computed from exactly the logfiles now in the
    folder and the metadata its ``test.json`` states now; a stale one is refused
    (``ExportError`` saying what changed). An option that contradicts ``test.json`` is refused
    naming both values. Without a result the test is analysed from ``test.json`` and the
    options.
    """
    d = Path(directory)
    if not d.is_dir():
        raise ExportError(f"{d}: not a directory")
    files = sorted(d.glob("*.slog"))
    if not files:
        raise ExportError(f"{d}: no .slog logfiles in the directory")
    info = TestInfo.read(d)
    if end_v_per_cell is not None:
        if end_voltage is not None:
            raise ExportError("give the end voltage once (--end-voltage)")
        end_voltage, end_v_per_cell = Voltage(end_v_per_cell, "cell"), None
    if info is not None:
        # Options may fill in what test.json leaves open, never contradict it.
        info, _ = adopt_options(info, StatedOptions(load=load, rated_time_s=rated_time_s, end_voltage=end_voltage), d)
    result_file = d / RESULT_FILE
    result: TestResult | None = None
    if result_file.exists():
        result = TestResult.from_json(result_file.read_text(encoding="utf-8"))
        why = stale_reason(result, folder_files(d), info, d)
        if why:
            raise ExportError(f"{result_file} is out of date: {why}; run 'smartlogger test analyze {d}' again")
        if info is None and load is not None and load_from_quantity(load).describe() != result.load:
            raise ExportError(f"--load {load_from_quantity(load).describe()} conflicts with the analysed load "
                              f"{result.load} in {result_file}; run 'smartlogger test analyze {d}' with the load "
                              "you mean")
    meta = metadata_of(info, d) if result is None and info is not None and info.load else None
    report = report_inputs_from_logfiles(((f.name, f) for f in files), result=result, meta=meta, load=load,
                                         rated_time_s=rated_time_s, end_voltage=end_voltage, where=str(d),
                                         trust=trust, registered_keys=registered_keys,
                                         test_id=(info.test_id or None) if info else None)
    site = " / ".join(x for x in (info.site.name, info.system.name, info.string.name) if x) if info else ""
    if site:
        report.outcome = replace(report.outcome, site=site)
    if info is not None and report.outcome.report is not None and report.result is not None:
        # Who tested where as test.json states it now (editing it does not make the result stale).
        report.outcome = replace(report.outcome, report=report_content(report.result, info.report_info()))
    return with_watch_annex(report, d)


def with_watch_annex(report: TestReportInputs, folder: Path) -> TestReportInputs:
    """``report`` with the annex "Live watch" when ``folder`` holds a watch record (``watch.json``,
    ``smartlogger test watch --folder``); unchanged without one (``watch_annex_rows``)."""
    if report.outcome.report is None or report.result is None:
        return report
    rows = watch_annex_rows(folder, report.result, report.outcome.report.tz)
    if rows:
        report.outcome = replace(report.outcome, report=replace(report.outcome.report, watch=rows))
    return report


def watch_annex_rows(folder: Path, result: TestResult, tz: str) -> list[tuple[str, str]]:
    """The annex "Live watch" of the watch record in ``folder`` (empty without one); ``ExportError``
    for a watch.json that is not a readable watch record."""
    path = folder / WATCH_FILE
    if not path.is_file():
        return []
    try:
        return watch_annex(json.loads(path.read_text(encoding="utf-8")), result, tz)
    except (ValueError, KeyError, TypeError) as err:
        raise ExportError(f"{path}: not a readable watch record ({err}); move it away to make the report "
                          "without the live watch annex") from None
