"""``smartlogger sim site``: a virtual site that lives across commands (thin click wrapper).

The site itself is ``smartlogger.device.site`` (a background process started by
``start``); every other command talks to it through ``smartlogger.field.site``'s control
client. docs/SIMULATOR.md describes the site, its state directory and its faults.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

_dir = click.argument("directory", metavar="DIR", type=click.Path(path_type=Path))
_json = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def _iso(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _offset(ms: int | None) -> str:
    if ms is None:
        return "-"
    s = ms / 1000
    if abs(s) < 120:
        return f"{s:+.1f} s"
    if abs(s) < 7200:
        return f"{s / 60:+.1f} min"
    if abs(s) < 172800:
        return f"{s / 3600:+.1f} h"
    return f"{s / 86400:+.1f} d"


def _request(directory: Path, cmd: str, args: dict[str, Any] | None = None, *,
             progress_label: str | None = None) -> dict[str, Any]:
    # Lazy: the site client only when a command runs (``sim --help`` starts without it).
    from smartlogger.field.site import SiteClient

    with SiteClient.open(directory) as client:
        if progress_label is None:
            return client.request(cmd, args)
        # Lazy: rich's display only when there is progress to show.
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        # shown from the first progress line on (the site sends them after 0.2 s of work)
        bars = Progress(TextColumn("{task.description}"), BarColumn(),
                        TextColumn("{task.fields[note]}"), TimeElapsedColumn(), transient=True)
        task = bars.add_task(progress_label, total=None, note="")

        def progress(done: float, total: float) -> None:
            if not bars.live.is_started:
                bars.start()
            bars.update(task, completed=done, total=total,
                        note=f"{done / 3600:.2f} of {total / 3600:.2f} h")

        try:
            return client.request(cmd, args, progress=progress)
        finally:
            if bars.live.is_started:
                bars.stop()


@click.group("site")
def site() -> None:
    """A virtual site: simulated loggers on a virtual string, in their own process.

    Reach its loggers like hardware: `smartlogger nfc program --site DIR` (or
    --device with its udp:HOST:PORT), `smartlogger ble scan|pull|reset --site DIR`.
    """


@site.command("start")
@_dir
@click.option("--blocks", type=click.IntRange(1, 1000), default=None,
              help="Blocks in the string, one logger each [new site: 24].")
@click.option("--weak", type=click.IntRange(0, 1000), default=None,
              help="Aged blocks hidden in the string [new site: 2].")
@click.option("--seed", type=int, default=None, help="Seed of the simulation [new site: 1].")
@click.option("--block-voltage", type=int, default=None, help="Nominal block voltage, V [new site: 12].")
@click.option("--chemistry", default=None, help="vrla, flooded, nicd, lifepo4 [new site: vrla].")
@click.option("--rated-ah", type=float, default=None, help="Rated capacity, Ah [new site: 100].")
@click.option("--ambient", "ambient_c", type=float, default=None, help="Room temperature, C [new site: 25].")
@click.option("--serial-prefix", default=None, help="Logger serials PREFIX-0001... [new site: SIM].")
@click.option("--speed", type=click.FloatRange(0, 1e6), default=0.0, show_default=True,
              help="Run on its own at this many times real time (0: only on 'advance').")
@click.option("--nfc-port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="UDP port of the NFC walk on 127.0.0.1 (0: any free one).")
@click.option("--ble-port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="TCP port of the BLE (HCI) port on 127.0.0.1 (0: any free one).")
@click.option("--foreground", is_flag=True, help="Keep the site in this terminal (Ctrl-C stops it).")
@_json
def start(directory: Path, blocks: int | None, weak: int | None, seed: int | None,
          block_voltage: int | None, chemistry: str | None, rated_ah: float | None,
          ambient_c: float | None, serial_prefix: str | None, speed: float, nfc_port: int,
          ble_port: int, foreground: bool, as_json: bool) -> None:
    """Start the site in DIR (a new or empty DIR creates one; an existing site resumes)."""
    # Lazy: the site's own code only when a site is started.
    from smartlogger.device.site.launch import configure_logging, plan_start, start_background

    given = {"blocks": blocks, "weak": weak, "seed": seed, "block_voltage": block_voltage,
             "chemistry": chemistry, "rated_ah": rated_ah, "ambient_c": ambient_c,
             "serial_prefix": serial_prefix}
    options = {k: v for k, v in given.items() if v is not None}
    if foreground:
        # Lazy: the server runs in this process only with --foreground.
        from smartlogger.device.site.server import serve

        create = plan_start(directory, options)
        configure_logging(directory, foreground=True)

        def ready(info: dict[str, Any]) -> None:
            _print_started(info, as_json)
            if not as_json:
                click.echo("running in the foreground; Ctrl-C stops it")

        serve(directory, create=create, speed=speed, nfc_port=nfc_port, ble_port=ble_port,
              on_ready=ready)
        if not as_json:
            click.echo(f"site {directory} stopped")
        return
    info = start_background(directory, options, speed=speed, nfc_port=nfc_port, ble_port=ble_port)
    _print_started(info, as_json)


def _print_started(info: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(info, indent=1))
        return
    verb = "created and started" if info.get("created") else "started"
    click.echo(f"site {info['dir']} {verb} (pid {info['pid']}): {info['blocks']} loggers, "
               f"virtual time {_iso(info['utc_ms'])}")
    click.echo(f"  NFC: {info['nfc_device']}   BLE: {info['ble_transport']}")
    if info.get("note"):
        click.echo(f"  note: {info['note']}")


@site.command("status")
@_dir
@_json
def status(directory: Path, as_json: bool) -> None:
    """Virtual time, load, string voltage, each logger, and how to reach the site."""
    st = _request(directory, "status")
    if as_json:
        click.echo(json.dumps(st, indent=1))
        return
    load = st["load"]
    click.echo(f"site {st['dir']} (pid {st['pid']}) - virtual time {_iso(st['utc_ms'])}"
               + (f", running at {st['speed']:g}x" if st["speed"] else ", paused between commands"))
    click.echo(f"  string: {st['string_v']:.2f} V, {st['mode']}"
               + (f", load {load['load']}" + (f" (cutoff {load['cutoff_v_per_cell']:.3f} V/cell)"
                                              if load.get("cutoff_v_per_cell") else "")
                  if load else "")
               + f", charger {'on' if st['charger'] else 'off'}")
    click.echo(f"  NFC: {st['nfc_device']} (next tap: block {st['walk_next']})   "
               f"BLE: {st['ble_transport']}")
    click.echo(f"  {'serial':<10} {'block':>5}  {'state':<10} {'clock':>10} {'records':>8}  link")
    for lg in st["loggers"]:
        pos = lg["position"] if lg["position"] is not None else f"({lg['last_position']})"
        click.echo(f"  {lg['serial']:<10} {pos!s:>5}  {lg['state']:<10} "
                   f"{_offset(lg.get('clock_offset_ms')):>10} {lg['records']:>8}  {lg['link']}")
    click.echo(f"  {st['discharges']} discharge(s), {st['faults']} fault(s) injected")


@site.command("load")
@_dir
@click.argument("load", metavar="LOAD")
@click.option("--cutoff", default=None, metavar="V_PER_CELL",
              help="The load bank switches itself off at this end voltage (1.75, 1.75V/cell, "
                   "10.5V/block or 252V/string).")
@_json
def load_cmd(directory: Path, load: str, cutoff: str | None, as_json: bool) -> None:
    """Connect a load bank (20A constant current, 4800W constant power) or switch it 'off'."""
    out = _request(directory, "load", {"load": load, "cutoff": cutoff})
    if as_json:
        click.echo(json.dumps(out, indent=1))
    elif load.strip().lower() == "off":
        click.echo("load bank switched off" if out.get("was_connected")
                   else "no load bank was connected")
    else:
        click.echo(f"load bank {out['load']} connected at {_iso(out['since_utc_ms'])}"
                   + (f", cutoff {out['cutoff_v_per_cell']:.3f} V/cell" if out["cutoff_v_per_cell"]
                      else ", no cutoff") + " (charger off)")


@site.command("charger")
@_dir
@click.argument("state", type=click.Choice(["on", "off"]))
def charger(directory: Path, state: str) -> None:
    """Switch the string's charger on (recharge, then float) or off."""
    out = _request(directory, "charger", {"on": state == "on"})
    click.echo(f"charger {'on' if out['charger'] else 'off'} at {_iso(out['utc_ms'])}")


