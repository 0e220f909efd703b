"""``smartlogger logfile``: inspect, verify, convert and chart logfiles (thin wrappers over
smartlogger.logfile; ``series`` over ``smartlogger.export.chart_series``, as the API's chart series).

Exit codes of ``verify``: 0 verified (hardware evidence: a trusted production certificate and
every check passed), 3 unsigned (gen-1 or no signature), 4 unreadable, 5 tampered (any failed
check, including an untrusted certificate or a stale pull), 6 simulated (an intact file of a
SIMULATED/REPLAYED logger; ``--allow-simulated`` accepts it). For several files the most severe
status that was not accepted decides (tampered, unreadable, unsigned, simulated).
"""

from __future__ import annotations

import errno
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from smartlogger.errors import LogfileError
from smartlogger.export.chart_series import DEFAULT_MAX_POINTS, chart_series
from smartlogger.logfile.convert import clock_observations, convert, load_events, load_samples
from smartlogger.logfile.format import read_logfile
from smartlogger.logfile.trust import TRUST_ENV, load_trust, trust_toml
from smartlogger.logfile.verify import EXIT_CODES, VerifyReport, verify_logfile

#: Most severe first: the exit code of several files is that of the worst one not accepted.
_SEVERITY = ("tampered", "unreadable", "unsigned", "simulated")

trust_option = click.option(
    "--trust", "trust_file", type=click.Path(dir_okay=False), envvar=TRUST_ENV, show_envvar=True,
    help="Trust list (TOML) of the certificate authorities to accept; default: the manufacturer's "
         "production root (`smartlogger logfile trust` prints it).")


def _iso(ms: int | None) -> str:
    if ms is None:
        return "-"
    try:
        return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    except (OverflowError, OSError, ValueError):
        return f"{ms} ms"


@click.group()
def logfile() -> None:
    """Inspect, verify and convert logfiles (.slog, and generation-1 files)."""


@logfile.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def info(file: str, as_json: bool) -> None:
    """Show who logged FILE, what it holds and its time span."""
    lf = read_logfile(file, check_hash=False)
    t_ms, mv, _dc = load_samples(lf)
    out: dict[str, Any] = {
        "file": file, "sha256": lf.sha256, "size": lf.size,
        "format_version": f"{lf.version[0]}.{lf.version[1]}",
        "serial": lf.identity.serial, "generation": int(lf.identity.generation),
        "firmware": lf.identity.firmware, "markers": list(lf.identity.markers),
        "block_label": lf.metadata.block_label, "block_position": lf.metadata.block_position,
        "test": lf.metadata.test, "signed": lf.signed,
        "streams": [{"name": st.name, "first_seq": st.anchor_seq, "next_seq": st.next_seq,
                     "records": len(st.records)} for st in lf.streams],
        "samples": int(t_ms.size),
        "first_sample_ms": int(t_ms.min()) if t_ms.size else None,
        "last_sample_ms": int(t_ms.max()) if t_ms.size else None,
        "min_mv": int(mv.min()) if mv.size else None, "max_mv": int(mv.max()) if mv.size else None,
        "events": len(load_events(lf)), "config_changes": len(lf.config_history),
        "pulls": [{"counter": a.counter, "device_ms": a.device_ms, "phone_ms": a.phone_ms}
                  for a in lf.attestations],
        "clock_observations": [{"source": o.source, "device_ms": o.device_ms,
                                "offset_ms": o.offset_ms} for o in clock_observations(lf)],
    }
    if as_json:
        click.echo(json.dumps(out, indent=2))
        return
    markers = f" [{', '.join(out['markers'])}]" if out["markers"] else ""
    click.echo(f"{file}: logger {out['serial']} gen {out['generation']} firmware {out['firmware']}{markers}")
    click.echo(f"  format {out['format_version']}, {out['size']} bytes, sha256 {lf.sha256}")
    if lf.metadata.block_label or lf.metadata.block_position:
        click.echo(f"  block {lf.metadata.block_label!r} position {lf.metadata.block_position}")
    for st in out["streams"]:
        span = f"seq {st['first_seq']}..{st['next_seq'] - 1}" if st["records"] else "empty"
        click.echo(f"  {st['name']} stream: {st['records']} records, {span}")
    click.echo(f"  {out['samples']} samples from {_iso(out['first_sample_ms'])} to {_iso(out['last_sample_ms'])}")
    click.echo(f"  {out['events']} events, {out['config_changes']} configuration(s), "
               f"{len(out['pulls'])} signed pull(s){'' if lf.signed else ' (UNSIGNED)'}")


