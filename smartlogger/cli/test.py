"""``smartlogger test``: a capacity test's folder, its metadata and its analysis (thin wrappers).

One test, one place: a folder holds the pulled logfiles, ``test.json`` (what is stated about the
test: site, string, battery, load, rated time, ...; ``smartlogger.testinfo``) and, once
analysed, ``result.json``.

- ``test new DIR [--site ... --string ... --blocks N --load 20A --rated-time 3h ...]`` creates
  the folder's ``test.json``; ``test set DIR ...`` changes it; ``test show DIR`` prints it.
- ``test analyze DIR`` analyses the logfiles with the metadata of ``DIR/test.json``, keeps the
  result in ``DIR/result.json`` and prints a summary (or the JSON). Options given fill in what
  ``test.json`` does not state and are recorded there; an option that contradicts it is an error
  naming both values. Files that cannot be used are left out, named, and the rest analysed.
  ``test analyze FILES...`` (or several folders) analyses without a folder to keep anything in.
- ``test trend`` compares results of several tests; ``test schema`` prints the results schema.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table

from smartlogger.analysis.analyze import AnalysisOptions
from smartlogger.analysis.inputs import (
    Load,
    LoadCsvFormat,
    MetadataError,
    TestMetadata,
    load_from_quantity,
    read_datasheet_csv,
    read_load_csv,
)
from smartlogger.analysis.loading import analyze_files, expand_paths
from smartlogger.analysis.results import TestResult, json_schema, to_dict
from smartlogger.analysis.testfolder import folder_files, metadata_of, stale_reason
from smartlogger.analysis.trend import block_trends
from smartlogger.analysis.verdict import RANKING_RULE, ensure_verdict
from smartlogger.cli.logfile import trust_option
from smartlogger.cli.options import CURRENT, POWER, DurationType
from smartlogger.cli.watch import watch
from smartlogger.logfile.trust import load_trust
from smartlogger.quantities import (
    Current,
    Power,
    Voltage,
    format_duration,
    parse_resistance,
    parse_voltage,
)
from smartlogger.testinfo import (
    RESULT_FILE,
    TEST_FILE,
    StatedOptions,
    TestInfo,
    TestInfoError,
    adopt_options,
)


@click.group("test")
def test() -> None:
    """A capacity test: its folder and metadata, the analysis (alignment, exceedances, capacity
    and SOH per block) and trends across tests."""


def _console() -> Console:
    # Piped or captured output gets room for the whole table; a terminal keeps its width.
    return Console() if sys.stdout.isatty() else Console(width=120)


def _test_folder(paths: tuple[str, ...]) -> Path | None:
    """The test folder when the command names exactly one folder."""
    if len(paths) == 1 and Path(paths[0]).is_dir():
        return Path(paths[0])
    return None


# --------------------------------------------------------------------------- analyze


@test.command("analyze")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--load", "load", type=CURRENT, metavar="CURRENT",
              help="constant current, e.g. 20A or 500mA (a bare number is amperes)")
@click.option("--load-power", type=POWER, metavar="POWER", help="constant string power, e.g. 4800W or 4.8kW")
@click.option("--load-csv", type=click.Path(exists=True, dir_okay=False),
              help="measured load vs time CSV: time since the load was applied (t_s) or clock time stamps "
                   "(aligned with the logs), and the string current (A) or power (W)")
@click.option("--load-time-column", metavar="NAME", help="time column of --load-csv (default: time, t_s, ...)")
@click.option("--load-time-format", default="auto", show_default=True, metavar="FORMAT",
              help="auto | seconds | elapsed | iso | epoch | epoch_ms | excel | a strptime pattern")
@click.option("--load-timezone", metavar="ZONE",
              help="zone of --load-csv time stamps that carry none (e.g. Europe/Berlin, UTC, +01:00)")
@click.option("--load-current-column", metavar="NAME", help="current column of --load-csv (A; unit from the header)")
@click.option("--load-power-column", metavar="NAME", help="power column of --load-csv (W, whole string)")
@click.option("--load-decimal", type=click.Choice([".", ","]), help="decimal separator of --load-csv (default: detected)")
@click.option("--load-out-of-order", type=click.Choice(["sort", "refuse"]), default="sort", show_default=True,
              help="rows of --load-csv slightly out of time order: sort them (reported) or refuse")
@click.option("--rated-time", type=DurationType("h"), metavar="DURATION",
              help="rated time at this load to the end voltage, e.g. 3h, 90min (a bare number is hours)")
@click.option("--datasheet", type=click.Path(exists=True, dir_okay=False),
              help="rated discharge table CSV (see docs/CAPACITY.md)")
@click.option("--end-voltage", metavar="VOLTAGE",
              help="end voltage per cell, block or string: 1.75V/cell, 10.5V/block, 252V/string (a bare number "
                   "is per cell; default by chemistry)")
@click.option("--blocks", type=click.IntRange(1, 10000), help="blocks in the string (to report missing loggers)")
@click.option("--reference-temp", type=float, default=None,
              help="temperature of the --rated-time rating, C [default: 25]")
@click.option("--method", type=click.Choice(["auto", "time_adjusted", "rate_adjusted"]), default="auto",
              show_default=True)
@click.option("--ir-reference", metavar="RESISTANCE",
              help="internal resistance reference, e.g. the datasheet's 4.5mOhm (default: the string's median "
                   "block)")
@click.option("--ir-warn", default=20.0, show_default=True, type=click.FloatRange(0, 1000), metavar="PCT",
              help="internal resistance warning above the reference by this %")
@click.option("--ir-fail", default=50.0, show_default=True, type=click.FloatRange(0, 1000), metavar="PCT",
              help="internal resistance fail above the reference by this %")
@click.option("--test-id", default=None, help="test id to put in the results")
@click.option("--acceptance", default=80.0, show_default=True, type=click.FloatRange(1, 100), metavar="PCT",
              help="acceptance criterion: capacity at least PCT % of rated (IEEE 450: 80); below it a measured "
                   "block fails and is to be replaced")
@click.option("--json", "as_json", is_flag=True, help="print the results JSON")
@click.option("--out", type=click.Path(dir_okay=False), help="also write the results JSON to this file")
@trust_option
def analyze(paths: tuple[str, ...], load: Current | None, load_power: Power | None, load_csv: str | None,
            load_time_column: str | None, load_time_format: str, load_timezone: str | None,
            load_current_column: str | None, load_power_column: str | None, load_decimal: str | None,
            load_out_of_order: str, rated_time: float | None, datasheet: str | None, end_voltage: str | None,
            blocks: int | None, reference_temp: float | None, method: str, ir_reference: str | None,
            ir_warn: float, ir_fail: float, test_id: str | None, acceptance: float, as_json: bool, out: str | None,
            trust_file: str | None) -> None:
    """Analyse the capacity test in DIR (a test folder: its result is kept in DIR/result.json),
    or in FILES (.slog files; several pulls of one logger are merged).

    Every file is verified first: tampered and unreadable files are excluded and named, unsigned
    or simulated files are never merged into a logger's signed (or hardware) data, and the
    result says whether it rests on verified evidence only.
    """
    if sum(x is not None for x in (load, load_power, load_csv)) > 1:
        raise MetadataError("load", "give only one of --load, --load-power, --load-csv")
    if rated_time is not None and datasheet is not None:
        raise MetadataError("rated_time", "give either --rated-time or --datasheet, not both")
    folder = _test_folder(paths)
    err = Console(stderr=True)
    profile: Load | None = None
    if load_csv is not None:
        csv_fmt = LoadCsvFormat(time_column=load_time_column, time_format=load_time_format,
                                timezone=load_timezone, current_column=load_current_column,
                                power_column=load_power_column, decimal=load_decimal,
                                disorder=load_out_of_order)  # type: ignore[arg-type]
        prof = read_load_csv(load_csv, csv_fmt)
        for note in prof.notes:
            err.print(f"note: {load_csv}: {escape(note)}")
        profile = prof
    ev: Voltage | None = parse_voltage(end_voltage) if end_voltage is not None else None
    stated = StatedOptions(load=load if load is not None else load_power, rated_time_s=rated_time,
                           datasheet=datasheet, end_voltage=ev, blocks=blocks, test_id=test_id,
                           reference_temperature_c=reference_temp)
    if folder is not None:
        recorded = TestInfo.read(folder)
        info, changed = adopt_options(recorded or TestInfo(), stated, folder)
        if profile is not None and info.load:
            raise TestInfoError("--load-csv", f"{load_csv} conflicts with the test's load {info.load} "
                                              f"in {folder / TEST_FILE}; change the test with "
                                              f"'smartlogger test set {folder} ...', or leave the option out")
        meta = metadata_of(info, folder, load=profile)
        if changed or recorded is None:
            info.with_client_key().write(folder)
            if not as_json:
                err.print(f"recorded in {folder / TEST_FILE}: {', '.join(changed) or 'a new test'}")
    else:
        the_load = profile if profile is not None else (
            load_from_quantity(stated.load) if stated.load is not None else None)
        if the_load is None:
            raise MetadataError("load", "give one of --load, --load-power, --load-csv")
        meta = TestMetadata(
            the_load, rated_time_s=rated_time,
            datasheet=read_datasheet_csv(datasheet) if datasheet is not None else None,
            end_voltage=ev, string_blocks=blocks,
            reference_temperature_c=reference_temp if reference_temp is not None else 25.0,
            test_id=test_id or "")
    files = expand_paths(paths)
    trust = load_trust(trust_file) if trust_file else None
    if ir_fail < ir_warn:
        raise MetadataError("ir_fail", f"--ir-fail {ir_fail:g} % is below --ir-warn {ir_warn:g} %")
    opts = AnalysisOptions(method=method,  # type: ignore[arg-type]
                           resistance_reference_mohm=(parse_resistance(ir_reference) * 1000.0
                                                      if ir_reference is not None else None),
                           resistance_warn_pct=ir_warn, resistance_fail_pct=ir_fail, replace_below_pct=acceptance)
    with Progress(console=err, transient=True, disable=as_json or len(files) < 8) as progress:
        task = progress.add_task("verifying and loading logfiles", total=len(files))

        def each() -> Iterator[tuple[str, Path]]:
            progress.reset(task)
            for f in files:
                yield f.name if folder is not None else str(f), f
                progress.advance(task)

        # The logs around their tests (years of float left out), whole if the analysis needs it.
        _, result = analyze_files(each, meta, opts, trust=trust, test_id=meta.test_id or None)
    if folder is not None:
        result.report_info = info.report_info()
    text = result.to_json()
    if folder is not None:
        (folder / RESULT_FILE).write_text(text + "\n", encoding="utf-8")
    if out is not None:
        Path(out).write_text(text + "\n", encoding="utf-8")
    if as_json:
        click.echo(text)
        return
    print_summary(result, _console())
    if folder is not None:
        _console().print(f"result kept in {folder / RESULT_FILE}")


# --------------------------------------------------------------------------- new / set / show


def _info_options(f: Any) -> Any:
    """The options of ``test new`` and ``test set``: everything ``test.json`` holds."""
    opts = [
        click.option("--name", help="what the test is called, e.g. 'Annual capacity test 2026'"),
        click.option("--test-id", help="the test id written to the loggers by NFC (<= 32 bytes)"),
        click.option("--site", help="site name, e.g. 'Data centre North'"),
        click.option("--customer", help="the site's customer (who owns the battery)"),
        click.option("--address", help="the site's address or room"),
        click.option("--system", help="battery system, e.g. 'UPS A'"),
        click.option("--system-kind", help="kind of system, e.g. UPS, telecom, switchgear"),
        click.option("--string", "string_name", help="string name, e.g. 'String 1'"),
        click.option("--blocks", type=click.IntRange(1, 10000), help="blocks in the string"),
        click.option("--technician", help="who does the test"),
        click.option("--company", help="the service company"),
        click.option("--make", help="battery make"),
        click.option("--model", help="battery model"),
        click.option("--chemistry", type=click.Choice(["vrla", "flooded", "nicd", "lifepo4"]), help="battery chemistry"),
        click.option("--block-voltage", type=click.FloatRange(1, 48), help="nominal block voltage, V"),
        click.option("--rated-ah", type=click.FloatRange(0, 100000, min_open=True), help="rated capacity, Ah"),
        click.option("--load", type=CURRENT, metavar="CURRENT", help="constant current of the test, e.g. 20A"),
        click.option("--load-power", type=POWER, metavar="POWER", help="constant string power instead, e.g. 4.8kW"),
        click.option("--rated-time", type=DurationType("h"), metavar="DURATION",
                     help="rated time at this load to the end voltage, e.g. 3h"),
        click.option("--datasheet", type=click.Path(exists=True, dir_okay=False),
                     help="rated discharge table CSV (copied into the folder)"),
        click.option("--end-voltage", metavar="VOLTAGE",
                     help="end voltage per cell, block or string: 1.75V/cell, 10.5V/block, 252V/string"),
        click.option("--reference-temp", type=float, help="temperature of the --rated-time rating, C"),
        click.option("--tz", help="the site's time zone (IANA, e.g. Europe/Berlin)"),
        click.option("--notes", help="free notes for the report"),
        click.option("--ambient", type=click.FloatRange(-50, 80), help="ambient (room) temperature before the test, C"),
        click.option("--load-setup", help="how the load was applied, e.g. 'load bank', 'real load'"),
        click.option("--load-source", help="where the load current figure comes from, e.g. 'load bank display'"),
        click.option("--cutoff", help="what stops the test, e.g. 'load bank end-voltage cutoff at 252 V'"),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


_TEXT_FIELDS = {"name": ("name",), "test_id": ("test_id",), "site": ("site", "name"), "customer": ("site", "customer"),
                "address": ("site", "address"), "system": ("system", "name"), "system_kind": ("system", "kind"),
                "string_name": ("string", "name"), "technician": ("technician",), "company": ("company",),
                "make": ("battery", "make"), "model": ("battery", "model"), "chemistry": ("battery", "chemistry"),
                "block_voltage": ("battery", "block_voltage_v"), "rated_ah": ("battery", "rated_ah"),
                "tz": ("tz",), "notes": ("notes",), "ambient": ("ambient_c",), "load_setup": ("load_setup",),
                "load_source": ("load_source",), "cutoff": ("cutoff",)}


def _apply(info: TestInfo, folder: Path, kw: dict[str, Any], *, overwrite: bool) -> tuple[TestInfo, list[str]]:
    if kw.get("load") is not None and kw.get("load_power") is not None:
        raise click.UsageError("give --load (a current) or --load-power (a power), not both")
    if kw.get("rated_time") is not None and kw.get("datasheet") is not None:
        raise click.UsageError("give either --rated-time or --datasheet, not both")
    stated = StatedOptions(load=kw["load"] if kw.get("load") is not None else kw.get("load_power"),
                           rated_time_s=kw.get("rated_time"), datasheet=kw.get("datasheet"),
                           end_voltage=parse_voltage(kw["end_voltage"]) if kw.get("end_voltage") else None,
                           blocks=kw.get("blocks"),
                           reference_temperature_c=kw.get("reference_temp"))
    info, changed = adopt_options(info, stated, folder, overwrite=overwrite)
    for key, path in _TEXT_FIELDS.items():
        value = kw.get(key)
        if value is None:
            continue
        target: Any = info
        for part in path[:-1]:
            target = getattr(target, part)
        if getattr(target, path[-1]) != value:
            setattr(target, path[-1], value)
            changed.append(f"{'.'.join(path)}: {value}")
    info.check(str(folder / TEST_FILE))
    return info, changed


@test.command("new")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@_info_options
def new(folder: Path, **kw: Any) -> None:
    """Create the test folder FOLDER with its test.json (pull the logs into it later).

    Everything given here is used by 'test analyze FOLDER', 'export xlsx --test FOLDER',
    'sync' (which creates the site, system, string and test on the server) and the report.
    """
    if (folder / TEST_FILE).exists():
        raise TestInfoError("test", f"{folder / TEST_FILE} exists already: change it with "
                                    f"'smartlogger test set {folder} ...'")
    folder.mkdir(parents=True, exist_ok=True)
    info, _ = _apply(TestInfo(), folder, kw, overwrite=False)
    path = info.with_client_key().write(folder)
    click.echo(f"created {path}")
    _show(TestInfo.read(folder) or info, folder)


@test.command("set")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@_info_options
def set_(folder: Path, **kw: Any) -> None:
    """Change what FOLDER/test.json states; the test's result must then be analysed again."""
    info = TestInfo.read(folder)
    if info is None:
        raise TestInfoError("test", f"{folder} has no {TEST_FILE}: create it with 'smartlogger test new {folder} ...'")
    info, changed = _apply(info, folder, kw, overwrite=True)
    if not changed:
        click.echo("nothing changed")
        return
    info.with_client_key().write(folder)
    click.echo(f"changed in {folder / TEST_FILE}: {', '.join(changed)}")
    if (folder / RESULT_FILE).exists():
        click.echo(f"the result in {folder / RESULT_FILE} is out of date: run 'smartlogger test analyze {folder}'")