@site.command("advance")
@_dir
@click.argument("duration", metavar="DURATION")
@click.option("--until-load-off", is_flag=True,
              help="Stop early when the load bank switches itself off at its cutoff.")
@_json
def advance(directory: Path, duration: str, until_load_off: bool, as_json: bool) -> None:
    """Run virtual time forward by DURATION (3h, 90min, 1h30m) as fast as the machine allows."""
    t0 = time.perf_counter()
    out = _request(directory, "advance", {"duration": duration, "until_load_off": until_load_off},
                   progress_label=None if as_json else "advancing")
    if as_json:
        click.echo(json.dumps(out, indent=1))
        return
    click.echo(f"advanced {out['advanced_s'] / 3600:.2f} h to {_iso(out['utc_ms'])} "
               f"in {time.perf_counter() - t0:.1f} s; string: {out['mode']}")
    for ev in out["events"]:
        if ev["kind"] == "cutoff":
            click.echo(f"  the load bank switched off at its cutoff at {_iso(ev['utc_ms'])}")


@site.command("fault")
@_dir
@click.option("--logger", "which", required=True, metavar="POS|SERIAL",
              help="The logger: its block position or its serial.")
@click.argument("kind", type=click.Choice(["clock-reset", "detach", "attach", "weak-link",
                                           "out-of-range", "link-ok", "flash-wear-out"]))