@logfile.command()
@click.argument("files", nargs=-1, required=True, type=click.Path())
@click.option("--json", "as_json", is_flag=True,
              help="Print the report as one JSON object (a list of them for several files).")
@click.option("--expected-nonce", help="Hex nonce of the pull that must be the latest.")
@click.option("--min-pull", type=int, help="Highest pull counter already known for this logger.")
@trust_option
@click.option("--allow-simulated", is_flag=True,
              help="Also exit 0 for intact files of SIMULATED/REPLAYED loggers (never evidence).")
def verify(files: tuple[str, ...], as_json: bool, expected_nonce: str | None, min_pull: int | None,
           trust_file: str | None, allow_simulated: bool) -> None:
    """Verify FILES (logfiles, or folders of them) as evidence: certificate, signatures, chain,
    continuity, truncation, splices, freshness.

    Exit 0 only when every file is hardware evidence (verified); otherwise the worst status
    decides: 5 tampered, 4 unreadable, 3 unsigned, 6 simulated (accepted with --allow-simulated).
    """
    paths: list[str] = []
    for f in files:
        p = Path(f)
        if p.is_dir():
            found = sorted(str(q) for q in p.iterdir() if q.suffix == ".slog" and q.is_file())
            if not found:
                raise LogfileError(f"{f} holds no .slog files")
            paths.extend(found)
        elif not p.exists():
            # A typo is not an unreadable logfile: say so in the usual one line (exit 2).
            raise FileNotFoundError(errno.ENOENT, "no such file", f)
        else:
            paths.append(f)
    nonce = None
    if expected_nonce is not None:
        try:
            nonce = bytes.fromhex(expected_nonce)
        except ValueError:
            raise click.BadParameter("not hex", param_hint="--expected-nonce") from None
    trust = load_trust(trust_file) if trust_file else None
    reports = [verify_logfile(f, trust=trust, expected_nonce=nonce, min_pull_counter=min_pull) for f in paths]
    refused = {r.status for r in reports if not r.accepted(allow_simulated=allow_simulated)}
    code = next((EXIT_CODES[s] for s in _SEVERITY if s in refused), 0)
    if as_json:
        docs = [{**r.to_dict(), "accepted": r.accepted(allow_simulated=allow_simulated),
                 "exit_code": 0 if r.accepted(allow_simulated=allow_simulated) else r.exit_code}
                for r in reports]
        click.echo(json.dumps(docs[0] if len(files) == 1 and len(paths) == 1 else docs, indent=2))
    else:
        for file, report in zip(paths, reports, strict=True):
            _print_report(file, report, allow_simulated)
    sys.exit(code)


@logfile.command("trust")
def trust_cmd() -> None:
    """Print the default trust list (TOML): a starting point for a --trust file."""
    click.echo(trust_toml(), nl=False)