@test.command("show")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="print test.json and the result's state as JSON")
def show(folder: Path, as_json: bool) -> None:
    """What FOLDER/test.json states, the logfiles in the folder and whether its result is current."""
    info = TestInfo.read(folder)
    if info is None:
        raise TestInfoError("test", f"{folder} has no {TEST_FILE}: create it with 'smartlogger test new {folder} ...'")
    if as_json:
        click.echo(json.dumps({"test": info.to_dict(), "result": _result_state(folder, info)}, indent=1))
        return
    _show(info, folder)


def _result_state(folder: Path, info: TestInfo) -> str:
    result_file = folder / RESULT_FILE
    if not result_file.exists():
        return "not analysed"
    result = TestResult.from_json(result_file.read_text(encoding="utf-8"))
    why = stale_reason(result, folder_files(folder), info, folder)
    return f"out of date: {why}" if why else "current"


def _show(info: TestInfo, folder: Path) -> None:
    rows = [("test", f"{info.name or '-'} (id {info.test_id or '-'})"),
            ("site", ", ".join(x for x in (info.site.name, info.site.customer, info.site.address) if x) or "-"),
            ("system", " ".join(x for x in (info.system.name, f"({info.system.kind})" if info.system.kind else "") if x) or "-"),
            ("string", f"{info.string.name or '-'}, {info.string.blocks or '?'} blocks"),
            ("battery", " ".join(x for x in (info.battery.make, info.battery.model, info.battery.chemistry,
                                             f"{info.battery.block_voltage_v:g} V" if info.battery.block_voltage_v else "",
                                             f"{info.battery.rated_ah:g} Ah" if info.battery.rated_ah else "") if x) or "-"),
            ("load", info.load or "-"),
            ("rating", f"rated time {info.rated_time}" if info.rated_time else
             f"datasheet {info.datasheet}" if info.datasheet else "datasheet (inline)" if info.datasheet_csv else "-"),
            ("end voltage", str(info.parsed_end_voltage()) if info.parsed_end_voltage() else "by chemistry"),
            ("people", " / ".join(x for x in (info.technician, info.company) if x) or "-"),
            ("time zone", info.tz or "UTC"),
            ("setup", " / ".join(x for x in (info.load_setup, info.load_source, info.cutoff,
                                             f"ambient {info.ambient_c:g} C" if info.ambient_c is not None else "")
                                 if x) or "-"),
            ("logfiles", str(len(list(folder.glob("*.slog"))))),
            ("result", _result_state(folder, info))]
    if info.notes:
        rows.append(("notes", info.notes))
    for k, v in rows:
        click.echo(f"{k:<12} {v}")


