"""``smartlogger test watch``: the discharge live, from the loggers' adverts (thin wrapper).

Scans with bleak's public ``BleakScanner`` (detection callback) and feeds every advert to
``field.live.LiveWatch``; shows the live view (rich) or streams one JSON line per update
(``--json``); rings and highlights on the end alarm and exits with ``EXIT_ALARM``; saves the
watch record in the test folder (``--folder DIR``: ``DIR/watch.json``). ``--site DIR`` picks
the virtual site's radio and clock, as ``ble scan --site`` does; without it bleak's platform
backend is used unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Group
from rich.table import Table
from rich.text import Text

from smartlogger.cli.options import CURRENT, POWER, SECONDS
from smartlogger.errors import ConfigError, SmartLoggerError, TransportError
from smartlogger.quantities import Current, Power, parse_voltage
from smartlogger.testinfo import WATCH_FILE

#: Exit status when the end alarm fired (for scripts): distinct from errors (1-4).
EXIT_ALARM = 10
#: Wall seconds between two updates of the view / two JSON lines.
UPDATE_S = 0.5
#: Wall seconds between two reads of the site's virtual clock.
CLOCK_S = 0.1


@click.command("watch")
@click.option("--site", "site_dir", default=None, type=click.Path(file_okay=False, path_type=Path),
              help="Watch the loggers of the virtual site in this directory (its radio and clock).")
@click.option("--folder", default=None, type=click.Path(file_okay=False, path_type=Path),
              help="Test folder: its test.json gives the load, end voltage, blocks and test id (and its "
                   "datasheet or rated Ah the predictions' span by rate); the watch record is saved there "
                   "as watch.json.")
@click.option("--test-id", default=None, help="Follow only loggers programmed for this test id.")
@click.option("--kit-key", "kit_key_file", required=True, envvar="SMARTLOGGER_KIT_KEY",
              type=click.Path(dir_okay=False, path_type=Path),
              help="The kit key file the loggers were given at the tap (nfc program --kit-key).")
@click.option("--end-voltage", metavar="VOLTAGE",
              help="End voltage: 10.5V/block, or 1.75V/cell with --cells (a bare number is per block).")
@click.option("--cells", type=click.IntRange(1, 100), default=None,
              help="Cells per block of a lead-acid string (for V/cell, and the predictions' span rule).")
@click.option("--guard", default=None, metavar="VOLTAGE",
              help="Alarm this far above the end voltage (per block, e.g. 0.1V) [default: at it].")
@click.option("--load", "load", type=CURRENT, metavar="CURRENT", help="Constant current, e.g. 20A.")
@click.option("--load-power", type=POWER, metavar="POWER", help="Constant string power, e.g. 4800W.")
@click.option("--blocks", type=click.IntRange(1, 10000), help="Blocks in the string (names the missing).")
@click.option("--stale", "stale_s", type=SECONDS, default=10.0, show_default=True,
              help="A block is stale after this long without an advert (wall clock).")
@click.option("--stop-after-alarm", is_flag=True, help="Exit once the end alarm fired.")
@click.option("--duration", "duration_s", type=SECONDS, default=None,
              help="Exit after this long (wall clock), e.g. 30s, 2h.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line per update.")
@click.option("--post", is_flag=True,
              help="Also send the live state to the API every 2 s (the app's live panel); as smartlogger sync, "
                   "with --api and --token.")
@click.option("--api", envvar="SMARTLOGGER_API", help="API base URL for --post, e.g. https://host/api")
@click.option("--token", envvar="SMARTLOGGER_TOKEN", help="Bearer token for --post (technician or admin).")
@click.option("--server-test", "server_test", type=click.IntRange(1, 2**31 - 1), default=None,
              help="The test's id on the server for --post [default: from the --folder's sync queue or "
                   "test.json's client key].")
def watch(site_dir: Path | None, folder: Path | None, test_id: str | None, kit_key_file: Path,
          end_voltage: str | None, cells: int | None, guard: str | None, load: Current | None,
          load_power: Power | None, blocks: int | None, stale_s: float, stop_after_alarm: bool,
          duration_s: float | None, as_json: bool, post: bool, api: str | None, token: str | None,
          server_test: int | None) -> None:
    """Watch a discharge live: every block's voltage and temperature, the string, the predicted
    end of each block, and an alarm when the first block reaches its end voltage (exit 10)."""
    from smartlogger.field.kitkey import read_kit_key  # lazy: the watch's own modules
    from smartlogger.field.live import LEAD_ACID_SPAN_V_PER_CELL, LiveWatch, WatchOptions
    from smartlogger.testinfo import TestInfo

    if post and (not api or not token):
        missing = " and ".join(n for n, v in (("--api", api), ("--token", token)) if not v)
        raise click.UsageError(f"--post needs {missing} (or SMARTLOGGER_API / SMARTLOGGER_TOKEN), as sync")

    key = read_kit_key(kit_key_file)
    info = TestInfo.read(folder) if folder is not None else None
    if info is not None:
        if end_voltage is None and info.end_voltage:
            end_voltage = info.end_voltage
        if load is None and load_power is None and info.load:
            q = info.parsed_load()
            load, load_power = (q, None) if isinstance(q, Current) else (None, q)
        if blocks is None:
            blocks = info.string_blocks
        if test_id is None and info.test_id:
            test_id = info.test_id
        bv = info.battery.block_voltage_v
        if cells is None and bv and info.battery.chemistry.lower() in ("", "vrla", "flooded"):
            cells = round(bv / 2.0)  # lead-acid: 2 V cells
    if end_voltage is None:
        raise click.UsageError("give --end-voltage (or a --folder whose test.json states it)")
    if load is not None and load_power is not None:
        raise click.UsageError("--load and --load-power exclude each other")
    end_v = _block_volts(end_voltage, "--end-voltage", cells)
    guard_v = 0.0 if guard is None else _block_volts(guard, "--guard", cells)
    current_a = None if load is None else load.amps
    power_w = None if load_power is None else load_power.watts
    span = None if info is None or folder is None or cells is None else \
        _span_for_test(info, folder, end_v / cells, cells, current_a, power_w, blocks)
    opts = WatchOptions(end_v=end_v, guard_v=guard_v, current_a=current_a, power_w=power_w,
                        blocks=blocks, test_id=test_id, stale_s=stale_s, cells=cells,
                        span_v_per_cell=LEAD_ACID_SPAN_V_PER_CELL if span is None else span)
    lw = LiveWatch(key, opts)
    poster = None
    if post:
        assert api is not None and token is not None
        from smartlogger.field.livepost import LivePoster, queued_test_id  # lazy: only with --post

        client_key = info.client_key if info is not None and info.client_key else None
        if server_test is None and folder is not None:
            server_test, queued_key = queued_test_id(folder, api)
            client_key = client_key or queued_key
        if server_test is None and client_key is None:
            raise click.UsageError("--post: give --server-test ID (the test's id on the server), or a --folder "
                                   "whose test is on the server (smartlogger sync) or whose test.json has a "
                                   "client_key")
        poster = LivePoster(api, token, test_id=server_test, client_key=client_key)
    out = _Output(as_json, opts, poster)
    try:
        _run(lw, site_dir, out, stop_after_alarm=stop_after_alarm, duration_s=duration_s)
    finally:
        out.close()
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / WATCH_FILE).write_text(json.dumps(lw.record(), indent=1) + "\n", encoding="utf-8")
    if lw.alarm is not None:
        sys.exit(EXIT_ALARM)


def _span_for_test(info: Any, folder: Path, end_v_per_cell: float, cells: int, current_a: float | None,
                   power_w: float | None, blocks: int | None) -> float | None:
    """The span rule's span (V/cell) at the test's rate (docs/LIVE.md, "Prediction method"): from
    test.json's datasheet (a current table with a constant current; a W/block or W/cell table with
    a constant power and the blocks known), else from a typical VRLA table scaled to
    ``battery.rated_ah`` (a constant current); None (the slow-rate span) without these."""
    from smartlogger.analysis.testfolder import datasheet_of  # lazy: start-up
    from smartlogger.field.live import RateCurve, span_for_rate  # lazy: not at CLI start-up

    try:
        datasheet = datasheet_of(info, folder)
        if datasheet is not None:
            rate = None
            if datasheet.unit == "A":
                rate = current_a
            elif power_w is not None and blocks:
                rate = power_w / blocks / (cells if datasheet.unit == "W/cell" else 1)
            return None if rate is None else span_for_rate(RateCurve.from_datasheet(datasheet, end_v_per_cell), rate)
    except SmartLoggerError as err:
        # the watch (and its alarm) must start: only the predictions' span by rate goes without it
        click.echo(f"warning: predictions without the datasheet's rate table ({err})", err=True)
        return None
    if info.battery.rated_ah and current_a is not None:
        return span_for_rate(RateCurve.typical_vrla(info.battery.rated_ah), current_a)
    return None


def _block_volts(text: str, field: str, cells: int | None) -> float:
    v = parse_voltage(text, field=field, default_scope="block")
    if v.scope == "block":
        return v.volts
    if v.scope == "cell":
        if cells is None:
            raise ConfigError(field, f"{text} is per cell: give --cells (cells per block)")
        return v.volts * cells
    raise ConfigError(field, f"{text}: give the voltage per block or per cell, not per string")


class _Output:
    """The live view (rich) or the JSON lines; with ``--post`` the newest state also goes to the
    poster (which never blocks) and its status is shown."""

    def __init__(self, as_json: bool, opts: Any, poster: Any = None) -> None:
        self.as_json = as_json
        self.opts = opts
        self.poster = poster
        self.started_ms: int | None = None
        self.last_body: dict[str, Any] | None = None
        self.live: Any = None
        self.rang = False

    def update(self, snap: dict[str, Any]) -> None:
        status = None
        if self.poster is not None:
            from smartlogger.field.livepost import live_body  # only when posting (--post)

            self.last_body = live_body(snap, started_ms=self.started_ms, blocks_expected=self.opts.blocks)
            self.poster.offer(self.last_body)
            status = self.poster.status_line()
        if self.as_json:
            if self.poster is not None:
                snap = {**snap, "post": self.poster.status()}
            sys.stdout.write(json.dumps(snap, separators=(",", ":")) + "\n")
            sys.stdout.flush()
            return
        if self.live is None:
            from rich.live import Live  # lazy: the screen only without --json

            self.live = Live(render(snap, status), refresh_per_second=4)
            self.live.start()
        if snap["alarm"] is not None and not self.rang:
            self.rang = True
            self.live.console.bell()
        self.live.update(render(snap, status))

    def alarm(self, alarm: dict[str, Any]) -> None:
        if self.as_json:
            sys.stdout.write(json.dumps({"type": "alarm", **alarm}, separators=(",", ":")) + "\n")
            sys.stdout.flush()

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
        if self.poster is not None:
            self.poster.close(final=self.last_body)
            if not self.as_json:
                sys.stderr.write(self.poster.status_line() + "\n")


def _fmt_s(s: float | None) -> str:
    if s is None:
        return "-"
    n = round(s)
    return f"{n // 3600}:{n % 3600 // 60:02d}:{n % 60:02d}"


def render(snap: dict[str, Any], status: str | None = None) -> Any:
    """The live view of one snapshot (``status``: the posting's status line, with --post)."""
    alarm = snap["alarm"]
    head = Text()
    head.append(f"string {snap['string_v'] or 0:.2f} V  ")
    head.append(f"elapsed {_fmt_s(snap['elapsed_s'])}  ")
    if snap["delivered_ah"] is not None:
        head.append(f"delivered {snap['delivered_ah']:.1f} Ah  ")
    first = snap["predicted_end_ms"]
    if first is not None:
        head.append(f"predicted end in {_fmt_s(max(0, first - snap['now_ms']) / 1000)} "
                    f"(block {snap['predicted_first_block']})")
    lines: list[Any] = [head]
    if status is not None:
        lines.append(Text(status, style="red" if "FAILING" in status else "dim"))
    if alarm is not None:
        lines.append(Text(f"ALARM: block {alarm['position']} at {alarm['v']:.3f} V "
                          f"(alarm at {alarm['alarm_v']:.3f} V)", style="bold white on red"))
    for label, key in (("warning", "warning_blocks"), ("alarm", "alarm_blocks"), ("stale", "stale"),
                       ("missing", "missing")):
        if snap[key]:
            lines.append(Text(f"{label}: blocks {', '.join(map(str, snap[key]))}"))
    if snap["rejected"]:
        lines.append(Text("rejected adverts: " + ", ".join(f"{k} {v}" for k, v in snap["rejected"].items()),
                          style="yellow"))
    table = Table(box=None)
    for col in ("block", "V", "°C", "state", "min V", "to end", "age"):
        table.add_column(col, justify="right")
    for r in snap["blocks"]:
        style = ("bold white on red" if alarm is not None and r["position"] == alarm["position"]
                 else "red" if r["position"] in snap["alarm_blocks"]
                 else "yellow" if r["warning"] else "dim" if r["stale"] else "")
        table.add_row(str(r["position"]), f"{r['v']:.3f}", f"{r['c']:.1f}", r["state"],
                      f"{r['min_v']:.3f}", _fmt_s(r["to_end_s"]), f"{r['age_s']:.0f}s", style=style)
    return Group(*lines, table)


def _run(lw: Any, site_dir: Path | None, out: _Output, *, stop_after_alarm: bool,
         duration_s: float | None) -> None:
    from bleak import BleakScanner  # lazy: the radio stack only when a watch runs

    @contextlib.asynccontextmanager
    async def radio() -> AsyncIterator[tuple[Any, Callable[[], int]]]:
        if site_dir is None:
            yield None, lambda: time.time_ns() // 1_000_000
            return
        # Lazy: the site's radio and clock only when a site is asked for.
        from smartlogger.field.ble_virtual import VirtualBleakScanner, VirtualRadio
        from smartlogger.field.site import SiteClient

        with SiteClient.open(site_dir) as client:
            async with VirtualRadio(transport=client.ble_transport):
                yield VirtualBleakScanner, client.phone_clock_ms

    async def main() -> None:
        async with radio() as (backend, clock):
            now = [clock()]
            lw.started_ms = out.started_ms = now[0]

            def seen(device: Any, adv: Any) -> None:
                lw.receive(adv.manufacturer_data, device.address, now[0], time.monotonic())

            started = time.monotonic()
            announced = False
            last_update = 0.0
            async with BleakScanner(seen, backend=backend):
                while True:
                    await asyncio.sleep(CLOCK_S)
                    # a site's clock is a request to its process: off the loop that receives
                    now[0] = await asyncio.to_thread(clock) if site_dir is not None else clock()
                    lw.ended_ms = now[0]
                    wall = time.monotonic()
                    if lw.alarm is not None and not announced:
                        announced = True
                        out.alarm(lw.alarm)
                        out.update(lw.snapshot(now[0], wall))
                        last_update = wall
                        if stop_after_alarm:
                            return
                    if wall - last_update >= UPDATE_S:
                        out.update(lw.snapshot(now[0], wall))
                        last_update = wall
                    if duration_s is not None and wall - started >= duration_s:
                        return

    from bleak.exc import BleakError  # lazy: with the scanner above

    try:
        asyncio.run(main())
    except (BleakError, OSError) as err:
        # e.g. no BlueZ/D-Bus on this machine: one line instead of a traceback
        raise TransportError(f"Bluetooth LE scan failed ({type(err).__name__}: {err}); is an "
                             "adapter available? (--site DIR watches a virtual site)") from None
