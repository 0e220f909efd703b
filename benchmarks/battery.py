"""Benchmark of the battery model alone: a 24-block string through a 10-h discharge at
1 s, and one block through 10 years of float at 60 s. Prints one JSON object.

    python benchmarks/battery.py            # full size
    python benchmarks/battery.py --quick    # 1-h discharge, 1 year
"""

from __future__ import annotations

import argparse
import json
import time

from smartlogger.device.battery import build_string, float_years
from smartlogger.device.load import ConstantCurrent
from smartlogger.model import BlockType


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="short run (1 h discharge, 1 year)")
    args = ap.parse_args()
    block = BlockType.lead_acid(12)
    amps = 100.0 if args.quick else 10.0  # 100 Ah blocks: 1-h-ish or the 10-h rate
    years = 1.0 if args.quick else 10.0

    t0 = time.perf_counter()
    model = build_string(24, block, 100.0, seed=1)  # no weak block: the full 10 h
    trace = model.discharge(ConstantCurrent(amps), dt_s=1.0)
    string_wall = time.perf_counter() - t0
    sim_s = float(trace.t_s[-1])

    t0 = time.perf_counter()
    long = float_years(block, 100.0, years=years, dt_s=60.0, seed=1)
    years_wall = time.perf_counter() - t0

    print(json.dumps({
        "quick": args.quick,
        "string_blocks": 24,
        "string_current_a": amps,
        "string_discharge_h": round((trace.load_off_s - trace.load_on_s) / 3600.0, 3),
        "string_points": int(trace.t_s.size),
        "string_24x10h_wall_s" if not args.quick else "string_24x1h_wall_s": round(string_wall, 3),
        "years": years,
        "years_points": int(long.t_s.size),
        "years_discharges": len(long.discharges),
        "years_10_at_60s_wall_s" if not args.quick else "years_1_at_60s_wall_s": round(years_wall, 3),
        "block_seconds_per_wall_second": round(
            (24 * sim_s + float(long.t_s[-1])) / (string_wall + years_wall)),
    }))


if __name__ == "__main__":
    main()
