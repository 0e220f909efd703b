"""``smartlogger nfc``: program loggers by NFC tap, and emulate loggers to try it (thin click wrapper).

The work is in ``smartlogger.field.nfc`` (the phone side, through nfcpy),
``smartlogger.field.profiles`` (threshold profiles) and
``smartlogger.device.nfc_tag`` (the emulated Type 2 tags).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from smartlogger.cli.options import SECONDS
from smartlogger.errors import ConfigError, TransportError
from smartlogger.quantities import format_duration


@click.group()
def nfc() -> None:
    """Program loggers by NFC tap (reader: usb, tty:..., udp:HOST:PORT)."""


@nfc.command("program")
@click.option("--profile", "profile_spec", default="vrla-12v", show_default=True,
              help="Preset key (see 'nfc profiles') or path to a profile TOML file.")
@click.option("--device", default=None, help="nfcpy reader path: usb, tty:USB0:pn532, udp:HOST:PORT.")
@click.option("--site", "site_dir", default=None, type=click.Path(file_okay=False, path_type=Path),
              help="Rehearse at the virtual site in this directory: its NFC walk, and its "
                   "virtual time as the phone's clock (instead of --device).")
@click.option("--count", default=1, show_default=True, type=click.IntRange(1, 65535),
              help="Loggers in the kit: stop when this many are done.")
@click.option("--start-position", default=1, show_default=True, type=click.IntRange(1, 65535),
              help="Position (block number) of the first logger tapped.")
@click.option("--test-id", default="", help="Capacity test id written to every logger (<= 32 bytes).")
@click.option("--label-prefix", default="B", show_default=True, help="Block label = prefix + position.")
@click.option("--rated-ah", default=None, type=float, help="Override the profile's rated capacity, Ah.")
@click.option("--timeout", "timeout_s", default=None, type=SECONDS,
              help="Give up after this long, e.g. 120 or 5min (a bare number is seconds).")
@click.option("--kit-key", "kit_key_file", default=None, envvar="SMARTLOGGER_KIT_KEY",
              type=click.Path(dir_okay=False, path_type=Path),
              help="Give each logger this kit key for its live adverts (made if the file does "
                   "not exist; 'test watch --kit-key' reads them). Env SMARTLOGGER_KIT_KEY.")
@click.option("--json", "as_json", is_flag=True, help="Print the session as JSON instead of a live list.")
def program(profile_spec: str, device: str | None, site_dir: Path | None, count: int,
            start_position: int, test_id: str, label_prefix: str, rated_ah: float | None,
            timeout_s: float | None, kit_key_file: Path | None, as_json: bool) -> None:
    """Wait for taps and program each logger with PROFILE; tap order numbers the blocks."""
    # Lazy: only this command needs these (the other commands start without them).
    from smartlogger.field.nfc import KitSession, Outcome, phone_clock_ms, render_kit
    from smartlogger.field.profiles import load_profile

    profile = load_profile(profile_spec, rated_ah=rated_ah)
    if len(test_id.encode()) > 32:
        raise ConfigError("test_id", "test id is longer than 32 bytes")
    kit_key = None
    if kit_key_file is not None:
        from smartlogger.field.kitkey import ensure_kit_key  # lazy: only with --kit-key

        kit_key, made = ensure_kit_key(kit_key_file)
        if made:
            click.echo(f"made a new kit key (id {kit_key.key_id}) in {kit_key_file}: keep it like a "
                       "password", err=True)
    with _reader(device, site_dir) as (reader, clock):
        session = KitSession(profile, count=count, start_position=start_position, test_id=test_id,
                             label_prefix=label_prefix, clock=clock or phone_clock_ms,
                             kit_key=kit_key)
        if as_json:
            session.run(reader, timeout_s=timeout_s)
            click.echo(json.dumps(session.to_json(), indent=2))
        else:
            # Lazy: rich's display only when there is something to show.
            from rich.console import Console
            from rich.live import Live

            console = Console(stderr=False)
            console.print(f"Tap loggers with the reader at {reader} ({count} to go). Ctrl-C stops.")
            with Live(render_kit(session), console=console, refresh_per_second=8) as live:
                session.on_update = lambda s, _r: live.update(render_kit(s))
                session.run(reader, timeout_s=timeout_s)
    bad = [r for r in session.ordered_rows() if r.result.outcome in (Outcome.REJECTED, Outcome.FAILED)]
    if session.done < count or bad:
        # Say why the exit code is not 0: on stderr, so --json output stays one document.
        if session.done < count:
            why = f"timed out after {format_duration(timeout_s)}" if timeout_s is not None else "stopped"
            rest = "" if bad else (f"; tap the rest with --start-position {start_position + session.done} "
                                   f"--count {count - session.done}")
            click.echo(f"error: {why} with {session.done} of {count} loggers done{rest}", err=True)
        for r in bad:
            click.echo(f"error: {r.serial or r.result.uid} at position {r.position}: "
                       f"{r.result.outcome.value}: {r.result.message or 'tap again'}", err=True)
        sys.exit(3)


@contextlib.contextmanager
def _reader(device: str | None, site_dir: Path | None) -> Iterator[tuple[str, Callable[[], int] | None]]:
    """The reader moniker and the phone's clock: --device as given (the phone's own clock), or
    the virtual site's NFC walk and its virtual clock (docs/SIMULATOR.md)."""
    if (device is None) == (site_dir is None):
        raise click.UsageError("give either --device or --site")
    if device is not None:
        yield device, None
        return
    # Lazy: the site client only when a site is asked for.
    from smartlogger.field.site import SiteClient

    assert site_dir is not None
    with SiteClient.open(site_dir) as client:
        yield client.nfc_device, client.phone_clock_ms