@click.option("--to", "to_position", type=int, default=None,
              help="attach: the block to clip it on (default: where it was).")
@_json
def fault(directory: Path, which: str, kind: str, to_position: int | None, as_json: bool) -> None:
    """Inject a fault into one logger (logged in DIR/faults.jsonl)."""
    args: dict[str, Any] = {"logger": which, "kind": kind}
    if to_position is not None:
        if kind != "attach":
            raise click.UsageError("--to goes with 'attach'")
        args["to"] = to_position
    out = _request(directory, "fault", args)
    if as_json:
        click.echo(json.dumps(out, indent=1))
        return
    extra = ", ".join(f"{k} {v}" for k, v in out.items()
                      if k not in ("n", "utc_ms", "t_s", "kind", "serial", "position"))
    click.echo(f"fault {out['n']}: {out['kind']} on {out['serial']} (block {out['position']}) at "
               f"{_iso(out['utc_ms'])}" + (f"; {extra}" if extra else ""))


@site.command("walk")
@_dir
@click.argument("position", type=int)
def walk(directory: Path, position: int) -> None:
    """Walk to block POSITION: the next NFC tap reaches the logger clipped there."""
    out = _request(directory, "walk", {"position": position})
    click.echo(f"next NFC tap: block {out['walk_next']} ({out['next_logger'] or 'no logger'})")


@site.command("truth")
@_dir
@_json
def truth(directory: Path, as_json: bool) -> None:
    """The ground truth the analysis of the pulled logs should find."""
    out = _request(directory, "truth")
    if as_json:
        click.echo(json.dumps(out, indent=1))
        return
    test = out["test"]
    weak = [b["position"] for b in out["blocks"] if b["weak"]]
    click.echo(f"{len(out['blocks'])} blocks of {out['block_type']}, {out['rated_ah']:g} Ah; "
               f"weak blocks: {weak}")
    if test is None:
        click.echo("no discharge yet")
        return
    dur = test["duration_s"]
    click.echo(f"discharge: {test['load']} from {_iso(test['start_utc_ms'])} to "
               f"{_iso(test['end_utc_ms'])}"
               + (f" ({dur / 3600:.3f} h, ended by {test['end_reason']})" if dur is not None
                  else " (still on load)"))
    click.echo(f"  {'block':>5} {'serial':<10} {'Ah to end':>10} {'to end':>9} {'cap@rate':>9} {'mOhm':>6}")
    for b in test["blocks"]:
        end = "-" if b["time_to_end_s"] is None else f"{b['time_to_end_s'] / 3600:.3f} h"
        cap = "-" if b["capacity_ah_test_rate"] is None else f"{b['capacity_ah_test_rate']:.2f}"
        click.echo(f"  {b['position']:>5} {b['serial'] or '-':<10} {b['delivered_ah']:>10.2f} "
                   f"{end:>9} {cap:>9} {b['resistance_mohm']:>6.2f}")


@site.command("stop")
@_dir
@click.option("--timeout", "timeout_s", default=60.0, show_default=True, type=float)
def stop(directory: Path, timeout_s: float) -> None:
    """Stop the site (its state is kept; 'start' resumes it)."""
    # Lazy: the site client only when this command runs.
    from smartlogger.field.site import SiteClient

    with SiteClient.open(directory) as client:
        client.stop(wait_s=timeout_s)
    click.echo(f"site {directory} stopped")
