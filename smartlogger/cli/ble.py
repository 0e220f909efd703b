"""``smartlogger ble``: scan, pull and reset loggers over Bluetooth LE (thin click wrapper).

The work is in ``smartlogger.field.ble`` (the pull client through bleak) and
``smartlogger.field.ble_virtual`` (the virtual radio). Without ``--virtual`` or
``--site`` bleak's platform backend is used unchanged. With ``--site DIR`` the phone's
Bluetooth is a controller in the virtual site's process, driven over HCI (its loggers
live there, across commands), and the phone's clock is the site's virtual time. With
``--virtual`` a new simulated string (``device.sim``, serials ``VIRT-0001``, ...) is served
on Bumble virtual controllers in this process for the one command: never a site's loggers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from smartlogger.cli.options import SECONDS
from smartlogger.errors import TransportError
from smartlogger.field import ble as fb
from smartlogger.logfile.trust import load_trust
from smartlogger.quantities import format_duration

T = TypeVar("T")

#: Serial prefix of the loggers of ``--virtual`` (a new in-process string per command).
VIRTUAL_PREFIX = "VIRT"
#: After Ctrl-C the cancelled transfers get this long (s) to close their links.
INTERRUPT_CLEANUP_S = 5.0


def _run_interruptible(main: Callable[[], Awaitable[T]]) -> T:
    """``asyncio.run(main())`` whose Ctrl-C always ends the command.

    The first Ctrl-C cancels the transfers and gives their links ``INTERRUPT_CLEANUP_S`` to
    close; a cancelled GATT request whose answer arrives late can leave a Bumble disconnect
    waiting for ever (seen on the virtual site), so the command then ends without waiting
    further. Nothing is lost by that: every logfile and pull state is written whole and
    renamed into place before the logger is told it was read.
    """

    async def guarded() -> T:
        task = asyncio.ensure_future(main())
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            # What the Bluetooth stack logs while its cancelled links close is teardown noise (Bumble,
            # the virtual site's HCI host, printed an AssertionError traceback for a connection that
            # completed after its connect was cancelled): the technician sees "interrupted" only.
            logging.getLogger("bumble").setLevel(logging.CRITICAL + 1)
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=INTERRUPT_CLEANUP_S)
            if not done:
                sys.stdout.flush()
                click.echo("interrupted (the Bluetooth links did not close in time)", err=True)
                sys.stderr.flush()
                os._exit(130)
            raise

    return asyncio.run(guarded())


def _run(virtual: bool, sim_blocks: int, body: Callable[[dict[str, Any]], Awaitable[T]],
         adapter: str | None = None, site_dir: Path | None = None) -> T:
    """Run ``body(backends)`` in an event loop, inside a simulated radio if ``virtual``, or on
    the radio of the virtual site in ``site_dir`` (with its virtual time as the phone's clock).

    ``adapter`` picks the Bluetooth adapter of bleak's platform backend (BlueZ: ``hci1``).
    """
    if virtual and site_dir is not None:
        raise click.UsageError("--virtual (an in-process string) and --site exclude each other")
    if site_dir is not None:
        return _run_at_site(site_dir, body)
    # Lazy: the simulation only for --virtual (real pulls start without the battery model).
    from smartlogger.device.sim import SimulatedTest, simulate_string_test

    # Serials of their own (VIRT-0001, ...): this string exists for this one command and must
    # never be taken for the loggers of a virtual site (SIM-0001, ...).
    sim: SimulatedTest | None = simulate_string_test(
        sim_blocks, weak=min(2, sim_blocks // 4), serial_prefix=VIRTUAL_PREFIX) if virtual else None

    @contextlib.asynccontextmanager
    async def radio() -> AsyncIterator[dict[str, Any]]:
        if sim is None:
            kwargs: dict[str, Any] = {"bluez": {"adapter": adapter}} if adapter else {}
            yield {"client": None, "scanner": None, "kwargs": kwargs}
            return
        # Lazy: only this command needs these (the other commands start without them).
        from smartlogger.device.gatt import serve_loggers
        from smartlogger.field.ble_virtual import (
            VirtualBleakClient,
            VirtualBleakScanner,
            VirtualRadio,
        )

        async with VirtualRadio() as r:
            await serve_loggers(r.air, sim.loggers)
            yield {"client": VirtualBleakClient, "scanner": VirtualBleakScanner, "kwargs": {}}

    async def main() -> T:
        async with radio() as backends:
            return await body(backends)

    if sim is None:
        return _run_interruptible(main)
    # The simulated loggers live on virtual time: the phone of this rehearsal reads the
    # virtual clock too (the end of the simulated test), as in ``smartlogger demo``.
    pull_ms = sim.start_ms + round(float(sim.trace.t_s[-1]) * 1000)
    with fb.phone_clock(lambda: pull_ms):
        return _run_interruptible(main)


def _run_at_site(site_dir: Path, body: Callable[[dict[str, Any]], Awaitable[T]]) -> T:
    # Lazy: the site client and the virtual radio only when a site is asked for.
    from smartlogger.field.ble_virtual import VirtualBleakClient, VirtualBleakScanner, VirtualRadio
    from smartlogger.field.site import SiteClient

    with SiteClient.open(site_dir) as client:

        async def main() -> T:
            async with VirtualRadio(transport=client.ble_transport):
                return await body({"client": VirtualBleakClient, "scanner": VirtualBleakScanner,
                                   "kwargs": {}})

        # At a site the phone's clock is the site's virtual clock (docs/SIMULATOR.md).
        with fb.phone_clock(client.phone_clock_ms):
            return _run_interruptible(main)


_virtual = click.option("--virtual", is_flag=True,
                        help="Use an in-process virtual radio with a simulated string of its own "
                             "(VIRT-0001...; new for each command: for loggers that live across "
                             "commands use --site).")
_site = click.option("--site", "site_dir", default=None,
                     type=click.Path(file_okay=False, path_type=Path),
                     help="Reach the loggers of the virtual site in this directory "
                          "(smartlogger sim site start DIR).")
_adapter = click.option("--adapter", default=None, metavar="NAME",
                        help="Bluetooth adapter to use (Linux/BlueZ, e.g. hci1); default: the system's.")
_sim_blocks = click.option("--sim-blocks", default=24, show_default=True,
                           type=click.IntRange(1, 1000),
                           help="With --virtual: loggers in the simulated string.")


@click.group()
def ble() -> None:
    """Pull logs over Bluetooth LE (bleak; --site/--virtual: Bumble virtual controllers)."""


@ble.command("scan")
@click.option("--timeout", "timeout_s", default=3.0, show_default=True, type=SECONDS,
              help="Scan this long, e.g. 3 or 10s (a bare number is seconds).")
@click.option("--no-connect", is_flag=True,
              help="Only list the advertisements; do not connect to read position, label, test id and clock.")
@click.option("-k", "--concurrency", default=3, show_default=True, type=click.IntRange(1, 32),
              help="Concurrent connections at most while reading the loggers.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_virtual
@_site
@_sim_blocks
@_adapter
def scan(timeout_s: float, no_connect: bool, concurrency: int, as_json: bool, virtual: bool,
         site_dir: Path | None, sim_blocks: int, adapter: str | None) -> None:
    """List loggers advertising the smartlogger service: serial, signal strength and (read from
    each logger) block position, label, test id, records not yet pulled and its clock offset."""
    async def body(b: dict[str, Any]) -> list[fb.LoggerSighting]:
        found = await fb.scan(timeout_s, backend=b["scanner"], backend_kwargs=b["kwargs"],
                              until_count=sim_blocks if virtual else None)
        if no_connect:
            return [fb.LoggerSighting(f, None, None) for f in found]
        return await fb.read_infos(found, backend=b["client"], backend_kwargs=b["kwargs"],
                                   concurrency=concurrency)

    sightings = _run(virtual, sim_blocks, body, adapter, site_dir)
    rows: list[dict[str, Any]] = []
    for sg in sightings:
        info = sg.info
        rows.append({
            "name": sg.found.name, "address": sg.found.address, "rssi_dbm": sg.found.rssi,
            "serial": info.serial if info else sg.found.name,
            "position": info.position if info else None, "label": info.label if info else None,
            "test_id": info.test_id if info else None, "unpulled_records": sg.unpulled,
            "clock_offset_ms": round(sg.clock.offset_ms) if sg.clock else None,
            "error": sg.error or None})
    rows.sort(key=lambda r: (r["position"] or 1 << 20, r["serial"] or ""))
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    click.echo(f"{'serial':<14}{'pos':>5}  {'label':<8}{'test id':<18}{'RSSI':>6}{'unpulled':>10}  clock vs phone")
    for r in rows:
        pos = "-" if r["position"] in (None, 0) else str(r["position"])
        rssi = "-" if r["rssi_dbm"] is None else f"{r['rssi_dbm']}"
        unpulled = "-" if r["unpulled_records"] is None else str(r["unpulled_records"])
        clock = "-" if r["clock_offset_ms"] is None else _offset_text(r["clock_offset_ms"])
        if r["error"]:
            clock = f"not read: {r['error']}"
        click.echo(f"{r['serial'] or '?':<14}{pos:>5}  {r['label'] or '-':<8}{r['test_id'] or '-':<18}"
                   f"{rssi:>6}{unpulled:>10}  {clock}")
    click.echo(f"{len(rows)} logger(s)")


def _offset_text(offset_ms: float) -> str:
    """``+1.2 s``, ``-3 min 20 s``, ``-276 d``: how far the logger's clock is from the phone's."""
    sign = "+" if offset_ms >= 0 else "-"
    a = abs(offset_ms) / 1000.0
    if a < 60:
        return f"{sign}{a:.1f} s"
    if a < 86400 * 2:
        return f"{sign}{format_duration(a)}"
    return f"{sign}{a / 86400:.0f} d"


@ble.command("pull")
@click.argument("serial", required=False)
@click.option("--all", "pull_all", is_flag=True, help="Pull every logger found by a scan.")
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output directory: one logfile per logger plus <serial>.pull.json state.")
@click.option("-k", "--concurrency", default=3, show_default=True, type=click.IntRange(1, 32),
              help="Concurrent connections at most.")
@click.option("--full", is_flag=True, help="The whole blackbox instead of 'since my last pull'.")
@click.option("--scan-timeout", default=5.0, show_default=True, type=SECONDS,
              help="Scan at most this long (a bare number is seconds).")
@click.option("--retries", default=4, show_default=True, type=click.IntRange(0, 50))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary instead of progress bars.")
@click.option("--trust", "trust_file", type=click.Path(dir_okay=False), envvar="SMARTLOGGER_TRUST_FILE",
              show_envvar=True, help="Trust list (TOML) for verifying each pulled logfile "
                                     "(see `smartlogger logfile verify --trust`).")
@_virtual
@_site
@_sim_blocks
@_adapter
def pull(serial: str | None, pull_all: bool, out_dir: Path, concurrency: int, full: bool,
         scan_timeout: float, retries: int, as_json: bool, trust_file: str | None, virtual: bool,
         site_dir: Path | None, sim_blocks: int, adapter: str | None) -> None:
    """Pull SERIAL, or every logger with --all, into OUT as logfiles.

    Each logfile is verified once it is on disk; only then is the logger told its records
    were read (so `ble reset` is refused for a logger whose pull was not saved and verified).
    """
    if bool(serial) == pull_all:
        raise click.UsageError("give either SERIAL or --all")
    trust = load_trust(trust_file) if trust_file else None

    async def body(b: dict[str, Any]) -> fb.FleetOutcome:
        found = await fb.scan(scan_timeout, backend=b["scanner"], backend_kwargs=b["kwargs"],
                              until_count=sim_blocks if virtual and pull_all else None,
                              until_name=serial)
        if serial:
            found = [f for f in found if f.name == serial
                     or (f.name is not None and serial.startswith(f.name))]
            if not found:
                raise TransportError("not found in a scan", serial=serial)
        options = fb.PullOptions(full=full, retries=retries, trust=trust, backend=b["client"],
                                 backend_kwargs=b["kwargs"])
        if as_json:
            return await fb.pull_many(found, out_dir, options, concurrency=concurrency)
        return await _pull_with_progress(found, out_dir, options, concurrency)

    outcome = _run(virtual, sim_blocks, body, adapter, site_dir)
    if as_json:
        click.echo(json.dumps({
            "pulled": {s: {"records": len(r.streams[0].records), "file": str(r.path) if r.path else None,
                           "status": r.status, "verified": r.status == "verified",
                           "transfer_complete": r.verified, "marked_read": r.marked_read,
                           "connections": r.connections,
                           "clock_offset_ms": r.clocks[-1].offset_ms if r.clocks else None,
                           "clock_check": None if r.clock_check is None else {
                               "ok": r.clock_check.ok, "reference": r.clock_check.reference,
                               "expected_offset_ms": r.clock_check.expected_ms,
                               "plausible_ms": r.clock_check.plausible_ms,
                               "message": r.clock_check.describe(s)}}
                       for s, r in sorted(outcome.results.items())},
            "nothing_new": sorted(outcome.nothing_new),
            "failed": outcome.failures}, indent=1))
    else:
        new = len(outcome.written)
        same = len(outcome.nothing_new)
        click.echo(f"{len(outcome.results)} pulled into {out_dir}: {new} with new records"
                   + (f", {same} with nothing new since the last pull (no file written)" if same else "")
                   + f"; {len(outcome.failures)} failed")
        by_status: dict[str, list[str]] = {}
        for s, r in sorted(outcome.results.items()):
            by_status.setdefault(r.status or "not saved", []).append(s)
        for status, serials in sorted(by_status.items()):
            note = {"verified": "hardware evidence",
                    "simulated": "SIMULATED/REPLAYED loggers: intact, not evidence",
                    "unsigned": "nothing signed them: not evidence",
                    "nothing new": "no new record since the last pull: no file written"
                    }.get(status, "NOT marked read: no reset")
            click.echo(f"  {status}: {len(serials)} ({note})")
        for serial, r in sorted(outcome.results.items()):
            if r.clock_check is not None and not r.clock_check.ok:
                click.echo(f"  {r.clock_check.describe(serial)}", err=True)
        for name, why in sorted(outcome.failures.items()):
            click.echo(f"  {name}: {why}", err=True)
        if outcome.failures:
            click.echo(f"  run the same command again to resume: {out_dir} keeps what each transfer got",
                       err=True)
    if outcome.failures:
        raise SystemExit(3)


async def _pull_with_progress(found: list[Any], out_dir: Path, options: Any,
                              concurrency: int) -> fb.FleetOutcome:
    # Lazy: rich's display only when there is something to show.
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

    with Progress(TextColumn("{task.description:<16}"), BarColumn(), TaskProgressColumn(),
                  TextColumn("{task.fields[note]}")) as bars:
        overall = bars.add_task("all loggers", total=len(found), note="")
        tasks: dict[str, Any] = {}

        def progress(serial: str, done: int, total: int) -> None:
            if serial not in tasks:
                tasks[serial] = bars.add_task(serial, total=max(total, 1), note="")
            bars.update(tasks[serial], completed=done, total=max(total, 1))

        def on_done(serial: str, result: Any, error: str | None) -> None:
            bars.advance(overall)
            if serial in tasks:
                note = "failed" if error else (result.status or "not saved")
                bars.update(tasks[serial], note=note)

        return await fb.pull_many(found, out_dir, options, concurrency=concurrency,
                                  progress=progress, on_done=on_done)


@ble.command("reset")
@click.argument("serial")
@click.option("--scan-timeout", default=5.0, show_default=True, type=SECONDS,
              help="Scan at most this long (a bare number is seconds).")
@_virtual
@_site
@_sim_blocks
@_adapter
def reset(serial: str, scan_timeout: float, virtual: bool, site_dir: Path | None, sim_blocks: int,
          adapter: str | None) -> None:
    """Reset SERIAL for reuse; the logger refuses unless everything was pulled, saved and verified.

    "Verified" here: `ble pull` wrote the logfile and found its content intact (verified,
    simulated or unsigned) before telling the logger its records were read.
    """
    async def body(b: dict[str, Any]) -> None:
        found = [f for f in await fb.scan(scan_timeout, backend=b["scanner"],
                                          backend_kwargs=b["kwargs"], until_name=serial)
                 if f.name == serial]
        if not found:
            raise TransportError("not found in a scan", serial=serial)
        await fb.reset_logger(found[0].device, backend=b["client"], backend_kwargs=b["kwargs"],
                              serial=serial)

    _run(virtual, sim_blocks, body, adapter, site_dir)
    click.echo(f"{serial}: reset for reuse")
