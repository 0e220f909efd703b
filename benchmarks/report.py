"""Benchmark of the customer report (issue 20); prints ONE JSON object on stdout.

    python benchmarks/report.py            # full run: 24-block workbook + PDF, 240-block PDF
    python benchmarks/report.py --quick    # 6 and 24 blocks, short tests (a check that it runs)

Measured:
- ``xlsx_pages_24``: the 24-block string report converted to PDF by LibreOffice
  (``soffice --headless --convert-to pdf``), its page count (goal <= 30); null without soffice.
- ``pdf_pages_24``: pages of the 24-block PDF report (goal <= 10).
- ``pdf_s_240``: seconds from the analysis result of a 240-block string to the PDF's bytes
  (``report_content`` + ``string_report_inputs`` for the chart series + ``pdf_report_bytes``;
  goal <= 10 s).
- ``lower_bounds_coloured_as_fail``: capacity cells of lower-bound blocks filled in the failure
  colour, counted in the 24-block workbook read back with openpyxl plus in the 24-block PDF's
  table (goal 0).

The strings are synthetic (``testing.synthetic``): 100 Ah blocks at 10 A, rated 10 h, two weak
blocks (45 and 60 Ah); the load is removed after the weak blocks reached their end voltage, so
every other block's capacity is a lower bound below 80 % (the case issue 20 is about).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from openpyxl import load_workbook

from smartlogger.analysis.analyze import analyze_test
from smartlogger.analysis.inputs import ConstantCurrent, TestMetadata
from smartlogger.analysis.results import TestResult
from smartlogger.export.adapters import string_report_inputs
from smartlogger.export.pdf import render_pdf
from smartlogger.export.report import lower_bounds_coloured_as_fail, report_content
from smartlogger.export.string_report import write_string_report
from smartlogger.testinfo import BatteryInfo, SiteInfo, TestInfo
from smartlogger.testing.synthetic import synthetic_string_test

INFO = TestInfo(site=SiteInfo("Plant North"), technician="Tina Tester", company="Acme Service",
                battery=BatteryInfo(make="CSB", model="GP12400", rated_ah=100.0))


def string_test(n: int, hours: float) -> tuple[TestResult, list[Any]]:
    caps = [100.0] * n
    caps[n // 3], caps[(2 * n) // 3] = 45.0, 60.0
    logs, _ = synthetic_string_test(n, current_a=10.0, capacity_ah=caps, duration_s=hours * 3600, seed=7,
                                    pre_s=300, post_s=300)
    result = analyze_test(logs, TestMetadata(ConstantCurrent(10.0), rated_time_s=10 * 3600.0))
    result.report_info = INFO.report_info()
    return result, logs


def pdf_pages(path: Path) -> int:
    out = subprocess.run(["pdfinfo", str(path)], capture_output=True, text=True, check=True).stdout
    return int(next(line.split()[-1] for line in out.splitlines() if line.startswith("Pages:")))


def xlsx_fills(path: Path) -> dict[str, str]:
    """serial -> RGB of the Summary's capacity cell, read back from the file."""
    ws = load_workbook(path)["Summary"]
    header = None
    out: dict[str, str] = {}
    for row in ws.iter_rows():
        values = [c.value for c in row]
        if header is None:
            if values[:4] == ["Position", "Serial", "Label", "Capacity"]:
                header = values
            continue
        if len(values) < 4 or values[1] is None:  # the empty row after the table
            break
        rgb = row[3].fill.start_color.rgb if row[3].fill is not None and row[3].fill.fill_type else ""
        out[str(values[1])] = str(rgb)[-6:] if rgb else ""
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    big = 24 if args.quick else 240
    hours = 1.3 if args.quick else 4.7
    res: dict[str, Any] = {"quick": args.quick}
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        r24, logs24 = string_test(24, hours)
        outcome, series, exc = string_report_inputs(r24, logs24)
        xlsx = write_string_report(d / "report.xlsx", outcome, series, exceedances=exc)
        fills = xlsx_fills(xlsx)
        rep24 = report_content(r24)
        data, pdf_fills = render_pdf(rep24, series)
        (d / "report24.pdf").write_bytes(data)
        res["pdf_pages_24"] = pdf_pages(d / "report24.pdf")
        res["lower_bounds_24"] = sum(1 for b in rep24.blocks if b.lower_bound)
        res["lower_bounds_coloured_as_fail"] = (lower_bounds_coloured_as_fail(rep24, fills)
                                                + lower_bounds_coloured_as_fail(rep24, pdf_fills))
        res["xlsx_fills_read"] = len(fills)
        soffice = shutil.which("soffice") or shutil.which("libreoffice")
        if soffice is not None:
            t = time.perf_counter()
            subprocess.run([soffice, "--headless", f"-env:UserInstallation=file://{d}/lo", "--convert-to", "pdf",
                            "--outdir", str(d), str(xlsx)], check=True, capture_output=True, timeout=900)
            res["xlsx_to_pdf_s"] = round(time.perf_counter() - t, 2)
            res["xlsx_pages_24"] = pdf_pages(d / "report.pdf")
        else:
            res["xlsx_pages_24"] = None
        rbig, logsbig = string_test(big, hours)
        t = time.perf_counter()
        rep = report_content(rbig)
        _, series_big, _ = string_report_inputs(rbig, logsbig)
        data, _ = render_pdf(rep, series_big)
        res[f"pdf_s_{big}"] = round(time.perf_counter() - t, 3)
        (d / "big.pdf").write_bytes(data)
        res[f"pdf_pages_{big}"] = pdf_pages(d / "big.pdf")
        res[f"pdf_bytes_{big}"] = len(data)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