# --------------------------------------------------------------------------- trend


@test.command("trend")
@click.argument("results", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--by", type=click.Choice(["serial", "position", "both"]), default="both", show_default=True,
              help="identify a block by its logger, its string position, or both")
@click.option("--ir-warn", default=20.0, show_default=True, type=click.FloatRange(0, 1000), metavar="PCT",
              help="internal resistance warning above the block's own baseline by this %")
@click.option("--ir-fail", default=50.0, show_default=True, type=click.FloatRange(0, 1000), metavar="PCT",
              help="internal resistance fail above the block's own baseline by this %")
@click.option("--json", "as_json", is_flag=True, help="print the trends as JSON")
def trend(results: tuple[str, ...], by: str, ir_warn: float, ir_fail: float, as_json: bool) -> None:
    """Capacity, SOH and internal resistance of each block across several tests: test folders
    (their result.json) or results JSON files."""
    loaded = []
    for p in map(Path, results):
        f = p / RESULT_FILE if p.is_dir() else p
        if not f.exists():
            raise MetadataError("results", f"{p} has no {RESULT_FILE}: run 'smartlogger test analyze {p}' first")
        loaded.append(TestResult.from_json(f.read_text(encoding="utf-8")))
    trends = block_trends(loaded, by=by, warn_pct=ir_warn, fail_pct=ir_fail)  # type: ignore[arg-type]
    if as_json:
        click.echo(json.dumps([to_dict(t) for t in trends], indent=2))
        return
    table = Table(title=f"{len(trends)} blocks over {len(loaded)} tests")
    for col in ("block", "tests", "% capacity, oldest first", "%/year", "latest %", "below 80 % at",
                "IR mΩ, oldest first", "IR vs baseline"):
        table.add_column(col)
    for t in trends:
        caps = ", ".join(_pct(p.capacity_pct, p.lower_bound) + ("" if p.evidence == "verified" else "*")
                         for p in t.points)
        when = "-" if t.below_limit_ms is None else str(np.datetime64(t.below_limit_ms, "ms").astype("datetime64[D]"))
        slope = "-" if t.slope_pct_per_year is None else f"{t.slope_pct_per_year:+.1f}"
        irs = ", ".join("-" if p.resistance_mohm is None else f"{p.resistance_mohm:.2f}" for p in t.points)
        change = "-" if t.resistance_change_pct is None else _ir_change(t.resistance_change_pct, t.resistance_status)
        table.add_row(t.key, str(len(t.points)), caps, slope, _pct(t.latest_capacity_pct), when, irs, change)
    _console().print(table)
    if any(p.evidence != "verified" for t in trends for p in t.points):
        _console().print("* not verified evidence: that test's data for the block is simulated, unsigned or "
                         "unchecked (see each result's evidence)")