def _print_report(file: str, report: VerifyReport, allow_simulated: bool = False) -> None:
    click.echo(f"{report.status.upper()}: {file}")
    click.echo(f"  {report.verdict}")
    if report.status == "simulated" and allow_simulated:
        click.echo("  accepted as simulated data (--allow-simulated): not evidence from real hardware")
    markers = f" [{', '.join(report.markers)}]" if report.markers else ""
    if report.serial:
        click.echo(f"  logger {report.serial}{markers}, generation {report.generation}, "
                   f"firmware {report.firmware}")
    if report.authority:
        click.echo(f"  certificate: {report.authority} authority, device key {report.device_key}")
    for st in report.streams:
        over = (f", seq 0..{st.oldest_on_device - 1} overwritten on the device"
                if st.oldest_on_device else "")
        span = f"seq {st.first_seq}..{st.next_seq - 1}" if st.records else "empty"
        click.echo(f"  {st.name}: {span} ({st.records} records), "
                   f"chain {'intact' if st.chain_intact else 'BROKEN'}{over}")
    if report.latest_pull:
        lp = report.latest_pull
        click.echo(f"  latest pull #{lp['counter']} at device {_iso(lp['device_ms'])}, "
                   f"phone {_iso(lp['phone_ms'])}; freshness {report.freshness}")
    for cj in report.clock_jumps:
        click.echo(f"  clock set at seq {cj['seq']}: {cj['jump_ms'] / 1000:+.3f} s")
    for p in report.problems:
        where = f" (byte {p.offset})" if p.offset is not None else ""
        click.echo(f"  PROBLEM {p.kind}: {p.message}{where}")
    for w in report.warnings:
        click.echo(f"  note: {w}")


@logfile.command(name="convert")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("-o", "--output", "out", required=True, type=click.Path(dir_okay=False),
              help="OUT.csv or OUT.parquet")
def convert_cmd(file: str, out: str) -> None:
    """Convert FILE's samples to CSV (ISO-8601 UTC, V, C) or Parquet."""
    try:
        rows = convert(file, out)
    except ValueError as err:
        if isinstance(err, LogfileError):
            raise
        raise click.BadParameter(str(err), param_hint="-o") from None
    click.echo(f"wrote {rows} samples to {out}")


def _device_ms(text: str | None, option: str) -> int | None:
    """``--from``/``--to``: device time as ms since the epoch, or an ISO-8601 time (UTC if no zone)."""
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{text!r} is neither ms since the epoch nor an ISO-8601 time "
                                 "such as 2026-11-21T08:00:00Z", param_hint=option) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return round(when.timestamp() * 1000)


@logfile.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--from", "from_", metavar="TIME", help="Window start: ISO-8601 (UTC unless a zone is given) "
              "or ms since the epoch, device time. Default: the first sample.")
@click.option("--to", metavar="TIME", help="Window end (inclusive), as --from. Default: the last sample.")
@click.option("--max-points", type=click.IntRange(10, 100_000), default=DEFAULT_MAX_POINTS, show_default=True,
              help="At most this many points per quantity (min and max per time bucket beyond).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (as GET /api/logfiles/ID/series).")
def series(file: str, from_: str | None, to: str | None, max_points: int, as_json: bool) -> None:
    """Voltage and temperature of FILE over a window, reduced for a chart (CSV: time, V, C)."""
    lo, hi = _device_ms(from_, "--from"), _device_ms(to, "--to")
    if lo is not None and hi is not None and hi < lo:
        raise click.BadParameter("the window ends before it starts", param_hint="--to")
    out = chart_series(read_logfile(file, decode=False), from_ms=lo, to_ms=hi, max_points=max_points)
    if as_json:
        click.echo(json.dumps(out.to_dict()))
        return
    kind = f"min/max of {out.samples} samples" if out.reduced else f"{out.samples} samples"
    click.echo(f"# {out.serial}: {len(out.t_ms)} points ({kind}) from {_iso(out.from_ms)} to {_iso(out.to_ms)}")
    click.echo("time_utc,voltage_v,temperature_c")
    for t, mv, dc in zip(out.t_ms, out.mv, out.dc, strict=True):
        click.echo(f"{_iso(t)},{mv / 1000:.3f},{dc / 10:.1f}")
