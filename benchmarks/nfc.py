"""NFC programming benchmark: a kit programmed by tapping, and a tear sweep.

Runs the field tool (``field.nfc``) against emulated loggers (``device.nfc_tag``)
through nfcpy's udp driver on both sides, and prints ONE JSON object:

- ``tag_time_s_per_tap``: modeled tag time of a programming tap (program plus
  read-back), from the commands the tag actually processed and NTAG timings
  (``TagStats.modeled_time_s``: READ 1.9 ms/16 bytes, FAST_READ by bytes on air,
  WRITE 5 ms/page, activation 2.5 ms, RF reset 5.1 ms). Goal <= 0.3 s.
- ``bytes_written``, ``commands_per_tap``: per programming tap, as the tag saw them.
- ``wall_s_per_tap``: wall time per tap over loopback UDP (includes Python on both ends).
- ``tear_points``, ``tear_failures``: the field removed before every command of a
  programming exchange, then re-tapped; a failure is a logger holding neither the
  old nor the new config, a published state that disagrees with the firmware, or a
  re-tap that does not finish the job. Goal 0.

Usage: python benchmarks/nfc.py [--quick] [--loggers N] [--port P]
"""

from __future__ import annotations

import argparse
import itertools
import json
import socket
import statistics
import sys
import time
from pathlib import Path

# This file is named like the nfcpy package; run as a script its folder would shadow it.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from smartlogger.device.nfc_tag import TagEmulator, serve_in_thread, simulated_kit  # noqa: E402
from smartlogger.field.nfc import (  # noqa: E402
    KitSession,
    Outcome,
    Type2Link,
    connect_tag,
    open_reader,
    program,
    read_state,
)
from smartlogger.field.profiles import load_profile  # noqa: E402


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def kit_run(n: int, port: int) -> dict[str, float | int]:
    profile = load_profile("vrla-12v")
    tags = simulated_kit(n, profile.config)
    emulator = TagEmulator(tags, port=port)
    thread = serve_in_thread(emulator)
    session = KitSession(profile, count=n, test_id="BENCH")
    started = time.perf_counter()
    session.run(f"udp:localhost:{port}", timeout_s=max(60.0, n * 2.0))
    wall = time.perf_counter() - started
    emulator.stop()
    thread.join(5)
    programmed = [t for t in session.taps if t.outcome is Outcome.PROGRAMMED]
    if len(programmed) != n:
        raise SystemExit(f"only {len(programmed)} of {n} loggers programmed")
    times = [t.stats.modeled_time_s() for t in tags]
    commands = [sum(1 for op, _, _ in t.stats.commands if op != "ANTICOLLISION") for t in tags]
    return {
        "loggers": n,
        "tag_time_s_per_tap": round(statistics.mean(times), 4),
        "tag_time_s_max": round(max(times), 4),
        "bytes_written": int(statistics.mean(t.stats.bytes_written for t in tags)),
        "commands_per_tap": round(statistics.mean(commands), 1),
        "activations_per_tap": round(statistics.mean(t.stats.activations for t in tags), 2),
        "reader_commands_per_tap": round(statistics.mean(t.counters.commands for t in programmed), 1),
        "wall_s_per_tap": round(wall / len(session.taps), 4),
        "wall_s_kit": round(wall, 3),
    }


def unchanged_retap(port: int) -> float:
    """Modeled tag time of a re-tap that finds the settings already there."""
    profile = load_profile("vrla-12v")
    tag = simulated_kit(1, profile.config)[0]
    emulator = TagEmulator(itertools.repeat(tag), port=port)
    thread = serve_in_thread(emulator)
    KitSession(profile, count=1).run(f"udp:localhost:{port}", timeout_s=30)
    before = tag.stats.snapshot()
    KitSession(profile, count=1).run(f"udp:localhost:{port}", timeout_s=30)
    emulator.stop()
    thread.join(5)
    return round(tag.stats.since(before).modeled_time_s(), 4)


def tear_sweep(port: int, rounds: int) -> dict[str, int]:
    profile = load_profile("vrla-12v")
    tag = simulated_kit(1, profile.config)[0]
    configs = [profile.config.with_changes(test_id="EVEN", block_position=2),
               profile.config.with_changes(test_id="ODD", block_position=1)]
    emulator = TagEmulator(itertools.repeat(tag), port=port)
    thread = serve_in_thread(emulator)
    clf = open_reader(f"udp:localhost:{port}")
    points = failures = 0
    try:
        full = program(Type2Link(connect_tag(clf, lambda: False)), configs[1])
        n_commands = full.counters.commands
        for r in range(rounds):
            for cut in range(n_commands):
                points += 1
                old, old_seq = tag.host.config, tag.host.config_seq
                new = configs[(cut + r) % 2]
                program(Type2Link(connect_tag(clf, lambda: False), cut_after=cut), new)
                link = Type2Link(connect_tag(clf, lambda: False))
                held = (tag.host.config, tag.host.config_seq)
                seen = read_state(link)
                ok = held in ((old, old_seq), (new, old_seq + 1))
                ok = ok and (seen.state.config.config, seen.state.config.seq) == held
                done = program(link, new, first=seen)
                ok = ok and done.outcome in (Outcome.PROGRAMMED, Outcome.UNCHANGED)
                ok = ok and tag.host.config == new
                failures += not ok
    finally:
        clf.close()
        emulator.stop()
        thread.join(5)
    return {"tear_points": points, "tear_failures": failures, "tear_commands_per_exchange": n_commands,
            "torn_writes_ignored": tag.stats.torn_ignored}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="10 loggers, one tear round")
    ap.add_argument("--loggers", type=int, default=None)
    ap.add_argument("--tear-rounds", type=int, default=None)
    args = ap.parse_args()
    n = args.loggers or (10 if args.quick else 100)
    rounds = args.tear_rounds or (1 if args.quick else 4)
    out: dict[str, object] = {"benchmark": "nfc", "quick": args.quick}
    out.update(kit_run(n, free_udp_port()))
    out["tag_time_s_unchanged_retap"] = unchanged_retap(free_udp_port())
    out.update(tear_sweep(free_udp_port(), rounds))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