@test.command("schema")
def schema() -> None:
    """Print the JSON schema of the analysis results."""
    click.echo(json.dumps(json_schema(), indent=2))


def _ir_change(pct: float, status: str | None) -> str:
    colour = {"warning": "yellow", "fail": "red"}.get(status or "")
    text = f"{pct:+.0f} % ({status})"
    return f"[{colour}]{text}[/]" if colour else text


def _ir(mohm: float | None, u: float | None, status: str | None) -> str:
    if mohm is None:
        return "-"
    text = f"{mohm:.2f}" + (f"±{u:.2f}" if u is not None else "")
    colour = {"warning": "yellow", "fail": "red"}.get(status or "")
    return f"[{colour}]{text}[/]" if colour else text


def _pct(x: float | None, lower: bool = False) -> str:
    return "-" if x is None else f"{'>=' if lower else ''}{x:.1f}"


def print_verdict(r: TestResult, console: Console) -> None:
    """The verdict first: PASS / FAIL / INCONCLUSIVE, the criterion and the reason in one sentence."""
    v = ensure_verdict(r).verdict
    assert v is not None
    colour = {"pass": "green", "fail": "red"}.get(v.outcome, "yellow")
    console.print(f"[bold {colour}]{v.outcome.upper()}[/] against {escape(v.criterion)}")
    console.print(escape(v.sentence))


