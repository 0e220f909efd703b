"""``smartlogger device``: the firmware model fed from files (thin click wrapper).

``device replay`` runs a recorded CSV trace through the firmware; the work is in
``smartlogger.device.replay``.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from smartlogger.cli.flash import flash_info, flash_read
from smartlogger.cli.options import LOG_INTERVAL
from smartlogger.device.blackbox import BlackboxStore
from smartlogger.device.replay import TraceFormat, read_trace, replay_identity, replay_trace
from smartlogger.device.sim import write_events_csv, write_logger_logfile, write_samples_csv
from smartlogger.model import BlockType
from smartlogger.quantities import parse_duration


@click.group()
def device() -> None:
    """Work with a logger's firmware model."""


@device.command("replay")
@click.argument("trace", type=click.Path(dir_okay=False))
@click.option("--time-column", default="time", show_default=True)
@click.option("--time-format", default="auto", show_default=True,
              help="auto | seconds | elapsed | iso | epoch | epoch_ms | excel | a strptime pattern such as "
                   "'%d.%m.%Y %H:%M:%S'.")
@click.option("--timezone", default=None, metavar="ZONE",
              help="Zone of time stamps that carry none, e.g. Europe/Berlin or +01:00 (default: UTC, noted).")
@click.option("--voltage-column", default="voltage", show_default=True)
@click.option("--voltage-unit", default=None, type=click.Choice(["V", "mV"]),
              help="Unit of the voltage column (default: from the header, else V).")
@click.option("--temperature-column", default=None, help="Optional temperature column.")
@click.option("--temperature-unit", default=None, type=click.Choice(["C", "F"]),
              help="Unit of the temperature column (default: from the header, else C).")
@click.option("--current-column", default=None, help="Optional current column (A, kept as context).")
@click.option("--delimiter", default=None,
              help="Column separator (default: detected among , ; tab |): one character, or '\\t' / 'tab' for a tab.")
@click.option("--decimal", default=None, type=click.Choice([".", ","]),
              help="Decimal separator (default: detected).")
@click.option("--out-of-order", "disorder", default="sort", show_default=True, type=click.Choice(["sort", "refuse"]),
              help="Rows slightly out of time order (two instruments merged): sort them (reported) or refuse.")
@click.option("--max-disorder", default="2s", show_default=True, metavar="DURATION",
              help="Rows further back in time than this are refused even with --out-of-order sort.")
@click.option("--max-gap", default="1h", show_default=True, metavar="DURATION",
              help="Longest stretch without a voltage that is bridged by a straight line; 'none': any.")
@click.option("--block-voltage", default=None, type=click.Choice(["2", "4", "6", "12", "16"]),
              help="Nominal lead-acid block voltage (default: inferred from the trace).")
@click.option("--rated-ah", default=100.0, show_default=True, type=float)
@click.option("--float-rate", default=60, show_default=True, type=LOG_INTERVAL,
              help="Float log interval, e.g. 60s or 1min (a bare number is seconds).")
@click.option("--discharge-rate", default=1, show_default=True, type=LOG_INTERVAL,
              help="Discharge log interval (a bare number is seconds).")
@click.option("--serial", default="REPLAY-0001", show_default=True)
@click.option("-o", "--output", "output", required=True, type=click.Path(file_okay=False))
@click.option("--flash-image", default=None, type=click.Path(dir_okay=False),
              help="Log into the NOR-flash blackbox and save its raw image to this file.")
@click.option("--csv", "with_csv", is_flag=True, help="Also write the samples and the events as CSV.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary instead of text.")
def replay(trace: str, time_column: str, time_format: str, timezone: str | None, voltage_column: str,
           voltage_unit: str | None, temperature_column: str | None, temperature_unit: str | None,
           current_column: str | None, delimiter: str | None, decimal: str | None, disorder: str,
           max_disorder: str, max_gap: str, block_voltage: str | None, rated_ah: float, float_rate: int,
           discharge_rate: int, serial: str, output: str, flash_image: str | None, with_csv: bool,
           as_json: bool) -> None:
    """Feed a recorded CSV TRACE through the firmware; write the logger's log (REPLAYED)."""
    fmt = TraceFormat(time_column=time_column, voltage_column=voltage_column, voltage_unit=voltage_unit,
                      temperature_column=temperature_column, temperature_unit=temperature_unit,
                      current_column=current_column, time_format=time_format,
                      delimiter="\t" if delimiter in ("\\t", "tab") else delimiter,
                      decimal=decimal, timezone=timezone, disorder=disorder,  # type: ignore[arg-type]
                      max_disorder_s=parse_duration(max_disorder, field="--max-disorder", default_unit="s",
                                                    allow_zero=True),
                      max_gap_s=None if max_gap.strip().lower() == "none" else parse_duration(
                          max_gap, field="--max-gap", default_unit="s"))
    parsed = read_trace(trace, fmt)
    bt = BlockType.lead_acid(int(block_voltage)) if block_voltage else None
    ident = replay_identity(serial)
    store = BlackboxStore.create(ident) if flash_image else None
    result = replay_trace(parsed, serial=serial, block_type=bt, rated_ah=rated_ah,
                          float_rate_s=float_rate, discharge_rate_s=discharge_rate, store=store)
    if isinstance(store, BlackboxStore) and flash_image:
        Path(flash_image).parent.mkdir(parents=True, exist_ok=True)
        store.save_image(flash_image)
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    lg = result.logger
    logfile = write_logger_logfile(lg, out / f"{lg.identity.serial}.slog")
    rows = write_samples_csv(lg, out / f"{lg.identity.serial}.csv") if with_csv else 0
    events = write_events_csv([lg], out / "events.csv") if with_csv else 0
    summary = {"output": str(out), "serial": lg.identity.serial, "markers": list(lg.identity.markers),
               "trace_rows": parsed.rows, "logfile": str(logfile), "records": lg.store.next_seq,
               "csv_samples": rows, "csv_events": events,
               "block_type": lg.config.block_type.describe(), "flash_image": flash_image,
               "rows_sorted": parsed.reordered, "max_disorder_s": parsed.max_disorder_s,
               "rows_merged": parsed.duplicates, "notes": parsed.notes}
    (out / "replay.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    if as_json:
        click.echo(json.dumps(summary))
    else:
        for note in parsed.notes:
            click.echo(f"note: {trace}: {note}", err=True)
        click.echo(f"REPLAYED: {parsed.rows} trace rows -> {lg.store.next_seq} records -> {logfile}")


# The blackbox image commands live with the blackbox's CLI code (smartlogger.cli.flash).
device.add_command(flash_read)
device.add_command(flash_info)
