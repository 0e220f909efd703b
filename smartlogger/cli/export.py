"""``smartlogger export``: Excel workbooks with native charts, CSV and Parquet.

Thin click wrappers over ``smartlogger.export``; every command shows a rich
progress bar (on stderr, only on a terminal) and prints the written path, or a
JSON object with ``--json``.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from smartlogger.cli.logfile import trust_option
from smartlogger.cli.options import CURRENT, POWER, DurationType
from smartlogger.errors import ExportError
from smartlogger.quantities import Current, Power, parse_voltage


@contextmanager
def _progress(label: str, enabled: bool) -> Iterator[Callable[[str, float], None]]:
    """A rich progress bar driven by the exporters' ``(stage, fraction)`` callback."""
    if not enabled:
        yield lambda stage, frac: None
        return
    # Lazy: rich's display only when there is something to show.
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), TaskProgressColumn(),
                  TextColumn("{task.fields[stage]}"), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=1.0, stage="")

        def update(stage: str, frac: float) -> None:
            bar.update(task, completed=min(1.0, max(0.0, frac)), stage=stage)

        yield update


def _report(out: Path, started: float, as_json: bool, **extra: Any) -> None:
    info = {"path": str(out), "bytes": out.stat().st_size, "seconds": round(time.perf_counter() - started, 3),
            **extra}
    if as_json:
        click.echo(json.dumps(info))
    else:
        click.echo(f"wrote {out} ({info['bytes'] / 1e6:.1f} MB in {info['seconds']:.1f} s)")


_tz = click.option("--tz", default="UTC", show_default=True,
                   help="Site time zone for times and axes (IANA name, e.g. Europe/Berlin).")
_json = click.option("--json", "as_json", is_flag=True, help="Print a JSON object instead of text.")
_quiet = click.option("--no-progress", is_flag=True, help="Do not show a progress bar.")
_compact = click.option("--compact", is_flag=True,
                        help="Compress harder: ~25 % smaller file, a little slower to write.")


@click.group()
def export() -> None:
    """Write Excel workbooks (with native charts) and CSV/Parquet data files."""


