"""Render the customer report's pages as the PNGs docs/REPORT.md and docs/EXCEL.md show.

    python scripts/report_pictures.py            # writes docs/img/report_*.png

A 24-block synthetic string (two weak blocks; the load removed after they reached their end
voltage, so the other 22 blocks' capacities are lower bounds), its PDF report and its string
report workbook converted by LibreOffice, pages rendered with pdftoppm. Run by hand when the
report's layout changes; no test rewrites these files.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from smartlogger.analysis.analyze import analyze_test
from smartlogger.analysis.inputs import ConstantCurrent, TestMetadata
from smartlogger.export.adapters import string_report_inputs
from smartlogger.export.pdf import pdf_report_bytes
from smartlogger.export.report import report_content
from smartlogger.export.string_report import write_string_report
from smartlogger.testinfo import BatteryInfo, SiteInfo, StringInfo, SystemInfo, TestInfo
from smartlogger.testing.synthetic import synthetic_string_test

IMG = Path(__file__).resolve().parent.parent / "docs" / "img"
INFO = TestInfo(test_id="EXAMPLE-24", site=SiteInfo("Plant North", customer="Example Bank", address="Hall 3"),
                system=SystemInfo("UPS A", "UPS"), string=StringInfo("String 1", 24), technician="Tina Tester",
                company="Acme Battery Service", tz="Europe/Berlin", ambient_c=22.0,
                battery=BatteryInfo(make="CSB", model="GP12400 (simulated)", chemistry="vrla", block_voltage_v=12,
                                    rated_ah=100.0),
                load_setup="load bank", load_source="load bank display (set constant current)",
                cutoff="load bank end-voltage cutoff")


def render(pdf: Path, pages: list[int], stem: str, dpi: int = 70) -> None:
    for p in pages:
        prefix = pdf.parent / f"{stem}-{p}"
        subprocess.run(["pdftoppm", "-r", str(dpi), "-f", str(p), "-l", str(p), "-png", "-singlefile", str(pdf),
                        str(prefix)], check=True)
        shutil.copyfile(f"{prefix}.png", IMG / f"{stem}_p{p}.png")
        print(IMG / f"{stem}_p{p}.png")


def main() -> int:
    caps = [100.0] * 24
    caps[10], caps[12] = 45.0, 60.0
    logs, _ = synthetic_string_test(24, current_a=10.0, capacity_ah=caps, duration_s=4.7 * 3600, seed=7)
    result = analyze_test(logs, TestMetadata(ConstantCurrent(10.0), rated_time_s=10 * 3600.0, test_id="EXAMPLE-24"))
    result.report_info = INFO.report_info()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        outcome, series, exc = string_report_inputs(result, logs)
        (d / "report.pdf").write_bytes(pdf_report_bytes(report_content(result), series))
        render(d / "report.pdf", [1, 2, 4], "report_pdf")
        xlsx = write_string_report(d / "workbook.xlsx", outcome, series, exceedances=exc, tz="Europe/Berlin")
        subprocess.run(["soffice", "--headless", f"-env:UserInstallation=file://{d}/lo", "--convert-to", "pdf",
                        "--outdir", str(d), str(xlsx)], check=True, capture_output=True, timeout=900)
        render(d / "workbook.pdf", [1, 3, 4], "report_xlsx")
    return 0


if __name__ == "__main__":
    sys.exit(main())
