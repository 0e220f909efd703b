"""``smartlogger test``: analyse a capacity test (thin wrapper over ``smartlogger.analysis``).

``test analyze DIR_OR_FILES (--load 20A | --load-power 4800W | --load-csv FILE)
[--rated-time 3h | --datasheet FILE] [--end-voltage V/cell] [--json]`` loads the
``.slog`` files, runs ``analysis.analyze.analyze_test`` and prints a summary
table (or the results JSON). ``test schema`` prints the results JSON schema.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table

from smartlogger.analysis.analyze import AnalysisOptions, analyze_test
from smartlogger.analysis.inputs import (
    Load,
    LoadCsvFormat,
    MetadataError,
    TestMetadata,
    load_from_quantity,
    read_datasheet_csv,
    read_load_csv,
)
from smartlogger.analysis.loading import expand_paths, load_test_files
from smartlogger.analysis.results import TestResult, json_schema, to_dict
from smartlogger.analysis.trend import block_trends
from smartlogger.cli.logfile import trust_option
from smartlogger.cli.options import CURRENT, POWER, DurationType
from smartlogger.logfile.trust import load_trust
from smartlogger.quantities import Current, Power, format_duration, parse_resistance, parse_voltage


@click.group("test")
def test() -> None:
    """Analyse a capacity test: alignment, exceedances, capacity and SOH per block."""


def _load(load: Current | None, load_power: Power | None, load_csv: str | None,
          csv_fmt: LoadCsvFormat) -> Load:
    given = [x for x in (load, load_power, load_csv) if x is not None]
    if len(given) != 1:
        raise MetadataError("load", "give exactly one of --load, --load-power, --load-csv")
    if load is not None:
        return load_from_quantity(load)
    if load_power is not None:
        return load_from_quantity(load_power)
    assert load_csv is not None
    prof = read_load_csv(load_csv, csv_fmt)
    for note in prof.notes:
        click.echo(f"note: {load_csv}: {note}", err=True)
    return prof


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
@click.option("--blocks", type=int, help="blocks in the string (to report missing loggers)")
@click.option("--reference-temp", type=float, default=25.0, show_default=True,
              help="temperature of the --rated-time rating, C")
@click.option("--method", type=click.Choice(["auto", "time_adjusted", "rate_adjusted"]), default="auto",
              show_default=True)
@click.option("--ir-reference", metavar="RESISTANCE",
              help="internal resistance reference, e.g. the datasheet's 4.5mOhm (default: the string's median "
                   "block)")
@click.option("--ir-warn", default=20.0, show_default=True, type=click.FloatRange(0, 1000), metavar="PCT",
              help="internal resistance warning above the reference by this %")
@click.option("--ir-fail", default=50.0, show_default=True, type=click.FloatRange(0, 1000), metavar="PCT",
              help="internal resistance fail above the reference by this %")
@click.option("--test-id", default="", help="test id to put in the results")
@click.option("--json", "as_json", is_flag=True, help="print the results JSON")
@click.option("--out", type=click.Path(dir_okay=False), help="also write the results JSON to this file")
@trust_option
def analyze(paths: tuple[str, ...], load: Current | None, load_power: Power | None, load_csv: str | None,
            load_time_column: str | None, load_time_format: str, load_timezone: str | None,
            load_current_column: str | None, load_power_column: str | None, load_decimal: str | None,
            load_out_of_order: str, rated_time: float | None, datasheet: str | None, end_voltage: str | None,
            blocks: int | None, reference_temp: float, method: str, ir_reference: str | None, ir_warn: float,
            ir_fail: float, test_id: str, as_json: bool, out: str | None, trust_file: str | None) -> None:
    """Analyse the capacity test in DIR_OR_FILES (.slog files; several pulls of a logger are merged).

    Every file is verified first: tampered and unreadable files are excluded and named, unsigned
    or simulated files are never merged into a logger's signed (or hardware) data, and the
    result says whether it rests on verified evidence only.
    """
    csv_fmt = LoadCsvFormat(time_column=load_time_column, time_format=load_time_format, timezone=load_timezone,
                            current_column=load_current_column, power_column=load_power_column,
                            decimal=load_decimal, disorder=load_out_of_order)  # type: ignore[arg-type]
    the_load = _load(load, load_power, load_csv, csv_fmt)
    if rated_time is not None and datasheet is not None:
        raise MetadataError("rated_time", "give either --rated-time or --datasheet, not both")
    meta = TestMetadata(
        the_load,
        rated_time_s=rated_time,
        datasheet=read_datasheet_csv(datasheet) if datasheet is not None else None,
        end_voltage=parse_voltage(end_voltage) if end_voltage is not None else None,
        string_blocks=blocks, reference_temperature_c=reference_temp,
        test_id=test_id,
    )
    files = expand_paths(paths)
    trust = load_trust(trust_file) if trust_file else None
    err = Console(stderr=True)
    with Progress(console=err, transient=True, disable=as_json or len(files) < 8) as progress:
        task = progress.add_task("verifying and loading logfiles", total=len(files))

        def each() -> Iterator[Path]:
            for f in files:
                yield f
                progress.advance(task)

        loaded = load_test_files(each(), trust=trust)
    if ir_fail < ir_warn:
        raise MetadataError("ir_fail", f"--ir-fail {ir_fail:g} % is below --ir-warn {ir_warn:g} %")
    opts = AnalysisOptions(method=method,  # type: ignore[arg-type]
                           resistance_reference_mohm=(parse_resistance(ir_reference) * 1000.0
                                                      if ir_reference is not None else None),
                           resistance_warn_pct=ir_warn, resistance_fail_pct=ir_fail)
    result = analyze_test(loaded.logs, meta, opts, excluded=loaded.excluded)
    text = result.to_json()
    if out is not None:
        Path(out).write_text(text + "\n", encoding="utf-8")
    if as_json:
        click.echo(text)
    else:
        # Piped or captured output gets room for the whole table; a terminal keeps its width.
        print_summary(result, Console() if sys.stdout.isatty() else Console(width=120))


@test.command("trend")
@click.argument("results", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--by", type=click.Choice(["serial", "position", "both"]), default="both", show_default=True,
              help="identify a block by its logger, its string position, or both")
@click.option("--ir-warn", default=20.0, show_default=True, type=click.FloatRange(0, 1000), metavar="PCT",
              help="internal resistance warning above the block's own baseline by this %")
@click.option("--ir-fail", default=50.0, show_default=True, type=click.FloatRange(0, 1000), metavar="PCT",
              help="internal resistance fail above the block's own baseline by this %")
@click.option("--json", "as_json", is_flag=True, help="print the trends as JSON")
def trend(results: tuple[str, ...], by: str, ir_warn: float, ir_fail: float, as_json: bool) -> None:
    """Capacity, SOH and internal resistance of each block across several results JSON files (from --out)."""
    loaded = [TestResult.from_json(Path(p).read_text(encoding="utf-8")) for p in results]
    trends = block_trends(loaded, by=by, warn_pct=ir_warn, fail_pct=ir_fail)  # type: ignore[arg-type]
    if as_json:
        click.echo(json.dumps([to_dict(t) for t in trends], indent=2))
        return
    table = Table(title=f"{len(trends)} blocks over {len(loaded)} tests")
    for col in ("block", "tests", "% capacity, oldest first", "%/year", "latest %", "below 80 % at",
                "IR mΩ, oldest first", "IR vs baseline"):
        table.add_column(col)
    for t in trends:
        caps = ", ".join(_pct(p.capacity_pct, p.lower_bound) for p in t.points)
        when = "-" if t.below_limit_ms is None else str(np.datetime64(t.below_limit_ms, "ms").astype("datetime64[D]"))
        slope = "-" if t.slope_pct_per_year is None else f"{t.slope_pct_per_year:+.1f}"
        irs = ", ".join("-" if p.resistance_mohm is None else f"{p.resistance_mohm:.2f}" for p in t.points)
        change = "-" if t.resistance_change_pct is None else _ir_change(t.resistance_change_pct, t.resistance_status)
        table.add_row(t.key, str(len(t.points)), caps, slope, _pct(t.latest_capacity_pct), when, irs, change)
    (Console() if sys.stdout.isatty() else Console(width=120)).print(table)


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


def print_summary(r: TestResult, console: Console) -> None:
    """The technician's summary: the discharge, the string capacity, one row per block."""
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
            f"String capacity ({c.method.replace('_', '-')}): {_pct(c.capacity_pct, c.lower_bound)} % "
            f"(K_T {c.k_t}, {c.temperature_c} C, rated time {format_duration(c.rated_time_s)})"
        )
    table = Table(title=f"{len(r.blocks)} of {r.string_blocks} blocks")
    for col in ("pos", "serial", "to end", "Ah", "%cap", "SOH%", "rank", "IR mΩ", "yellow", "red", "evidence",
                "notes"):
        table.add_column(col, justify="right" if col not in ("serial", "notes") else "left",
                         no_wrap=col != "notes")
    for b in r.blocks:
        notes = []
        if b.replace:
            notes.append("[red]replace[/]")
        if b.gaps:
            notes.append(f"{len(b.gaps)} gap")
        if b.clock.uncertainty_ms is None:
            notes.append("no clock ref")
        table.add_row(
            str(b.position or "-"), b.serial, format_duration(b.time_to_end_s), f"{b.delivered_ah:.1f}",
            _pct(b.capacity_pct, b.lower_bound), _pct(b.soh_pct, b.lower_bound), str(b.rank or "-"),
            _ir(b.resistance_mohm, b.resistance_uncertainty_mohm, b.resistance_status),
            f"[yellow]{b.yellow}[/]" if b.yellow else "0", f"[red]{b.red}[/]" if b.red else "0",
            b.evidence.status if b.evidence.status == "verified" else f"[bold]{b.evidence.status}[/]",
            ", ".join(notes),
        )
    console.print(table)
    if any(b.replace for b in r.blocks):
        console.print("[red]replace[/]: measured capacity below 80 % of rated")
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
