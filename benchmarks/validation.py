"""Validation of the capacity analysis against an independent physics model and real data.

Each PyBaMM case (tests/data/pybamm/, made by ``benchmarks/pybamm_traces.py``; C/20 .. 1C,
from rest or a trickle charge, a pause, a load step, a load bank cutting off at the string end
voltage) is replayed through the firmware model, one logger per block, each sampling out of step
with the others (a seeded phase within the 60 s float interval, as loggers clipped on one
after the other are), then analysed as a
technician would: the load as stated (constant current; for the stepped case the load bank's
relative current log), the end voltage per cell. Compared with the model's own truth: the
string's delivered Ah, the load-on and load-off instants and each block's step resistance.
The real lead-acid discharge (github.com/vmehra813/lead_acid_battery_data, not redistributed:
read from $SMARTLOGGER_LEADACID_XLSX or a local mirror, see tests/test_analysis_realdata.py)
is added when available. Prints one JSON object:

``cases``, ``ah_error_pct_max``, ``start_error_s_max``, ``end_error_s_max``,
``resistance_error_pct_p95`` (over every block and step with a value), ``resistance_values``,
``cases_refused`` (with reasons) and ``per_case``.

Run: ``python benchmarks/validation.py [--data DIR] [--case NAME]``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "pybamm"


def replay_case(data: Path, case: dict[str, Any], seed: int = 0) -> tuple[list[Any], Any]:
    """The case's blocks replayed through the firmware: (BlockLogs, metadata)."""
    from smartlogger.analysis.inputs import (
        ConstantCurrent,
        CurrentProfile,
        TestMetadata,
        block_log_from_records,
    )
    from smartlogger.device.replay import TraceFormat, read_trace, replay_trace
    from smartlogger.model import BlockType
    from smartlogger.quantities import Voltage

    raw = (data / f"{case['case']}.csv").read_bytes()
    rng = np.random.default_rng([seed, len(case["case"])])
    logs = []
    for k in range(int(case["blocks"])):
        fmt = TraceFormat(time_column="time_s", voltage_column=f"v_b{k + 1}", current_column="current_a",
                          time_format="seconds")
        trace = read_trace(raw, fmt, name=f"{case['case']}.csv")
        res = replay_trace(trace, serial=f"REPLAY-{k + 1:04d}", block_type=BlockType.lead_acid(12),
                           rated_ah=float(case["capacity_ah"]), phase_s=float(rng.uniform(0.0, 60.0)))
        lg = res.logger
        cfg = lg.config.with_changes(block_position=k + 1, block_label=f"B{k + 1}")
        logs.append(block_log_from_records(lg.identity, lg.store.records(), config=cfg,
                                           source=f"{case['case']}/b{k + 1}"))
    amps = float(case["amps"])
    step = case.get("load_step")
    if step:
        # The load bank's log (relative to the load on): the step, and the cut-off to zero.
        a2 = float(step["to_amps"])
        after = float(step["after_s"])
        off = float(case["load_off_s"]) - float(case["load_on_s"])
        load: Any = CurrentProfile(np.array([0.0, after, after + 0.001, off, off + 0.001, off + 600.0]),
                                   np.array([amps, amps, a2, a2, 0.0, 0.0]), "loadbank.csv")
    else:
        load = ConstantCurrent(amps)
    meta = TestMetadata(load, end_voltage=Voltage(float(case["end_v_per_cell"]), "cell"),
                        string_blocks=int(case["blocks"]), test_id=case["case"])
    return logs, meta


def compare(case: dict[str, Any], result: Any) -> dict[str, Any]:
    """Errors of one analysed case against the model's truth."""
    from smartlogger.device.replay import RELATIVE_ORIGIN_MS

    d = result.discharge
    on_ms = RELATIVE_ORIGIN_MS + float(case["load_on_s"]) * 1000.0
    off_ms = RELATIVE_ORIGIN_MS + float(case["load_off_s"]) * 1000.0
    res_err = []
    for b in result.blocks:
        for rs in b.resistance_steps:
            truth = min(case["steps"], key=lambda s: abs(RELATIVE_ORIGIN_MS + s["t_s"] * 1000.0 - rs.time_ms))
            if abs(RELATIVE_ORIGIN_MS + truth["t_s"] * 1000.0 - rs.time_ms) > 3000.0:
                continue
            tr = float(truth["resistance_mohm"][b.position - 1])
            res_err.append(100.0 * (rs.resistance_mohm / tr - 1.0))
    return {
        "case": case["case"], "end_reason": d.end_reason, "start_method": d.start_method,
        "end_method": d.end_method,
        "ah": round(d.delivered_ah, 4), "ah_truth": round(float(case["delivered_ah"]), 4),
        "ah_error_pct": round(100.0 * (d.delivered_ah / float(case["delivered_ah"]) - 1.0), 3),
        "start_error_s": round((d.start_ms - on_ms) / 1000.0, 3),
        "end_error_s": round((d.end_ms - off_ms) / 1000.0, 3),
        "load_time_s": d.load_time_s, "load_time_truth_s": round(float(case["time_to_end_s"]), 3),
        "interruptions": len(d.interruptions), "interruptions_truth": len(case["pauses_s"]),
        "resistance_errors_pct": [round(x, 2) for x in res_err],
    }


def realdata_case() -> dict[str, Any] | None:
    """The real 10 A lead-acid discharge (``smartlogger.testing.realdata``); None if absent."""
    import tempfile

    from smartlogger.testing import realdata

    with tempfile.TemporaryDirectory() as tmp:
        path = realdata.find_workbook(Path(tmp))
        if path is None:
            return None
        return realdata.replay_and_compare(realdata.read_columns(path))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--case", action="append")
    args = ap.parse_args()
    from smartlogger.analysis.analyze import analyze_test
    from smartlogger.errors import SmartLoggerError

    truth = json.loads((args.data / "truth.json").read_text(encoding="utf-8"))
    per_case: list[dict[str, Any]] = []
    refused: list[dict[str, str]] = []
    t0 = time.perf_counter()
    for name, case in truth.items():
        if args.case and name not in args.case:
            continue
        try:
            logs, meta = replay_case(args.data, case)
            per_case.append(compare(case, analyze_test(logs, meta)))
        except SmartLoggerError as err:
            refused.append({"case": name, "reason": str(err)})
    real = None if args.case else realdata_case()
    if real is not None:
        per_case.append(real)
    res = [x for c in per_case for x in c.get("resistance_errors_pct", [])]
    out = {
        "cases": len(per_case) + len(refused),
        "ah_error_pct_max": max((abs(c["ah_error_pct"]) for c in per_case), default=None),
        "start_error_s_max": max((abs(c["start_error_s"]) for c in per_case), default=None),
        "end_error_s_max": max((abs(c["end_error_s"]) for c in per_case), default=None),
        "resistance_error_pct_p95": round(float(np.percentile(np.abs(res), 95)), 3) if res else None,
        "resistance_values": len(res),
        "cases_refused": refused,
        "real_data": real is not None,
        "wall_s": round(time.perf_counter() - t0, 2),
        "per_case": per_case,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