@nfc.command("read")
@click.option("--device", default=None, help="nfcpy reader path: usb, tty:..., udp:HOST:PORT.")
@click.option("--site", "site_dir", default=None, type=click.Path(file_okay=False, path_type=Path),
              help="Read at the virtual site in this directory (instead of --device).")
@click.option("--timeout", "timeout_s", default=10.0, show_default=True, type=SECONDS,
              help="Wait this long for a tap (a bare number is seconds).")
@click.option("--json", "as_json", is_flag=True)
def read(device: str | None, site_dir: Path | None, timeout_s: float, as_json: bool) -> None:
    """Read one logger's published state (identity, config, status) without writing."""
    # Lazy: the reader's code only when this command runs.
    from smartlogger.field.nfc import (
        Type2Link,
        connect_tag,
        open_reader,
        phone_clock_ms,
        read_state,
    )
    from smartlogger.field.profiles import describe_thresholds

    deadline = time.monotonic() + timeout_s
    with _reader(device, site_dir) as (reader, clock):
        clf = open_reader(reader)
        try:
            tag = connect_tag(clf, lambda: time.monotonic() > deadline)
            if tag is None:
                raise TransportError(f"no tag within {timeout_s:g} s at {reader}")
            got = read_state(Type2Link(tag), clock or phone_clock_ms)
        finally:
            clf.close()
    s, st = got.state, got.state.status
    data = {
        "uid": bytes(tag.identifier).hex().upper(), "serial": s.identity.serial,
        "generation": int(s.identity.generation), "markers": list(s.identity.markers),
        "firmware": s.identity.firmware, "config_seq": s.config.seq,
        "block": s.config.config.block_type.describe(),
        "label": s.config.config.block_label, "position": s.config.config.block_position,
        "test_id": s.config.config.test_id, "thresholds": describe_thresholds(s.config.config),
        "clock_offset_ms": got.offset_ms, "ack_seq": st.ack_seq, "ack": st.ack_reason.name.lower(),
        "ack_detail": st.ack_detail, "block_mv": st.block_mv, "block_dc": st.block_dc,
        "records": st.records, "discharging": st.discharging,
        "last_test": None if st.last_test is None else vars(st.last_test),
        "writable": got.writable,
    }
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        for k, v in data.items():
            click.echo(f"{k:16} {v}")


@nfc.command("emulate")
@click.option("--port", default=54321, show_default=True, type=click.IntRange(1, 65535))
@click.option("--host", default="localhost", show_default=True)
@click.option("--count", default=8, show_default=True, type=click.IntRange(1, 10000),
              help="Simulated loggers along the string, presented one after another.")