@export.command()
@click.argument("logfile", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--test", "test_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A capacity-test directory of .slog files: write the string report.")
@click.option("-o", "--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Workbook to write (.xlsx).")
@_tz
@click.option("--resolution", default=10.0, show_default=True, type=click.FloatRange(min=0.001),
              help="String report: resolution of the aligned Data sheet, s.")
@click.option("--chart-points", default=4000, show_default=True, type=click.IntRange(min=100, max=100_000),
              help="Points per chart series after min/max reduction.")
@click.option("--load", default=None, type=CURRENT, metavar="CURRENT",
              help="String report without a result: constant current, e.g. 50A (a bare number is amperes).")
@click.option("--load-power", default=None, type=POWER, metavar="POWER",
              help="String report without a result: constant string power, e.g. 12kW.")
@click.option("--rated-time", default=None, type=DurationType("h"), metavar="DURATION",
              help="String report: rated time at this load, e.g. 3h (a bare number is hours).")
@click.option("--end-voltage", default=None, metavar="VOLTAGE",
              help="String report without a result: end voltage per cell, block or string, e.g. 1.75V/cell, "
                   "10.5V/block, 252V/string (a bare number is per cell).")
@click.option("--end-v-per-cell", default=None, type=float, hidden=True,
              help="Old spelling of --end-voltage N (V/cell).")
@_json
@_quiet
@_compact
@trust_option
def xlsx(logfile: Path | None, test_dir: Path | None, out: Path, tz: str, resolution: float,
         chart_points: int, load: Current | None, load_power: Power | None, rated_time: float | None,
         end_voltage: str | None, end_v_per_cell: float | None, as_json: bool, no_progress: bool,
         compact: bool, trust_file: str | None) -> None:
    """Logger workbook of LOGFILE, or the string report of a test (--test DIR).

    Every logfile is verified (--trust); the workbooks state each file's evidence and, for a
    test, which files were excluded and whether the result rests on verified evidence only.
    """
    # Lazy: only this command needs these (the other commands start without them).
    from smartlogger.export import adapters
    from smartlogger.logfile.trust import load_trust

    if (logfile is None) == (test_dir is None):
        raise click.UsageError("give either LOGFILE or --test DIR")
    if out.suffix.lower() != ".xlsx":
        raise ExportError(f"{out}: the workbook name must end in .xlsx")
    started = time.perf_counter()
    show = not no_progress and not as_json and sys.stderr.isatty()
    trust = load_trust(trust_file) if trust_file else None
    if logfile is not None:
        # Lazy: only this command needs these (the other commands start without them).
        from smartlogger.export.logger_workbook import write_logger_workbook

        inputs = adapters.logger_export_inputs(logfile, trust=trust)
        with _progress(f"logger {inputs.series.identity.serial}", show) as progress:
            write_logger_workbook(out, inputs.series, exceedances=inputs.exceedances,
                                  evidence=inputs.evidence, tz=tz, chart_points=chart_points,
                                  progress=progress, compresslevel=6 if compact else 1)
        _report(out, started, as_json, kind="logger", serial=inputs.series.identity.serial,
                samples=len(inputs.series.t_ms), verified=inputs.evidence.verified,
                evidence=inputs.evidence.evidence_status)
    else:
        # Lazy: only this command needs these (the other commands start without them).
        from smartlogger.export.string_report import write_string_report

        assert test_dir is not None
        if load is not None and load_power is not None:
            raise click.UsageError("give --load or --load-power, not both")
        t = adapters.load_test_dir(test_dir, load=load if load is not None else load_power,
                                   rated_time_s=rated_time, end_v_per_cell=end_v_per_cell,
                                   end_voltage=parse_voltage(end_voltage) if end_voltage is not None else None,
                                   trust=trust)
        with _progress(f"string report ({len(t.series)} blocks)", show) as progress:
            write_string_report(out, t.outcome, t.series, exceedances=t.exceedances, evidence=t.evidence,
                                tz=tz, resolution_s=resolution, chart_points=chart_points,
                                progress=progress, compresslevel=6 if compact else 1)
        _report(out, started, as_json, kind="string_report", blocks=len(t.series), result=t.outcome.result,
                all_verified=all(e.verified for e in t.evidence), evidence=t.outcome.evidence_status,
                verified_only=t.outcome.verified_only, evidence_statement=t.outcome.evidence_statement,
                excluded=[{"file": f, "serial": s or None, "reason": r, "message": m}
                          for f, s, r, m in t.outcome.excluded])
        if not as_json:
            click.echo(f"evidence: {t.outcome.evidence_statement}")


@export.command()
@click.argument("logfile", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Workbook to write (.xlsx).")
@click.option("--samples", "samples_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write every raw sample to this .csv or .parquet file.")
@_tz
@_json
@_quiet
@_compact
def longterm(logfile: Path, out: Path, samples_out: Path | None, tz: str, as_json: bool,
             no_progress: bool, compact: bool) -> None:
    """Long-term blackbox workbook: daily min/mean/max, events, discharges."""
    # Lazy: only this command needs these (the other commands start without them).
    from smartlogger.export.adapters import longterm_inputs
    from smartlogger.export.data import write_samples
    from smartlogger.export.longterm import write_longterm_workbook

    started = time.perf_counter()
    data = longterm_inputs(logfile, tz=tz)
    show = not no_progress and not as_json and sys.stderr.isatty()
    with _progress(f"blackbox {data.identity.serial}", show) as progress:
        write_longterm_workbook(out, data, tz=tz, progress=progress, compresslevel=6 if compact else 1)
    extra: dict[str, Any] = {"kind": "longterm", "days": len(data.daily)}
    if samples_out is not None:
        if data.samples is None:
            raise ExportError(f"{logfile}: no raw samples left in the log (summary stream only)")
        write_samples(samples_out, data.samples, tz=tz)
        extra["samples_path"] = str(samples_out)
    _report(out, started, as_json, **extra)


@export.command()
@click.argument("logfile", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="File to write: .csv (local time, V, C) or .parquet (device units).")
@_tz
@_json
def data(logfile: Path, out: Path, tz: str, as_json: bool) -> None:
    """Every sample of LOGFILE as CSV or Parquet."""
    # Lazy: only this command needs these (the other commands start without them).
    from smartlogger.export.adapters import logger_export_inputs
    from smartlogger.export.data import write_samples

    started = time.perf_counter()
    inputs = logger_export_inputs(logfile)
    write_samples(out, inputs.series, tz=tz)
    _report(out, started, as_json, kind="samples", samples=len(inputs.series.t_ms))


@export.command()
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--blocks", default=24, show_default=True, type=click.IntRange(1, 1000),
              help="Blocks in the example string.")
@_tz
@_json
def examples(out_dir: Path, blocks: int, tz: str, as_json: bool) -> None:
    """Write the documented example workbooks (simulated data) into OUT_DIR."""
    # Lazy: only this command needs these (the other commands start without them).
    from smartlogger.export.examples import write_examples

    started = time.perf_counter()
    paths = write_examples(out_dir, n_blocks=blocks, tz=tz)
    if as_json:
        click.echo(json.dumps({"paths": [str(p) for p in paths],
                               "seconds": round(time.perf_counter() - started, 3)}))
    else:
        for p in paths:
            click.echo(f"wrote {p}")


@export.command()
@click.option("--test", "test_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="The capacity-test directory (its result.json, test.json and .slog files).")
@click.option("-o", "--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="PDF to write (.pdf).")
@_json
@trust_option
def pdf(test_dir: Path, out: Path, as_json: bool, trust_file: str | None) -> None:
    """The customer report of a test as a PDF: the verdict first, who / where / which battery, the
    setup, the charts, every block and the exceedances (the same content as the workbook's Summary)."""
    # Lazy: only this command needs these (the other commands start without them).
    from smartlogger.export import adapters
    from smartlogger.export.pdf import write_pdf_report
    from smartlogger.logfile.trust import load_trust

    if out.suffix.lower() != ".pdf":
        raise ExportError(f"{out}: the report name must end in .pdf")
    if not out.parent.is_dir():
        raise ExportError(f"{out}: directory {out.parent} does not exist")
    started = time.perf_counter()
    t = adapters.load_test_dir(test_dir, trust=load_trust(trust_file) if trust_file else None)
    if t.outcome.report is None:  # pragma: no cover - load_test_dir always analyses or reads a result
        raise ExportError(f"{test_dir}: no analysis result to report")
    write_pdf_report(out, t.outcome.report, t.series)
    _report(out, started, as_json, kind="pdf", verdict=t.outcome.report.outcome, blocks=len(t.series))
