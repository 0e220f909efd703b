"""A capacity test after a year on float (issue 18): what ``smartlogger test analyze`` of its
folder costs. Prints ONE JSON object:

- ``loggers``, ``float_days``, ``test_h``: the test: each logger's file holds ``float_days`` of
  float samples at 60 s (``float_samples`` each), then a ``test_h``-hour discharge at 1 Hz and
  10 min of rest (``samples_per_file`` in all; ``folder_mb`` the files' bytes).
- ``analyze_peak_mb``, ``analyze_s``: peak resident memory (``VmHWM`` of a fresh process running
  the CLI's ``test analyze --json`` on the folder, minus its resident size before) and wall time.
- ``kept_samples``: samples the loaded logs hold (the loader's ``window_history``; every sample
  of the files without it), and ``capacity_pct`` the string capacity found.

The files are built from encoded sample blocks shared by every logger (a float day's blocks,
the discharge's), so building is fast; each logger has its own serial, configuration, position,
hash chains and signed pull (the clock set by a tap at the start, read by the pull).

Usage: ``python benchmarks/history.py [--loggers 240] [--float-days 365] [--test-h 10]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from smartlogger.logfile import LogfileMetadata, simulated_credentials
from smartlogger.logfile.records import SAMPLE_HEAD, RecordType
from smartlogger.logfile.samples import encode_samples
from smartlogger.model import ClockSet, ConfigChange, Event, EventKind
from smartlogger.testing.hostile import _append_raw
from smartlogger.testing.logfile_examples import (
    EPOCH_2026_MS,
    ChainedLog,
    discharge_trace,
    example_config,
    example_identity,
    float_trace,
)

BLOCK = 256


def _payloads(mv: np.ndarray, dc: np.ndarray) -> list[bytes]:
    return [encode_samples(mv[i:i + BLOCK], dc[i:i + BLOCK]) for i in range(0, mv.size, BLOCK)]


def build(folder: Path, loggers: int, float_days: float, test_h: float) -> int:
    """Write the test's files into ``folder``; returns the samples per file."""
    n_float = int(float_days * 1440)
    fmv, fdc = float_trace(1440 * 7)  # a week of float, repeated
    week = _payloads(fmv, fdc)
    n_dis = int(test_h * 3600)
    dmv, ddc = discharge_trace(n_dis, start_mv=12_700, end_mv=10_400)
    dis = _payloads(dmv, ddc)
    rest = _payloads(np.full(600, 12_650, dtype=np.int32), np.full(600, 240, dtype=np.int32))
    t0 = EPOCH_2026_MS
    for k in range(loggers):
        serial = f"SIM-H{k + 1:04d}"
        ident = example_identity(serial)
        log = ChainedLog(serial)
        log.append(Event(t0, EventKind.POWER_ON))
        log.append(ClockSet(t0 + 5_000, t0 + 5_000))
        cfg = example_config().with_changes(block_label=f"B{k + 1:03d}", block_position=k + 1, test_id="T-H")
        log.append(ConfigChange(t0 + 6_000, cfg, 1))
        t, left, i = t0 + 60_000, n_float, 0
        while left > 0:
            p = week[i % len(week)]
            n = int.from_bytes(p[1:5], "little")
            n = min(n, left)
            if n < int.from_bytes(p[1:5], "little"):
                p = encode_samples(fmv[:n], fdc[:n])
            _append_raw(log, bytes([RecordType.SAMPLE_BLOCK]) + SAMPLE_HEAD.pack(t, 60_000) + p)
            t += n * 60_000
            left -= n
            i += 1
        log.append(Event(t, EventKind.DISCHARGE_START, value=12_650))
        for j, p in enumerate(dis):
            _append_raw(log, bytes([RecordType.SAMPLE_BLOCK]) + SAMPLE_HEAD.pack(t + j * BLOCK * 1000, 1000) + p)
        t += n_dis * 1000
        log.append(Event(t, EventKind.DISCHARGE_END, value=int(dmv.min())))
        for j, p in enumerate(rest):
            _append_raw(log, bytes([RecordType.SAMPLE_BLOCK]) + SAMPLE_HEAD.pack(t + j * BLOCK * 1000, 1000) + p)
        t += 600_000
        cred = simulated_credentials(ident)
        att = log.sign(cred, bytes(16), t + 1_000, t + 1_000)
        data = log.logfile(ident, cred, [att], LogfileMetadata(cfg.block_label, k + 1, {"test_id": "T-H"}))
        (folder / f"{serial}.slog").write_bytes(data)
    return n_float + n_dis + 600


CHILD = """
import json, sys, time
def hwm():
    for line in open('/proc/self/status'):
        if line.startswith(('VmHWM', 'VmRSS')):
            yield int(line.split()[1]) / 1024
import smartlogger.cli, smartlogger.analysis.loading  # imports before the baseline
rss0 = list(hwm())[1]
from smartlogger.analysis.inputs import ConstantCurrent, TestMetadata
from smartlogger.analysis import loading
files = loading.expand_paths([sys.argv[1]])
meta = TestMetadata(ConstantCurrent(10.0), rated_time_s=36000.0)
t = time.perf_counter()
if hasattr(loading, "analyze_files"):
    loaded, result = loading.analyze_files(lambda: files, meta)
else:  # the code before issue 18's window: the whole logs
    from smartlogger.analysis.analyze import analyze_test
    loaded = loading.load_test_files(files)
    result = analyze_test(loaded.logs, meta, excluded=loaded.excluded)
s = time.perf_counter() - t
print(json.dumps({"peak_mb": round(list(hwm())[0] - rss0, 1), "s": round(s, 2),
                  "kept": sum(len(log) for log in loaded.logs), "capacity_pct": result.capacity.capacity_pct}))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--loggers", type=int, default=240)
    ap.add_argument("--float-days", type=float, default=365.0)
    ap.add_argument("--test-h", type=float, default=10.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="sl-history-") as tmp:
        folder = Path(tmp)
        t = time.perf_counter()
        per_file = build(folder, args.loggers, args.float_days, args.test_h)
        build_s = time.perf_counter() - t
        size = sum(p.stat().st_size for p in folder.iterdir())
        run = subprocess.run([sys.executable, "-c", CHILD, str(folder)], capture_output=True, text=True, check=True)
        got = json.loads(run.stdout.strip().splitlines()[-1])
    print(json.dumps({
        "loggers": args.loggers, "float_days": args.float_days, "test_h": args.test_h,
        "float_samples": int(args.float_days * 1440), "samples_per_file": per_file,
        "folder_mb": round(size / 1e6, 1), "build_s": round(build_s, 1),
        "analyze_peak_mb": got["peak_mb"], "analyze_s": got["s"], "kept_samples": got["kept"],
        "capacity_pct": got["capacity_pct"],
    }))


if __name__ == "__main__":
    main()
