"""Benchmark of the Excel exports; prints ONE JSON object on stdout.

    python benchmarks/excel.py            # full run (240/24-block reports, 10 h logger workbook)
    python benchmarks/excel.py --quick    # short run (48/24 blocks, 1 h tests)

Measured (wall time, this process, single thread):
- ``report_240_s``: string report of 240 blocks, a 3 h discharge + 5 min float at 1 Hz
  (3.3 M samples), Data sheet at 10 s, per-block chart sheets with 4,000-point series.
- ``report_24_s``: the same for 24 blocks.
- ``logger_workbook_s``: one logger workbook, 10 h at 1 Hz (36,001 samples, every one in "Data").
- ``peak_rss_mb``: peak resident memory of the process after the fast runs (before the naive one).
- ``report_240_bytes``: size of the 240-block workbook.
- ``speedup_vs_naive``: the 24-block report written the naive way -- every sheet with
  ``pandas.DataFrame.to_excel(engine="openpyxl")`` (normal openpyxl workbook), then the
  same openpyxl chart objects added to it -- divided by ``report_24_s``. The naive run
  gets the reduced chart series and aligned data for free (taken from the fast build),
  so the ratio is conservative.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from smartlogger.compat.openpyxl import charts_of
from smartlogger.export.examples import ExampleTest, example_string_test
from smartlogger.export.logger_workbook import write_logger_workbook
from smartlogger.export.sheetstream import NumericSheet, discard_workbook
from smartlogger.export.string_report import build_string_report, write_string_report


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def naive_string_report(path: Path, test: ExampleTest) -> float:
    """Write the string report the naive way; returns seconds (frames + to_excel + charts + save)."""
    t = test  # the ExampleTest
    fast = build_string_report(t.outcome, t.series, exceedances=t.exceedances,
                               evidence=t.evidence, tz="Europe/Berlin")
    start = time.perf_counter()
    o = t.outcome
    with pd.ExcelWriter(path, engine="openpyxl") as xw:
        for ws in fast.worksheets:
            if isinstance(ws, NumericSheet):
                frame = pd.DataFrame({c.header: (np.round(c.values, c.decimals) if c.decimals is not None
                                                 else c.values) for c in ws.columns})
                frame.to_excel(xw, sheet_name=ws.title, index=False)
            elif ws.title == "Summary":
                head = pd.DataFrame({"key": ["Result", "Capacity (% of rated)", "Method", "Duration (s)", "Load",
                                             "Temperature correction", "Weakest blocks"],
                                     "value": [o.result, o.capacity_pct, o.method, o.duration_s, o.load,
                                               o.temperature_correction, ", ".join(map(str, o.weakest))]})
                head.to_excel(xw, sheet_name="Summary", index=False)
                blocks = pd.DataFrame([b.__dict__ for b in o.blocks])
                blocks.to_excel(xw, sheet_name="Summary", index=False, startrow=len(head) + 3)
            elif ws.title == "Exceedances":
                pd.DataFrame([e.__dict__ for e in t.exceedances]).to_excel(
                    xw, sheet_name=ws.title, index=False)
            elif ws.title == "Evidence":
                pd.DataFrame([e.__dict__ for e in t.evidence]).to_excel(
                    xw, sheet_name=ws.title, index=False)
            else:
                pd.DataFrame({"block": [ws.title]}).to_excel(xw, sheet_name=ws.title, index=False)
        book = xw.book
        for ws in fast.worksheets:
            for chart in charts_of(ws):
                book[ws.title].add_chart(chart, chart.anchor)
        book["Chart data"].sheet_state = "hidden"
    elapsed = time.perf_counter() - start
    discard_workbook(fast)
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short run (48 and 24 blocks, 1 h tests)")
    args = ap.parse_args()
    big = 48 if args.quick else 240
    hours = 1.0 if args.quick else 3.0
    logger_hours = 1.0 if args.quick else 10.0
    out: dict[str, object] = {"quick": args.quick, "blocks_big": big, "test_hours": hours,
                              "logger_hours": logger_hours}
    with tempfile.TemporaryDirectory(prefix="smartlogger-bench-") as tmp:
        d = Path(tmp)
        lg = example_string_test(1, duration_s=int(logger_hours * 3600), pre_s=0).series[0]
        t0 = time.perf_counter()
        write_logger_workbook(d / "logger.xlsx", lg, tz="Europe/Berlin")
        out["logger_workbook_s"] = round(time.perf_counter() - t0, 3)
        out["logger_samples"] = len(lg.t_ms)

        small = example_string_test(24, duration_s=int(hours * 3600))
        t0 = time.perf_counter()
        write_string_report(d / "r24.xlsx", small.outcome, small.series, exceedances=small.exceedances,
                            evidence=small.evidence, tz="Europe/Berlin")
        out["report_24_s"] = round(time.perf_counter() - t0, 3)

        large = example_string_test(big, duration_s=int(hours * 3600))
        out["samples_big"] = int(sum(len(s.t_ms) for s in large.series))
        t0 = time.perf_counter()
        p = write_string_report(d / "rbig.xlsx", large.outcome, large.series,
                                exceedances=large.exceedances, evidence=large.evidence, tz="Europe/Berlin")
        key = "report_240" if big == 240 else f"report_{big}"
        out[f"{key}_s"] = round(time.perf_counter() - t0, 3)
        out[f"{key}_bytes"] = p.stat().st_size
        del large
        out["peak_rss_mb"] = round(_rss_mb(), 1)

        naive_s = naive_string_report(d / "naive24.xlsx", small)
        out["naive_report_24_s"] = round(naive_s, 3)
        out["speedup_vs_naive"] = round(naive_s / float(out["report_24_s"]), 2)  # type: ignore[arg-type]
        out["naive_bytes"] = (d / "naive24.xlsx").stat().st_size
    out["goals"] = {"report_240_s": 20.0, "report_24_s": 3.0, "logger_workbook_s": 1.0, "speedup_vs_naive": 3.0}
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
