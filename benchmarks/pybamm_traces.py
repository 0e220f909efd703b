"""Generate the independent-model discharges the validation replays (tests/data/pybamm/).

PyBaMM's lead-acid model (``pybamm.lead_acid.LOQS`` with the ``Sulzer2019`` parameters: a
17 Ah, 6-cell 12 V battery; BSD-3-Clause, https://github.com/pybamm-team/PyBaMM) simulates
each block of a small string on the same current schedule: rest or a trickle charge (PyBaMM has
no gassing, so a float charge is a small charging current), the discharge at C/20 .. 1C with a
pause or a load step where the case says so, until the *string* reaches its end voltage (the
load bank's cut-off), then rest. Blocks differ in electrode width (capacity and resistance).

Two passes per case: the blocks discharge past the end voltage to find when the string reaches
it (the model is deterministic), then again with the last discharge step ending exactly there.
Written per case: ``CASE.csv`` (``time_s``, ``current_a`` (discharge positive), ``v_b1``.. in V,
sampled every second near each load step and the end, every 60 s elsewhere; the last value
before a step 1 ms before it, so a replay sees the step at its instant) and the truth in
``truth.json``: load on and off, the string's delivered Ah and time under load to the end
voltage, and each block's resistance at each step, the model's instantaneous voltage jump
divided by the current step (the definition the analysis uses, docs/CAPACITY.md 5b).

Needs PyBaMM (``pip install 'pybamm>=25.1,<27'``: a tool for regenerating test data, deliberately
not a project dependency, so constraints.txt does not pin it); the tests and
``benchmarks/validation.py`` read the committed files and do not need it. Run: ``python benchmarks/pybamm_traces.py [--out DIR]``.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "pybamm"
CAPACITY_AH = 17.0  # Sulzer2019 nominal capacity (C rate reference)
WIDTHS = (1.0, 0.9, 1.06)  # relative electrode width of each block of the string
CELLS = 6
START_S = 1_772_438_400.0  # 2026-03-02T08:00:00Z: the trace's clock


@dataclass(frozen=True)
class Case:
    name: str
    rate: float  # C rate of the discharge
    before: str  # "rest" or "float" (a trickle charge of C/170)
    end_v_per_cell: float
    pause_after_s: float | None = None  # a 5-min interruption this long after the load came on
    step_after_s: float | None = None  # the load steps to ``step_rate`` this long after it came on
    step_rate: float = 0.0


CASES = (
    Case("c20_rest", 1 / 20, "rest", 1.85),
    Case("c10_float", 1 / 10, "float", 1.80),
    Case("c5_rest_pause", 1 / 5, "rest", 1.80, pause_after_s=3600.0),
    Case("c3_float_step", 1 / 3, "float", 1.80, step_after_s=1800.0, step_rate=1 / 5),
    Case("c1_rest", 1.0, "rest", 1.78),
)


def _steps(case: Case, last: str) -> list[str]:
    amps = case.rate * CAPACITY_AH
    pre = "Rest for 20 minutes" if case.before == "rest" else "Charge at 0.1 A for 1 hour"
    out = [pre]
    if case.pause_after_s:
        out += [f"Discharge at {amps:.4f} A for {case.pause_after_s:.0f} seconds", "Rest for 5 minutes"]
    if case.step_after_s:
        out += [f"Discharge at {amps:.4f} A for {case.step_after_s:.0f} seconds"]
        amps = case.step_rate * CAPACITY_AH
    out += [f"Discharge at {amps:.4f} A {last}", "Rest for 10 minutes"]
    return out


def _run(case: Case, width: float, last: str) -> Any:
    import pybamm

    pybamm.set_logging_level("ERROR")
    p = pybamm.ParameterValues("Sulzer2019")
    p["Electrode width [m]"] = p["Electrode width [m]"] * width
    exp = pybamm.Experiment(_steps(case, last), period="1 second")
    return pybamm.Simulation(pybamm.lead_acid.LOQS(), parameter_values=p, experiment=exp).solve()


def _series(sol: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[tuple[float, float, float, float, float]]]:
    """Time, voltage, current of a solution (NaN tail dropped) and its step boundaries
    (t, v before, v after, i before, i after)."""
    ts, vs, cs, bounds = [], [], [], []
    prev = None
    for sub in sol.sub_solutions:
        t = np.asarray(sub.t, dtype=float)
        v = np.asarray(sub["Battery voltage [V]"].entries, dtype=float)
        i = np.asarray(sub["Current [A]"].entries, dtype=float)
        ok = np.isfinite(v)
        if not ok.any():
            break
        if prev is not None:
            bounds.append((float(t[0]), prev[0], float(v[0]), prev[1], float(i[0])))
        ts.append(t[ok])
        vs.append(v[ok])
        cs.append(i[ok])
        prev = (float(v[ok][-1]), float(i[ok][-1]))
        if not ok.all():
            break
    return np.concatenate(ts), np.concatenate(vs), np.concatenate(cs), bounds


def generate(case: Case, out: Path) -> dict[str, Any]:
    # Pass 1: past the end voltage, to find where the string reaches it.
    first = [_series(_run(case, w, "for 60 hours or until 1.60 V")) for w in WIDTHS]
    t_on = first[0][3][0][0]  # the first boundary: the rest/charge ends, the load comes on
    if case.pause_after_s or case.step_after_s:
        t_last = first[0][3][2][0] if case.pause_after_s else first[0][3][1][0]
    else:
        t_last = t_on
    grid = np.arange(math.ceil(t_last), min(float(s[0][-1]) for s in first))
    string = sum(np.interp(grid, s[0], s[1]) for s in first)
    below = np.nonzero(string <= len(WIDTHS) * CELLS * case.end_v_per_cell)[0]
    if below.size == 0:
        raise SystemExit(f"{case.name}: the string never reaches {case.end_v_per_cell} V/cell in the model")
    t_cut = float(grid[below[0]])
    # Pass 2: the last discharge ends at the cut-off.
    runs = [_series(_run(case, w, f"for {t_cut - t_last:.0f} seconds")) for w in WIDTHS]
    t = runs[0][0]
    current = runs[0][2]
    bounds = [b[0] for b in runs[0][3]]
    # Rows: 1 s within 120 s after each step and the last 30 min of the discharge, else 60 s.
    dense = np.zeros(t.size, dtype=bool)
    for b in bounds:
        dense |= (t >= b) & (t <= b + 120.0)
    dense |= (t >= t_cut - 1800.0) & (t <= t_cut + 120.0)
    keep = dense | (np.round(t) % 60 == 0)
    # A step's two sides share its instant: the side before is written 1 ms before it (below).
    for b in bounds:
        keep &= ~((np.abs(t - b) < 1e-6) & (np.arange(t.size) < np.searchsorted(t, b, side="right") - 1))
    rows: list[tuple[float, float, list[float]]] = []
    for k in np.nonzero(keep)[0]:
        rows.append((float(t[k]), float(current[k]), [float(np.interp(t[k], r[0], r[1])) for r in runs]))
    for b in runs[0][3]:  # the value just before each step, 1 ms before it
        rows.append((b[0] - 0.001, b[3], [r[3][runs[0][3].index(b)][1] for r in runs]))
    rows.sort(key=lambda r: r[0])
    path = out / f"{case.name}.csv"
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(f"# PyBaMM {case.name}: generated by benchmarks/pybamm_traces.py (see README.md)\n")
        fh.write("time_s,current_a," + ",".join(f"v_b{k + 1}" for k in range(len(WIDTHS))) + "\n")
        for tt, ii, vv in rows:
            fh.write(f"{tt:.3f},{ii:.4f}," + ",".join(f"{x:.5f}" for x in vv) + "\n")
    # Truth.
    on_amps = case.rate * CAPACITY_AH
    pauses = []
    if case.pause_after_s:
        pauses.append((t_on + case.pause_after_s, t_on + case.pause_after_s + 300.0))
    paused = sum(b - a for a, b in pauses)
    t_off = t_cut
    m = (t >= t_on) & (t <= t_off)
    ah = float(np.trapezoid(np.clip(current[m], 0, None), t[m]) / 3600.0)
    steps = []
    for j, b in enumerate(runs[0][3]):
        di = b[4] - b[3]  # PyBaMM's current is discharge positive
        if abs(di) < 0.05:
            continue
        steps.append({"t_s": b[0], "delta_a": di,
                      "resistance_mohm": [-(r[3][j][2] - r[3][j][1]) / di * 1000.0 for r in runs]})
    return {"case": case.name, "rate_c": case.rate, "amps": on_amps, "before": case.before,
            "end_v_per_cell": case.end_v_per_cell, "blocks": len(WIDTHS), "cells": CELLS,
            "capacity_ah": CAPACITY_AH, "start_utc_s": START_S,
            "load_on_s": t_on, "load_off_s": t_off, "pauses_s": pauses,
            "time_to_end_s": t_off - t_on - paused, "delivered_ah": ah,
            "load_step": ({"after_s": case.step_after_s, "to_amps": case.step_rate * CAPACITY_AH}
                          if case.step_after_s else None),
            "steps": steps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--case", action="append", help="only these cases")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    truth = {}
    for case in CASES:
        if args.case and case.name not in args.case:
            continue
        truth[case.name] = generate(case, args.out)
        print(json.dumps({k: v for k, v in truth[case.name].items() if k != "steps"}))
    (args.out / "truth.json").write_text(json.dumps(truth, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
