"""Offline check of the live watch's end predictions on the battery model, rate by rate.

For each ``--loads`` current and each ``--seeds`` seed: a string of ``--blocks`` 12 V lead-acid
blocks of ``--rated-ah`` (``--weak`` of them weak; ``device.battery.build_string``, as a
virtual site builds it) is discharged by the battery model to the string's end voltage; every
block's voltage, one sample every ``--sample-s`` s from its float state on, goes as a sealed
live advert through ``field.live.LiveWatch.receive`` (the watch's real code path: time lines,
history thinning, the span rule and the knee fit), with the options ``test watch`` would use
(1.75 V/cell, 6 cells, the load; ``--datasheet`` as test.json's datasheet). At half the
discharge time (the first block's time to its end voltage, as ``benchmarks/live.py`` measures
it) the watch's ``snapshot`` gives every block's predicted end; the error of a block that
reached its end voltage is |predicted - actual| / actual time to end. No sensor errors (the
loggers' gain and offset errors are ``benchmarks/live.py``'s). Prints ONE JSON object: per
load, the worst and median error over the blocks that reached their end voltage, how many
blocks that is, how many had no prediction, and the signed errors (+ = predicted too late).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from smartlogger.analysis.inputs import read_datasheet_csv
from smartlogger.device.battery import build_string
from smartlogger.device.load import ConstantCurrent
from smartlogger.field.live import (
    LEAD_ACID_SPAN_V_PER_CELL,
    LiveWatch,
    RateCurve,
    WatchOptions,
    span_for_rate,
)
from smartlogger.model import BlockType
from smartlogger.protocol.live import COMPANY_ID, KitKey, LiveAdvert, LiveState, tag_for_test

KEY = KitKey(bytes(range(16)))
TEST_ID = "OFFLINE"


def span_for(load_a: float, args: argparse.Namespace) -> float:
    """The span (V/cell) the watch uses at this load: ``test watch`` with test.json's datasheet
    (``--datasheet``) or rated Ah, or the span of every rate (``--no-rate-curve``)."""
    if args.no_rate_curve:
        return LEAD_ACID_SPAN_V_PER_CELL
    if args.datasheet is not None:
        return span_for_rate(RateCurve.from_datasheet(read_datasheet_csv(args.datasheet), 1.75), load_a)
    return span_for_rate(RateCurve.typical_vrla(args.rated_ah), load_a)


def run_one(load_a: float, seed: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    """One string at one load: the signed error (%) of every block that reached its end voltage."""
    model = build_string(args.blocks, BlockType.lead_acid(12), args.rated_ah, weak=args.weak, seed=seed)
    trace = model.discharge(ConstantCurrent(load_a), rest_before_s=300.0, rest_after_s=0.0,
                            end_v_per_cell=1.75, dt_s=1.0)
    ends = {i + 1: t.time_to_end_s for i, t in enumerate(trace.truth) if t.time_to_end_s is not None}
    if not ends:
        return []
    half_s = trace.load_on_s + 0.5 * min(ends.values())
    span = span_for(load_a, args)
    opts = WatchOptions(end_v=10.5, current_a=load_a, blocks=args.blocks, test_id=TEST_ID, cells=6,
                        span_v_per_cell=span)
    w = LiveWatch(KEY, opts, predict_budget_s=None)
    tag = tag_for_test(TEST_ID)
    step = max(1, round(args.sample_s / trace.dt_s))
    k_half = 0
    for seq, k in enumerate(range(0, trace.t_s.size, step), start=1):
        t = float(trace.t_s[k])
        if t > half_s:
            break
        k_half = k
        state = LiveState.DISCHARGE if t >= trace.load_on_s else LiveState.FLOAT
        for i in range(args.blocks):
            adv = LiveAdvert(state, False, KEY.key_id, tag, i + 1, seq, round(t * 10) + 100,
                             round(float(trace.block_v[i, k]) * 1000), 250).sealed(KEY)
            now_ms = t * 1000.0 + 1000.0  # the phone clock: load step at load_on_s (+ the tap's 10 s)
            w.receive({COMPANY_ID: adv.to_bytes()}, f"L{i + 1}", now_ms, t)
    now = float(trace.t_s[k_half]) * 1000.0 + 1000.0
    snap = w.snapshot(now, float(trace.t_s[k_half]))
    start_ms = trace.load_on_s * 1000.0 + 1000.0  # the truth's load step on the phone clock
    out = []
    for row in snap["blocks"]:
        pos = row["position"]
        if pos not in ends:
            continue
        actual = ends[pos]
        pred = row["predicted_end_ms"]
        err = None if pred is None else (pred - start_ms - actual * 1000.0) / (actual * 1000.0) * 100.0
        out.append({"seed": seed, "position": pos, "weak": trace.truth[pos - 1].weak,
                    "actual_h": round(actual / 3600.0, 3), "error_pct": None if err is None else round(err, 2)})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--loads", default="10,20,33,50", help="constant currents, A (comma-separated)")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--blocks", type=int, default=12)
    ap.add_argument("--weak", type=int, default=3)
    ap.add_argument("--rated-ah", type=float, default=100.0)
    ap.add_argument("--sample-s", type=float, default=5.0, help="seconds between two samples fed to the watch")
    ap.add_argument("--datasheet", type=Path, default=None,
                    help="the test's datasheet table (CSV), as test.json's datasheet gives the watch")
    ap.add_argument("--no-rate-curve", action="store_true",
                    help="the span rule without its rate curve (the same span at every rate, as before)")
    ap.add_argument("--detail", action="store_true", help="also every block's signed error")
    args = ap.parse_args()
    t0 = time.perf_counter()
    result: dict[str, Any] = {"benchmark": "live_prediction", "blocks": args.blocks, "weak": args.weak,
                              "rated_ah": args.rated_ah, "seeds": args.seeds, "sample_s": args.sample_s,
                              "datasheet": None if args.datasheet is None else args.datasheet.name,
                              "rate_curve": "none" if args.no_rate_curve else
                              "datasheet" if args.datasheet is not None else "typical_vrla",
                              "loads": {}}
    for text in args.loads.split(","):
        load_a = float(text)
        rows = [r for seed in args.seeds.split(",") for r in run_one(load_a, int(seed), args)]
        errs = [abs(r["error_pct"]) for r in rows if r["error_pct"] is not None]
        entry: dict[str, Any] = {
            "span_v_per_cell": round(span_for(load_a, args), 4),
            "blocks_ended": len(rows), "unpredicted": sum(r["error_pct"] is None for r in rows),
            "worst_pct": round(max(errs), 2) if errs else None,
            "median_pct": round(statistics.median(errs), 2) if errs else None,
            "signed_pct": sorted(r["error_pct"] for r in rows if r["error_pct"] is not None),
        }
        if args.detail:
            entry["rows"] = rows
        result["loads"][f"{load_a:g}A"] = entry
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
