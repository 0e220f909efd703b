"""Workbooks open in LibreOffice without repair: headless conversion to PDF renders the charts.

Skipped cleanly where ``soffice`` is not installed. LibreOffice refuses or
repairs a broken package; a conversion that produces a PDF whose text contains
the chart titles, axis titles and summary values shows the package, the sheets
and the charts were all understood.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from smartlogger.export.examples import example_string_test
from smartlogger.export.logger_workbook import write_logger_workbook
from smartlogger.export.string_report import write_string_report

SOFFICE = shutil.which("soffice") or shutil.which("libreoffice")
PDFTOTEXT = shutil.which("pdftotext")

pytestmark = pytest.mark.skipif(SOFFICE is None, reason="LibreOffice (soffice) is not installed")


def _to_pdf(files: list[Path], out_dir: Path) -> list[Path]:
    profile = out_dir / "lo-profile"  # private profile: parallel runs must not share one
    subprocess.run([str(SOFFICE), f"-env:UserInstallation=file://{profile}", "--headless",
                    "--convert-to", "pdf", "--outdir", str(out_dir), *map(str, files)],
                   check=True, capture_output=True, timeout=180)
    return [out_dir / (f.stem + ".pdf") for f in files]


def _text(pdf: Path) -> str:
    if PDFTOTEXT is None:
        return ""
    return subprocess.run([PDFTOTEXT, str(pdf), "-"], check=True, capture_output=True, text=True).stdout


def test_libreoffice_converts_logger_workbook_and_string_report(tmp_path: Path) -> None:
    # Small on purpose: LibreOffice prints every Data row; 2 blocks x 12 min keeps it short.
    t = example_string_test(2, duration_s=600, pre_s=120)
    s = t.series[0]
    logger = write_logger_workbook(tmp_path / "logger.xlsx", s,
                                   exceedances=[e for e in t.exceedances if e.serial == s.identity.serial],
                                   evidence=t.evidence[0], tz="Europe/Berlin")
    report = write_string_report(tmp_path / "report.xlsx", t.outcome, t.series, exceedances=t.exceedances,
                                 evidence=t.evidence, tz="Europe/Berlin", resolution_s=60)
    pdfs = _to_pdf([logger, report], tmp_path)
    for pdf in pdfs:
        assert pdf.exists() and pdf.read_bytes()[:5] == b"%PDF-"
    if PDFTOTEXT is None:
        return
    text = _text(pdfs[0])
    for needle in ("Logger SIM-0001", "SIMULATED DATA", "Voltage - block 1 SIM-0001",
                   "Temperature - block 1 SIM-0001", "Time (Europe/Berlin, UTC+01:00)",
                   "warning low (11.00 V)", "alarm low (10.50 V)"):
        assert needle in text, needle
    text = _text(pdfs[1])
    for needle in ("Capacity test EXAMPLE-1", "All blocks: voltage", "Capacity per block",
                   "80 % replacement limit", "B002 SIM-0002"):
        assert needle in text, needle
