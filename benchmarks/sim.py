"""Benchmark of the firmware model on virtual time, battery simulation included.

Prints ONE JSON object: ``string_24x10h_wall_s`` (24-block string, 10-h rate
discharge at 1 s, every logger), ``years_10_at_60s_wall_s`` (one logger, 10 years
at a 1-minute float rate) and ``logger_seconds_per_wall_second`` (virtual logger
time processed per wall second over both runs). ``--quick`` runs a 4-block
string and 1 year instead.
"""

from __future__ import annotations

import argparse
import json
import time

from smartlogger.device.sim import simulate_string_test, simulate_years


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="4 blocks and 1 year instead of 24 and 10")
    args = ap.parse_args()
    blocks, years = (4, 1.0) if args.quick else (24, 10.0)

    t0 = time.perf_counter()
    # 100 Ah block at the 10-h rate: 10 A
    st = simulate_string_test(blocks, weak=0, load="10A", seed=1)  # healthy: ~10 h to end voltage
    string_wall = time.perf_counter() - t0
    string_logger_s = float(st.trace.t_s[-1]) * blocks

    t1 = time.perf_counter()
    yr = simulate_years(years, log_rate_s=60, seed=1)
    years_wall = time.perf_counter() - t1
    years_logger_s = float(yr.trace.t_s[-1])

    out = {
        "string_blocks": blocks,
        "string_virtual_h": round(float(st.trace.t_s[-1]) / 3600.0, 3),
        "string_24x10h_wall_s": round(string_wall, 3),
        "string_battery_wall_s": round(st.battery_wall_s, 3),
        "string_firmware_wall_s": round(st.firmware_wall_s, 3),
        "years": years,
        "years_10_at_60s_wall_s": round(years_wall, 3),
        "years_battery_wall_s": round(yr.battery_wall_s, 3),
        "years_firmware_wall_s": round(yr.firmware_wall_s, 3),
        "years_records": yr.logger.store.next_seq,
        "logger_seconds_per_wall_second": round((string_logger_s + years_logger_s) / (string_wall + years_wall)),
        "quick": bool(args.quick),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