def print_summary(r: TestResult, console: Console) -> None:
    """The technician's summary: the verdict, the discharge, the string capacity, one row per block."""
    print_verdict(r, console)
    if r.markers:
        console.print(f"[bold magenta]{' '.join(r.markers)} DATA[/] - not evidence from real hardware")
    ev = r.evidence
    colour = "green" if ev.verified_only else "red" if ev.status in ("unsigned", "unchecked") else "magenta"
    console.print(f"[bold {colour}]Evidence:[/] {escape(ev.statement)}")
    d, c = r.discharge, r.capacity
    console.print(
        f"Load: {r.load}; discharge {format_duration(d.duration_s)} ({d.end_reason.replace('_', ' ')}), "
        f"{d.delivered_ah:.1f} Ah, end voltage {d.end_v_per_cell:.3f} V/cell"
    )
    how = {"voltage_step": "the blocks' load step", "load_profile": "the load file's time stamps",
           "firmware_event": "the loggers' discharge events", "threshold": "the start-voltage threshold",
           "end_voltage": "the string end voltage", "data_end": "the end of the logs"}
    unc = f" (+/- {d.start_uncertainty_s:.1f} s)" if d.start_uncertainty_s is not None else ""
    console.print(f"Start from {how.get(d.start_method, d.start_method)}{unc}; end from "
                  f"{how.get(d.end_method, d.end_method)}"
                  + (f"; {len(d.interruptions)} interruption(s), time under load {format_duration(d.load_time_s)}"
                     if d.interruptions else ""))
    if c.capacity_pct is not None:
        console.print(
            f"String capacity ({c.method.replace('_', '-')}): {_pct(c.capacity_pct, c.lower_bound)} %"
            f"{' (lower bound: not determined further)' if c.lower_bound else ''} "
            f"(K_T {c.k_t}, {c.temperature_c} C, rated time {format_duration(c.rated_time_s)})"
        )
    table = Table(title=f"{len(r.blocks)} of {r.string_blocks} blocks")
    for col in ("pos", "serial", "to end", "Ah", "%cap", "SOH%", "rank", "IR mΩ", "yellow", "red", "evidence",
                "notes"):
        table.add_column(col, justify="right" if col not in ("serial", "notes") else "left",
                         no_wrap=col != "notes")
    for b in r.blocks:
        notes = []
        if b.disposition == "fail":
            notes.append("[red]replace[/]")
        elif b.disposition == "not_determined":
            notes.append("not determined")
        if b.gaps:
            notes.append(f"{len(b.gaps)} gap")
        if b.clock.uncertainty_ms is None:
            notes.append("no clock ref")
        elif b.clock.note:
            notes.append("clock placed")
        table.add_row(
            str(b.position or "-"), b.serial, format_duration(b.time_to_end_s), f"{b.delivered_ah:.1f}",
            _pct(b.capacity_pct, b.lower_bound), _pct(b.soh_pct, b.lower_bound), str(b.rank or "-"),
            _ir(b.resistance_mohm, b.resistance_uncertainty_mohm, b.resistance_status),
            f"[yellow]{b.yellow}[/]" if b.yellow else "0", f"[red]{b.red}[/]" if b.red else "0",
            b.evidence.status if b.evidence.status == "verified" else f"[bold]{b.evidence.status}[/]",
            ", ".join(notes),
        )
    console.print(table)
    if any(b.disposition == "fail" for b in r.blocks):
        console.print(f"[red]replace[/]: measured capacity below {r.verdict.acceptance_pct if r.verdict else 80:g} % "
                      "of rated")
    if any(b.lower_bound for b in r.blocks):
        console.print(">= : lower bound: the block outlasted the test (not determined further)")
    console.print(f"rank: {RANKING_RULE}")
    for b in r.blocks:
        if b.clock.note:  # a clock that disagreed with itself: how the block was placed
            console.print(f"[yellow]clock:[/] {b.serial} (block {b.position}): {escape(b.clock.note)}")
    if r.missing_positions:
        console.print(f"[red]missing loggers at positions {', '.join(map(str, r.missing_positions))}[/]")
    if r.resistance_reference_mohm is not None:
        rule = r.resistance_rule
        console.print(f"IR: internal resistance from the load steps; reference {r.resistance_reference_mohm:.2f} mΩ "
                      f"({r.resistance_reference.replace('_', ' ')}), warning above +{rule.get('warn_pct', 0):g} %, "
                      f"fail above +{rule.get('fail_pct', 0):g} %")
    if r.alignment_uncertainty_ms is not None:
        console.print(f"alignment uncertainty <= {r.alignment_uncertainty_ms:.0f} ms")
    for w in r.warnings:
        console.print(f"[yellow]warning:[/] {w}")
    for f in r.excluded:
        console.print(f"[red]excluded:[/] {escape(f.file)} ({f.serial or 'unknown logger'}): "
                      f"{f.reason}: {escape(f.message)}")


test.add_command(watch)  # ``test watch``: the live watch, in its own module