@click.option("--profile", "profile_spec", default="vrla-12v", show_default=True,
              help="Block type (and factory thresholds) of the simulated loggers.")
@click.option("--gen1", "gen1", multiple=True, type=click.IntRange(1, 10000),
              help="Position of a generation-1 logger (repeatable).")
@click.option("--serial-prefix", default="SIM", show_default=True)
@click.option("--loop", is_flag=True, help="Start the walk again after the last logger.")
def emulate(port: int, host: str, count: int, profile_spec: str, gen1: tuple[int, ...],
            serial_prefix: str, loop: bool) -> None:
    """Run simulated loggers as NFC Type 2 tags on udp:HOST:PORT (Ctrl-C stops).

    Each logger stays in the field until the reader has used it and turns its
    RF field off; then the next logger of the walk is presented.
    """
    # Lazy: only this command needs these (the other commands start without them).
    from smartlogger.device.nfc_tag import TagEmulator, simulated_kit
    from smartlogger.field.profiles import load_profile

    factory = load_profile(profile_spec).config
    tags = simulated_kit(count, factory, gen1_positions=gen1, serial_prefix=serial_prefix)
    walk = itertools.cycle(tags) if loop else iter(tags)
    emulator = TagEmulator(walk, host=host, port=port)

    def ended(tag: object) -> None:
        # Lazy: only this command needs these (the other commands start without them).
        from smartlogger.device.nfc_tag import LoggerTag

        assert isinstance(tag, LoggerTag)
        h = tag.host
        click.echo(f"{tag.serial} gen{int(h.identity.generation)}: config seq {h.config_seq} "
                   f"label {h.config.block_label!r} pos {h.config.block_position} "
                   f"[{tag.stats.applied} applied, {tag.stats.rejected} refused, "
                   f"{tag.stats.torn_ignored} torn]")

    emulator.on_presentation_end = ended
    click.echo(f"emulating {count} simulated loggers on udp:{host}:{port}; "
               f"program with: smartlogger nfc program --device udp:{host}:{port} --count {count}")
    try:
        emulator.serve()
    except KeyboardInterrupt:
        emulator.stop()


@nfc.command("profiles")
@click.option("--json", "as_json", is_flag=True)
def profiles(as_json: bool) -> None:
    """List the bundled threshold profile presets: warning and alarm levels, log intervals."""
    # Lazy: only this command needs these (the other commands start without them).
    from smartlogger.field.profiles import (
        describe_thresholds,
        load_profile,
        presets,
        thresholds_dict,
    )

    rows: list[dict[str, Any]] = []
    for key in presets():
        p = load_profile(key)
        rows.append({"preset": key, "name": p.name, "block": p.config.block_type.describe(),
                     "thresholds": describe_thresholds(p.config), "levels": thresholds_dict(p.config),
                     "description": p.description})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    # A plain fixed-width table: the key is in the header, and it stays one line per profile
    # in a 100-column terminal (and in a pipe).
    click.echo("Threshold levels: alarm< and warn< are crossed below, warn> and alarm> above "
               "(warn = yellow, alarm = red).")
    click.echo(f"{'':12} {'':15} {'block voltage, V':^27}   {'temperature, C':^27}   {'log interval, s':>16}")
    cols = "".join(f"{c:>7}" for c in ("alarm<", "warn<", "warn>", "alarm>"))
    click.echo(f"{'preset':12} {'block':15}{cols}   {cols}   {'float':>8}{'dischg':>8}")
    for r in rows:
        lv = r["levels"]
        bt = load_profile(r["preset"]).config.block_type
        volts = "".join(f"{lv[k]:>7.2f}" for k in ("v_low_alarm_v", "v_low_warn_v", "v_high_warn_v", "v_high_alarm_v"))
        temps = "".join(f"{lv[k]:>7.1f}" for k in ("t_low_alarm_c", "t_low_warn_c", "t_high_warn_c", "t_high_alarm_c"))
        block = f"{bt.nominal_mv / 1000:g} V {bt.chemistry.value}"
        click.echo(f"{r['preset']:12} {block:15}{volts}   {temps}   {lv['float_rate_s']:>8}{lv['discharge_rate_s']:>8}")
