"""Virtual-site benchmark: the README's rehearsal at the size of a big string, timed.

Runs the rehearsal as a technician does, every step a ``smartlogger`` command in its own
process against one site (docs/SIMULATOR.md), and prints ONE JSON object:

- ``site_blocks``: loggers on the site's string (default 240; ``--blocks N`` for a small run).
- ``start_s``: ``sim site start DIR --blocks N --weak W`` (create, returns once reachable).
- ``nfc_program_s``: ``nfc program --site DIR --count N``: N taps along the string through
  nfcpy's ``udp`` driver (the site's walk; ``--site`` is ``--device udp:127.0.0.1:PORT`` with
  the site's virtual clock as the phone's).
- ``advance_10h_s``: ``sim site load DIR 10A --cutoff 1.75`` (the rated 10-h rate) and
  ``sim site advance DIR 12h --until-load-off``: the whole discharge under load, all N loggers
  logging at 1 Hz; ``discharge_virtual_h`` says how long it was in virtual time. The float
  before and the rest after (``advance 10min`` each) are ``rest_s``.
- ``stop_s`` / ``resume_s``: ``sim site stop`` and ``sim site start`` of the existing site.
- ``ble_pull_all_s``: ``ble pull --site DIR --all -o logs -k K`` (K = 3): every logger's
  whole discharge over bleak on Bumble, verified on disk.
- ``rehearsal_s`` = program + rest + discharge + pull (what a technician waits for), against
  ``goal_rehearsal_s`` (120 s at 240 blocks): ``goal_met``. ``total_wall_s`` is everything,
  start, stop/resume, analysis and truth included.
- ``site_truth_match``: ``test analyze logs --load 10A --rated-time 10h --blocks N`` against
  ``sim site truth --json``: the discharge duration within 60 s, every block's delivered Ah
  within 1 %, the same weakest blocks (the W lowest of the analysis' ranking are the W lowest
  capacities at the test's rate in the truth). ``site_truth_match.ok`` is all three. Also
  reported: how many blocks reached their end voltage by each account, and the blocks where
  they differ (a block that touches its end voltage in the last seconds of the test: the
  logger's measurement, with its sensor's error, decides).

Usage: python benchmarks/site.py [--blocks 240] [--weak 3] [--concurrency 3] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# This file is named like the standard library's ``site``; run as a script, its folder would
# shadow it for anything imported later.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

SMARTLOGGER = shutil.which("smartlogger", path=str(Path(sys.executable).parent)) or "smartlogger"
GOAL_REHEARSAL_S = 120.0
LOAD = "10A"  # the rated 10-h rate of the site's 100 Ah blocks: about 10 h to 1.75 V/cell
RATED_TIME = "10h"


def run(timings: dict[str, float], key: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``smartlogger ARGS`` in its own process; its wall time is added to ``timings[key]``."""
    t0 = time.perf_counter()
    proc = subprocess.run([SMARTLOGGER, *args], cwd=cwd, capture_output=True, text=True, timeout=3600)
    timings[key] = timings.get(key, 0.0) + time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(f"smartlogger {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}\n")
        raise SystemExit(1)
    return proc


def truth_match(result: dict[str, Any], truth: dict[str, Any], weak: int) -> dict[str, Any]:
    """The analysis of the pulled logs against the site's ground truth."""
    test = truth["test"]
    duration_error_s = abs(result["discharge"]["duration_s"] - test["duration_s"])
    by_pos = {b["position"]: b for b in test["blocks"]}
    errors = []
    for b in result["blocks"]:
        t = by_pos[b["position"]]
        errors.append(abs(b["delivered_ah"] - t["delivered_ah"]) / t["delivered_ah"])
    ranked = sorted((b for b in result["blocks"] if b["rank"] is not None), key=lambda b: b["rank"])
    weakest_found = sorted(b["position"] for b in ranked[:weak])
    weakest_truth = sorted(b["position"] for b in sorted(
        test["blocks"], key=lambda b: b["capacity_ah_test_rate"] or 0.0)[:weak])
    found = {b["position"]: b for b in result["blocks"]}
    reached_found = {p for p, b in found.items() if b["reached_end_voltage"]}
    reached_truth = {p for p, b in by_pos.items() if b["reached_end_voltage"]}
    differ = [{"position": p, "time_to_end_s_truth": by_pos[p]["time_to_end_s"],
               "min_voltage_v": found[p]["min_voltage_v"], "end_voltage_v": found[p]["end_voltage_v"]}
              for p in sorted(reached_found ^ reached_truth)]
    out = {
        "blocks_analysed": len(result["blocks"]),
        "blocks_truth": len(test["blocks"]),
        "duration_s": round(result["discharge"]["duration_s"], 1),
        "duration_s_truth": test["duration_s"],
        "duration_error_s": round(duration_error_s, 2),
        "delivered_ah_max_error_pct": round(100 * max(errors), 4),
        "weakest_found": weakest_found,
        "weakest_truth": weakest_truth,
        "reached_end_voltage_found": len(reached_found),
        "reached_end_voltage_truth": len(reached_truth),
        "reached_end_voltage_differ": differ,
    }
    # the three criteria; the end-voltage accounts are reported, not judged
    out["ok"] = (len(result["blocks"]) == len(test["blocks"]) and duration_error_s <= 60
                 and max(errors) <= 0.01 and weakest_found == weakest_truth)
    return out


