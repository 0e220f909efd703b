"""``flash-read`` / ``flash-info``: read a saved NOR-flash image back (thin click wrappers).

The integrator adds these two commands to the ``device`` group
(``device.add_command(flash_read)``, ``device.add_command(flash_info)``); the
``flash`` group here runs them standalone. The work is in ``device.blackbox``
(mount and read) and ``logfile.format`` (the logfile writer).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import numpy as np
from rich.progress import Progress

from smartlogger.device.blackbox import BlackboxStore
from smartlogger.export.celltext import csv_row
from smartlogger.logfile.format import build_logfile
from smartlogger.model import (
    ClockSet,
    ConfigChange,
    DailySummary,
    DischargeSummary,
    Event,
    Record,
    SampleBlock,
)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


def _row(stream: str, seq: int, rec: Record) -> list[Any]:
    """stream, seq, type, time_utc, detail (one CSV row per record; samples go to samples.csv)."""
    if isinstance(rec, SampleBlock):
        return [stream, seq, "samples", _iso(rec.start_ms),
                f"{len(rec)} samples every {rec.interval_ms} ms"]
    if isinstance(rec, Event):
        detail = " ".join(x for x in (rec.quantity.value if rec.quantity else "",
                                      rec.side.value if rec.side else "", f"value={rec.value}") if x)
        return [stream, seq, rec.kind.name, _iso(rec.t_ms), detail]
    if isinstance(rec, ConfigChange):
        c = rec.config
        return [stream, seq, "CONFIG", _iso(rec.t_ms),
                f"config seq {rec.seq}: {c.block_type.describe()}, float {c.float_rate_s} s, "
                f"discharge {c.discharge_rate_s} s"]
    if isinstance(rec, ClockSet):
        return [stream, seq, "CLOCK_SET", _iso(rec.new_ms), f"from {_iso(rec.old_ms)}"]
    if isinstance(rec, DailySummary):
        return [stream, seq, "DAY", _iso(rec.day_start_ms),
                f"n={rec.count} mV {rec.mv_min}/{rec.mv_mean}/{rec.mv_max} "
                f"dC {rec.dc_min}/{rec.dc_mean}/{rec.dc_max}"]
    if isinstance(rec, DischargeSummary):
        return [stream, seq, "DISCHARGE", _iso(rec.start_ms),
                f"until {_iso(rec.end_ms)} min {rec.min_mv} mV ah_estimate {rec.ah_estimate_mah} mAh"]
    return [stream, seq, type(rec).__name__, "", ""]


def _records_with_progress(store: BlackboxStore, progress: Progress | None) -> Iterator[tuple[int, Record]]:
    total = store.next_seq - store.oldest_seq
    task = progress.add_task("reading flash", total=total) if progress else None
    for seq, rec in store.records():
        if progress is not None and task is not None:
            progress.advance(task)
        yield seq, rec


@click.group()
def flash() -> None:
    """Read NOR-flash blackbox images."""


@flash.command("flash-read")
@click.argument("image", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", "output", required=True, type=click.Path(file_okay=False),
              help="Directory for records.csv, samples.csv, info.json and the logfile.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary instead of text.")
def flash_read(image: str, output: str, as_json: bool) -> None:
    """Read a blackbox IMAGE back into records, CSV and an (unsigned) logfile."""
    store = BlackboxStore.from_image(image)
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    ident = store.identity
    assert ident is not None  # mount reads it or raises
    n_samples = 0
    with Progress(transient=True, disable=as_json) as progress, \
            open(out / "records.csv", "w", newline="", encoding="utf-8") as rf, \
            open(out / "samples.csv", "w", newline="", encoding="utf-8") as sf:
        w = csv.writer(rf)
        w.writerow(["stream", "seq", "type", "time_utc", "detail"])
        sf.write(f"# serial={ident.serial} markers={'+'.join(ident.markers) or 'none'}\n")
        sf.write("time_utc,voltage_v,temperature_c\n")
        for seq, rec in _records_with_progress(store, progress):
            w.writerow(csv_row(_row("main", seq, rec)))
            if isinstance(rec, SampleBlock) and len(rec):
                t = rec.start_ms + np.arange(len(rec), dtype=np.int64) * rec.interval_ms
                iso = np.datetime_as_string(t.astype("datetime64[ms]"), unit="ms")
                sf.writelines(f"{s}Z,{v / 1000:.3f},{d / 10:.1f}\n"
                              for s, v, d in zip(iso.tolist(), rec.mv, rec.dc, strict=True))
                n_samples += len(rec)
        for seq, rec in store.summary_records():
            w.writerow(csv_row(_row("summary", seq, rec)))
    streams = [list(store.raw_records(0)), list(store.raw_records(1))]
    anchors = [store.chain_anchor(0), store.chain_anchor(1)]
    # no device key in an image: the logfile is unsigned, its chains still verify
    logfile = out / f"{ident.serial}.slog"
    logfile.write_bytes(build_logfile(ident, None, streams, anchors))
    info = store.totals()
    info.update({"image": image, "samples": n_samples, "logfile": str(logfile)})
    (out / "info.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    if as_json:
        click.echo(json.dumps(info))
        return
    main = info["main"]
    click.echo(f"{ident.serial} {' '.join(ident.markers)}: main records {main['oldest_seq']}.."
               f"{main['next_seq'] - 1} ({n_samples} samples), summary records "
               f"{info['summary']['records']} -> {out}")


@flash.command("flash-info")
@click.argument("image", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def flash_info(image: str, as_json: bool) -> None:
    """Show what a blackbox IMAGE holds: identity, sequence ranges, space, wear, recovery."""
    store = BlackboxStore.from_image(image)
    info = store.totals()
    info["mount"] = {name: vars(rep) for name, rep in store.mount_reports.items()}
    if as_json:
        click.echo(json.dumps(info))
        return
    click.echo(f"serial       {info['serial']} {' '.join(info['markers'])}")
    g = info["geometry"]
    click.echo(f"chip         {g['size']} bytes, {g['sector_size']}-byte sectors, "
               f"{g['page_size']}-byte pages")
    for name in ("main", "summary"):
        r = info[name]
        click.echo(f"{name:<12} records {r['oldest_seq']}..{r['next_seq'] - 1} ({r['records']}), "
                   f"{r['used_bytes']} of {r['capacity_bytes']} bytes, {r['sectors']} sectors")
    click.echo(f"read out     up to seq {info['read_up_to_seq']}; resets {info['resets']}")
    click.echo(f"wear         erase count {info['erase_count_min']}..{info['erase_count_max']}, "
               f"bad sectors {info['bad_sectors'] or 'none'}")
    torn = sum(rep["torn_entries"] for rep in info["mount"].values())
    corrupt = sum(rep["corrupt_entries"] for rep in info["mount"].values())
    click.echo(f"recovery     {torn} torn entries discarded, {corrupt} corrupt")
