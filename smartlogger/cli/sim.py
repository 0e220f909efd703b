"""``smartlogger sim``: simulated loggers on virtual batteries (thin click wrapper).

All work happens in ``smartlogger.device.sim``; this module parses options,
shows progress and writes the output directory.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.progress import Progress

from smartlogger.cli.options import CURRENT, LOG_INTERVAL, POWER, load_text
from smartlogger.cli.site import site
from smartlogger.model import BlockType, Chemistry
from smartlogger.quantities import Current, Power

if TYPE_CHECKING:
    from smartlogger.device.firmware import Logger
    from smartlogger.device.sim import StoreFactory


def _block(nominal_v: int, chemistry: str) -> BlockType:
    chem = Chemistry.parse(chemistry, "chemistry")
    if chem.is_lead_acid:
        return BlockType.lead_acid(nominal_v, vented=chem is Chemistry.FLOODED)
    cells = max(1, round(nominal_v * 1000 / chem.cell_nominal_mv))
    return BlockType(chem, cells)


def _flash_factory(flash_image: str | None) -> StoreFactory | None:
    """With ``--flash-image`` every logger logs into a NOR-flash blackbox instead of RAM."""
    # Lazy: the simulation's modules only when a simulation runs (``sim site`` starts without them).
    from smartlogger.device.blackbox import BlackboxStore

    return (lambda ident: BlackboxStore.create(ident)) if flash_image else None


def image_path(flash_image: str, serial: str, many: bool) -> Path:
    """``img.nor`` for one logger; ``img-SIM-0001.nor``, ... for a kit."""
    p = Path(flash_image)
    return p.with_name(f"{p.stem}-{serial}{p.suffix}") if many else p


def _save_images(loggers: list[Logger], flash_image: str | None) -> list[str]:
    # Lazy: the simulation's modules only when a simulation runs (``sim site`` starts without them).
    from smartlogger.device.blackbox import BlackboxStore

    saved = []
    if flash_image:
        for lg in loggers:
            if isinstance(lg.store, BlackboxStore):
                path = image_path(flash_image, lg.identity.serial, len(loggers) > 1)
                path.parent.mkdir(parents=True, exist_ok=True)
                lg.store.save_image(path)
                saved.append(str(path))
    return saved


def _out_dir(path: str) -> Path:
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    return out


@click.group()
def sim() -> None:
    """Simulate loggers on virtual batteries (virtual time, SIMULATED marker)."""


sim.add_command(site)


@sim.command("string")
@click.option("--blocks", default=24, show_default=True, type=click.IntRange(1, 1000), help="Blocks in the string.")
@click.option("--weak", default=2, show_default=True, type=click.IntRange(0), help="Weak (aged) blocks.")
@click.option("--load", default=None, type=CURRENT, metavar="CURRENT",
              help="Constant current, e.g. 20A or 500mA (default 20A).")
@click.option("--load-power", default=None, type=POWER, metavar="POWER",
              help="Constant string power instead, e.g. 4800W or 4.8kW.")
@click.option("--ambient", default=25.0, show_default=True, type=float, help="Room temperature, C.")
@click.option("--seed", default=1, show_default=True, type=int)
@click.option("--block-voltage", default=12, show_default=True, type=int, help="Nominal block voltage, V.")
@click.option("--chemistry", default="vrla", show_default=True)
@click.option("--rated-ah", default=100.0, show_default=True, type=float)
@click.option("--float-rate", default=60, show_default=True, type=LOG_INTERVAL,
              help="Float log interval, e.g. 60s or 1min (a bare number is seconds).")
@click.option("--discharge-rate", default=1, show_default=True, type=LOG_INTERVAL,
              help="Discharge log interval (a bare number is seconds).")
@click.option("-o", "--output", "output", required=True, type=click.Path(file_okay=False), help="Output directory.")
@click.option("--flash-image", default=None, type=click.Path(dir_okay=False),
              help="Log into the NOR-flash blackbox and save its raw image here (a kit: FILE-SERIAL.ext).")
@click.option("--csv", "with_csv", is_flag=True, help="Also write each logger's samples and the events as CSV.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary instead of text.")
def string_cmd(blocks: int, weak: int, load: Current | None, load_power: Power | None, ambient: float, seed: int, block_voltage: int,
               chemistry: str, rated_ah: float, float_rate: int, discharge_rate: int, output: str,
               flash_image: str | None, with_csv: bool, as_json: bool) -> None:
    """Simulate a capacity test of a string: one logger per block, float, load, end voltage, rest."""
    # Lazy: the simulation's modules only when a simulation runs (``sim site`` starts without them).
    from smartlogger.device.sim import (
        simulate_string_test,
        trace_truth,
        write_events_csv,
        write_logger_logfile,
        write_samples_csv,
        write_truth_json,
    )

    load_t = load_text(load, load_power, default="20A")
    assert load_t is not None
    bt = _block(block_voltage, chemistry)
    out = _out_dir(output)
    with Progress(transient=True, disable=as_json) as bar:
        task = bar.add_task("loggers", total=blocks)
        result = simulate_string_test(
            blocks, weak=weak, load=load_t, ambient_c=ambient, seed=seed, block_type=bt, rated_ah=rated_ah,
            float_rate_s=float_rate, discharge_rate_s=discharge_rate, store_factory=_flash_factory(flash_image),
            progress=lambda done, total: bar.update(task, completed=done),
        )
        task2 = bar.add_task("writing", total=blocks)
        rows = 0
        # The phone's clock at the (full) pull right after the test, on virtual time.
        pull_ms = result.start_ms + round(float(result.trace.t_s[-1]) * 1000)
        test = {"load": load_t, "test_id": result.loggers[0].config.test_id if result.loggers else ""}
        for lg in result.loggers:
            write_logger_logfile(lg, out / f"{lg.identity.serial}.slog", phone_ms=pull_ms, test=test)
            if with_csv:
                rows += write_samples_csv(lg, out / f"{lg.identity.serial}.csv")
            bar.advance(task2)
    events = write_events_csv(result.loggers, out / "events.csv") if with_csv else 0
    truth = trace_truth(result.trace, result.start_ms)
    truth.update(load=load_t, seed=seed, block_type=bt.describe(), rated_ah=rated_ah,
                 loggers=[lg.identity.serial for lg in result.loggers], markers=["SIMULATED"])
    write_truth_json(truth, out / "truth.json")
    summary: dict[str, Any] = {
        "output": str(out), "loggers": blocks, "logfiles": blocks, "csv_samples": rows, "csv_events": events,
        "duration_s": float(result.trace.t_s[-1]), "wall_s": round(result.wall_s, 3),
        "flash_images": _save_images(result.loggers, flash_image),
    }
    if as_json:
        click.echo(json.dumps(summary))
    else:
        click.echo(f"SIMULATED: {blocks} loggers ({blocks} logfiles), "
                   f"{summary['duration_s'] / 3600:.2f} h of virtual time in {result.wall_s:.1f} s -> {out}")


@sim.command("years")
@click.option("--years", default=10.0, show_default=True, type=click.FloatRange(0, 30, min_open=True))
@click.option("--log-rate", default=60, show_default=True, type=LOG_INTERVAL,
              help="Float log interval, e.g. 60s or 1min (a bare number is seconds).")
@click.option("--seed", default=1, show_default=True, type=int)
@click.option("--ambient", default=25.0, show_default=True, type=float, help="Mean room temperature, C.")
@click.option("--block-voltage", default=12, show_default=True, type=int, help="Nominal block voltage, V.")
@click.option("--chemistry", default="vrla", show_default=True)
@click.option("--rated-ah", default=100.0, show_default=True, type=float)
@click.option("--discharges-per-year", default=1.0, show_default=True, type=float)
@click.option("-o", "--output", "output", required=True, type=click.Path(file_okay=False), help="Output directory.")
@click.option("--flash-image", default=None, type=click.Path(dir_okay=False),
              help="Log into the NOR-flash blackbox and save its raw image here (a kit: FILE-SERIAL.ext).")
@click.option("--csv", "with_csv", is_flag=True, help="Also write the samples and the events as CSV.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary instead of text.")
def years_cmd(years: float, log_rate: int, seed: int, ambient: float, block_voltage: int, chemistry: str,
              rated_ah: float, discharges_per_year: float, output: str, flash_image: str | None,
              with_csv: bool, as_json: bool) -> None:
    """Simulate one logger through years of float life with occasional discharges."""
    # Lazy: the simulation's modules only when a simulation runs (``sim site`` starts without them).
    from smartlogger.device.sim import (
        simulate_years,
        trace_truth,
        write_events_csv,
        write_logger_logfile,
        write_samples_csv,
        write_truth_json,
    )

    bt = _block(block_voltage, chemistry)
    out = _out_dir(output)
    with Progress(transient=True, disable=as_json) as bar:
        task = bar.add_task("years", total=None)
        result = simulate_years(
            years, log_rate_s=log_rate, seed=seed, block_type=bt, rated_ah=rated_ah, ambient_c=ambient,
            discharges_per_year=discharges_per_year, store_factory=_flash_factory(flash_image),
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    lg = result.logger
    pull_ms = result.start_ms + round(float(result.trace.t_s[-1]) * 1000)
    logfile = write_logger_logfile(lg, out / f"{lg.identity.serial}.slog", phone_ms=pull_ms)
    rows = write_samples_csv(lg, out / f"{lg.identity.serial}.csv") if with_csv else 0
    events = write_events_csv([lg], out / "events.csv") if with_csv else 0
    truth = trace_truth(result.trace, result.start_ms)
    truth.update(years=years, seed=seed, block_type=bt.describe(), rated_ah=rated_ah,
                 loggers=[lg.identity.serial], markers=["SIMULATED"])
    write_truth_json(truth, out / "truth.json")
    summary = {"output": str(out), "logfile": str(logfile), "csv_samples": rows, "csv_events": events,
               "records": lg.store.next_seq,
               "wall_s": round(result.wall_s, 3), "flash_images": _save_images([lg], flash_image)}
    if as_json:
        click.echo(json.dumps(summary))
    else:
        click.echo(f"SIMULATED: {years:g} years, {lg.store.next_seq} records in {result.wall_s:.1f} s "
                   f"-> {logfile}")