def bench(blocks: int, weak: int, concurrency: int, work: Path) -> dict[str, Any]:
    site, logs = work / "site", work / "logs"
    t: dict[str, float] = {}
    wall0 = time.perf_counter()
    run(t, "start_s", "sim", "site", "start", str(site), "--blocks", str(blocks), "--weak", str(weak),
        cwd=work)
    run(t, "nfc_program_s", "nfc", "program", "--site", str(site), "--profile", "vrla-12v",
        "--count", str(blocks), "--test-id", "BENCH-1", "--timeout", "1h", "--json", cwd=work)
    run(t, "rest_s", "sim", "site", "advance", str(site), "10min", "--json", cwd=work)
    run(t, "advance_10h_s", "sim", "site", "load", str(site), LOAD, "--cutoff", "1.75", cwd=work)
    adv = json.loads(run(t, "advance_10h_s", "sim", "site", "advance", str(site), "12h",
                         "--until-load-off", "--json", cwd=work).stdout)
    run(t, "rest_s", "sim", "site", "advance", str(site), "10min", "--json", cwd=work)
    run(t, "stop_s", "sim", "site", "stop", str(site), cwd=work)
    run(t, "resume_s", "sim", "site", "start", str(site), cwd=work)
    run(t, "ble_pull_all_s", "ble", "pull", "--site", str(site), "--all", "-o", str(logs),
        "-k", str(concurrency), "--json", cwd=work)
    run(t, "analyze_s", "test", "analyze", str(logs), "--load", LOAD, "--rated-time", RATED_TIME,
        "--blocks", str(blocks), "--out", str(work / "result.json"), cwd=work)
    truth = json.loads(run(t, "truth_s", "sim", "site", "truth", str(site), "--json", cwd=work).stdout)
    run(t, "stop_s", "sim", "site", "stop", str(site), cwd=work)
    total = time.perf_counter() - wall0
    result = json.loads((work / "result.json").read_text())
    rehearsal = t["nfc_program_s"] + t["rest_s"] + t["advance_10h_s"] + t["ble_pull_all_s"]
    files = list(logs.glob("*.slog"))
    return {
        "site_blocks": blocks,
        "weak": weak,
        "concurrency": concurrency,
        "load": LOAD,
        **{k: round(v, 2) for k, v in sorted(t.items())},
        "nfc_wall_s_per_tap": round(t["nfc_program_s"] / blocks, 3),
        "discharge_virtual_h": round(adv["advanced_s"] / 3600, 3),
        "logfiles": len(files),
        "logfile_bytes": sum(f.stat().st_size for f in files),
        "rehearsal_s": round(rehearsal, 2),
        "goal_rehearsal_s": GOAL_REHEARSAL_S,
        "goal_met": rehearsal <= GOAL_REHEARSAL_S,
        "total_wall_s": round(total, 2),
        "site_truth_match": truth_match(result, truth, weak),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--blocks", type=int, default=240)
    ap.add_argument("--weak", type=int, default=3)
    ap.add_argument("--concurrency", "-k", type=int, default=3)
    ap.add_argument("--keep", type=Path, default=None,
                    help="Work in this (new) folder and keep the site and logs.")
    args = ap.parse_args()
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=False)
        work = args.keep.resolve()
        try:
            out = bench(args.blocks, args.weak, args.concurrency, work)
        finally:
            subprocess.run([SMARTLOGGER, "sim", "site", "stop", str(work / "site")], capture_output=True)
    else:
        with tempfile.TemporaryDirectory(prefix="site-bench-") as tmp:
            try:
                out = bench(args.blocks, args.weak, args.concurrency, Path(tmp))
            finally:
                subprocess.run([SMARTLOGGER, "sim", "site", "stop", str(Path(tmp) / "site")],
                               capture_output=True)
    print(json.dumps(out))
    return 0 if out["site_truth_match"]["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
