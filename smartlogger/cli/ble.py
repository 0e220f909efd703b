"""``smartlogger ble``: scan, pull and reset loggers over Bluetooth LE (thin click wrapper).

The work is in ``smartlogger.field.ble`` (the pull client through bleak) and
``smartlogger.field.ble_virtual`` (the ``--virtual`` radio). Without
``--virtual`` bleak's platform backend is used unchanged; with it, a simulated
string (``device.sim``) is served on Bumble virtual controllers in this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from smartlogger.errors import TransportError
from smartlogger.field import ble as fb

T = TypeVar("T")


def _run(virtual: bool, sim_blocks: int, body: Callable[[dict[str, Any]], Awaitable[T]],
         adapter: str | None = None) -> T:
    """Run ``body(backends)`` in an event loop, inside a simulated radio if ``virtual``.

    ``adapter`` picks the Bluetooth adapter of bleak's platform backend (BlueZ: ``hci1``).
    """

    @contextlib.asynccontextmanager
    async def radio() -> AsyncIterator[dict[str, Any]]:
        if not virtual:
            kwargs: dict[str, Any] = {"bluez": {"adapter": adapter}} if adapter else {}
            yield {"client": None, "scanner": None, "kwargs": kwargs}
            return
        from smartlogger.device.gatt import serve_loggers
        from smartlogger.device.sim import simulate_string_test
        from smartlogger.field.ble_virtual import (
            VirtualBleakClient,
            VirtualBleakScanner,
            VirtualRadio,
        )

        sim = simulate_string_test(sim_blocks, weak=min(2, sim_blocks // 4))
        async with VirtualRadio() as r:
            await serve_loggers(r.link, sim.loggers)
            yield {"client": VirtualBleakClient, "scanner": VirtualBleakScanner, "kwargs": {}}

    async def main() -> T:
        async with radio() as backends:
            return await body(backends)

    return asyncio.run(main())


_virtual = click.option("--virtual", is_flag=True,
                        help="Use the in-process virtual radio with a simulated string.")
_adapter = click.option("--adapter", default=None, metavar="NAME",
                        help="Bluetooth adapter to use (Linux/BlueZ, e.g. hci1); default: the system's.")
_sim_blocks = click.option("--sim-blocks", default=24, show_default=True,
                           type=click.IntRange(1, 1000),
                           help="With --virtual: loggers in the simulated string.")


@click.group()
def ble() -> None:
    """Pull logs over Bluetooth LE (bleak; --virtual: Bumble virtual controllers)."""


@ble.command("scan")
@click.option("--timeout", "timeout_s", default=3.0, show_default=True, type=float)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_virtual
@_sim_blocks
@_adapter
def scan(timeout_s: float, as_json: bool, virtual: bool, sim_blocks: int, adapter: str | None) -> None:
    """List loggers advertising the smartlogger service."""
    found = _run(virtual, sim_blocks, lambda b: fb.scan(
        timeout_s, backend=b["scanner"], backend_kwargs=b["kwargs"],
        until_count=sim_blocks if virtual else None), adapter)
    if as_json:
        click.echo(json.dumps([{"name": f.name, "address": f.address} for f in found], indent=1))
        return
    for f in found:
        click.echo(f"{f.name or '?':<24} {f.address}")
    click.echo(f"{len(found)} logger(s)")


@ble.command("pull")
@click.argument("serial", required=False)
@click.option("--all", "pull_all", is_flag=True, help="Pull every logger found by a scan.")
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output directory: one logfile per logger plus <serial>.pull.json state.")
@click.option("-k", "--concurrency", default=3, show_default=True, type=click.IntRange(1, 32),
              help="Concurrent connections at most.")
@click.option("--full", is_flag=True, help="The whole blackbox instead of 'since my last pull'.")
@click.option("--scan-timeout", default=5.0, show_default=True, type=float)
@click.option("--retries", default=4, show_default=True, type=click.IntRange(0, 50))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary instead of progress bars.")
@_virtual
@_sim_blocks
@_adapter
def pull(serial: str | None, pull_all: bool, out_dir: Path, concurrency: int, full: bool,
         scan_timeout: float, retries: int, as_json: bool, virtual: bool, sim_blocks: int,
         adapter: str | None) -> None:
    """Pull SERIAL, or every logger with --all, into OUT as logfiles."""
    if bool(serial) == pull_all:
        raise click.UsageError("give either SERIAL or --all")

    async def body(b: dict[str, Any]) -> fb.FleetOutcome:
        found = await fb.scan(scan_timeout, backend=b["scanner"], backend_kwargs=b["kwargs"],
                              until_count=sim_blocks if virtual and pull_all else None,
                              until_name=serial)
        if serial:
            found = [f for f in found if f.name == serial
                     or (f.name is not None and serial.startswith(f.name))]
            if not found:
                raise TransportError("not found in a scan", serial=serial)
        options = fb.PullOptions(full=full, retries=retries, backend=b["client"],
                                 backend_kwargs=b["kwargs"])
        if as_json:
            return await fb.pull_many(found, out_dir, options, concurrency=concurrency)
        return await _pull_with_progress(found, out_dir, options, concurrency)

    outcome = _run(virtual, sim_blocks, body, adapter)
    if as_json:
        click.echo(json.dumps({
            "pulled": {s: {"records": len(r.streams[0].records), "verified": r.verified,
                           "connections": r.connections,
                           "clock_offset_ms": r.clocks[-1].offset_ms if r.clocks else None}
                       for s, r in sorted(outcome.results.items())},
            "failed": outcome.failures}, indent=1))
    else:
        click.echo(f"{len(outcome.results)} pulled into {out_dir}, {len(outcome.failures)} failed")
        for name, why in sorted(outcome.failures.items()):
            click.echo(f"  {name}: {why}", err=True)
    if outcome.failures:
        raise SystemExit(3)


async def _pull_with_progress(found: list[Any], out_dir: Path, options: Any,
                              concurrency: int) -> fb.FleetOutcome:
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
                note = "failed" if error else ("verified" if result.verified else "UNVERIFIED")
                bars.update(tasks[serial], note=note)

        return await fb.pull_many(found, out_dir, options, concurrency=concurrency,
                                  progress=progress, on_done=on_done)


@ble.command("reset")
@click.argument("serial")
@click.option("--scan-timeout", default=5.0, show_default=True, type=float)
@_virtual
@_sim_blocks
@_adapter
def reset(serial: str, scan_timeout: float, virtual: bool, sim_blocks: int,
          adapter: str | None) -> None:
    """Reset SERIAL for reuse; the logger refuses unless everything was pulled and verified."""
    async def body(b: dict[str, Any]) -> None:
        found = [f for f in await fb.scan(scan_timeout, backend=b["scanner"],
                                          backend_kwargs=b["kwargs"], until_name=serial)
                 if f.name == serial]
        if not found:
            raise TransportError("not found in a scan", serial=serial)
        await fb.reset_logger(found[0].device, backend=b["client"], backend_kwargs=b["kwargs"],
                              serial=serial)

    _run(virtual, sim_blocks, body, adapter)
    click.echo(f"{serial}: reset for reuse")
