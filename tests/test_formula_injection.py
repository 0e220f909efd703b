"""No formulas from data: every text from a logfile, metadata file or user is written as text.

Hostile texts (``=HYPERLINK(...)``, DDE ``=cmd|...``, leading ``+ - @``, tab, CR, control
characters) go through every sheet writer (text sheets, the streamed numeric sheets' headers,
chart titles, sheet names), the CSV writers and the Parquet converters; no cell of any written
workbook is a formula, and the texts read back as themselves. LibreOffice, a real spreadsheet
program, shows them as text.
"""

from __future__ import annotations

import csv
import dataclasses
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from openpyxl import load_workbook

from smartlogger.cli import main
from smartlogger.export import layout as L
from smartlogger.export.celltext import csv_row, csv_text, formula_like, sheet_text
from smartlogger.export.check import check_workbook, formula_cells
from smartlogger.export.data import write_samples_many
from smartlogger.export.examples import example_string_test
from smartlogger.export.inputs import (
    EvidenceRow,
    ExceedanceRow,
    LoggerSamples,
    LongtermData,
    StringTestOutcome,
)
from smartlogger.export.logger_workbook import write_logger_workbook
from smartlogger.export.longterm import daily_rows, write_longterm_workbook
from smartlogger.export.sheetstream import Column, add_numeric_sheet, new_workbook, save_workbook
from smartlogger.export.string_report import write_string_report

#: Labels hold 16 bytes at most (the logger's configuration record).
HOSTILE_LABELS = ['=HYPERLINK("x")', "=cmd|'/Ccalc'!A0", "+1+1", "-2+3", "@SUM(A1)", "\t=1", "\r=1"]
HOSTILE_TEXTS = [*HOSTILE_LABELS, '=WEBSERVICE("http://evil.invalid/")', "a\x01b\x1fc"]


def _all_text(path: Path) -> list[str]:
    wb = load_workbook(path)
    return [c.value for ws in wb.worksheets for row in ws.iter_rows() for c in row
            if isinstance(c.value, str)]


def _assert_text_only(path: Path, expected: list[str]) -> None:
    assert formula_cells(path) == []
    assert check_workbook(path) == []
    texts = "\n".join(_all_text(path))
    for e in expected:
        assert sheet_text(e) in texts, e


def test_the_rule() -> None:
    for t in HOSTILE_LABELS:
        assert formula_like(t) and csv_text(t) == "'" + t
    assert not formula_like("B07") and csv_text("B07") == "B07"
    assert sheet_text("a\x01b") == "a\ufffdb" and sheet_text("tab\there") == "tab\there"
    assert csv_row(["=1", -2.5, 3, None]) == ["'=1", -2.5, 3, None]  # numbers stay numbers


@pytest.fixture(scope="module")
def hostile_test() -> tuple[StringTestOutcome, list[LoggerSamples], list[ExceedanceRow], list[EvidenceRow]]:
    t = example_string_test(3, duration_s=600, pre_s=120)
    series = []
    for s, label in zip(t.series, HOSTILE_LABELS, strict=False):
        cfg = s.config.with_changes(block_label=label, test_id="=HYPERLINK(\"http://x\")")
        series.append(dataclasses.replace(s, config=cfg))
    blocks = [dataclasses.replace(b, label=HOSTILE_LABELS[i], note=HOSTILE_TEXTS[-2])
              for i, b in enumerate(t.outcome.blocks)]
    outcome = dataclasses.replace(t.outcome, test_id='=HYPERLINK("t")', site=HOSTILE_TEXTS[-2],
                                  notes=HOSTILE_TEXTS, blocks=blocks)
    exceed = [dataclasses.replace(e, reason="@SUM(A1)") for e in t.exceedances]
    evidence = [dataclasses.replace(e, file="=cmd|'/Ccalc'!A0.slog", result="-1+1",
                                    details=(("=A1", "+cmd"), ("Problem: chain", "a\x02b")))
                for e in t.evidence]
    return outcome, series, exceed, evidence


def test_logger_workbook_writes_hostile_text_as_text(tmp_path: Path, hostile_test: tuple) -> None:
    _, series, exceed, evidence = hostile_test
    s = series[0]
    out = write_logger_workbook(tmp_path / "logger.xlsx", s, exceedances=exceed[:3], evidence=evidence[0],
                                tz="Europe/Berlin", chart_points=200)
    _assert_text_only(out, [HOSTILE_LABELS[0], '=HYPERLINK("http://x")', "=cmd|'/Ccalc'!A0.slog", "=A1",
                            "+cmd", "a\x02b"])
    # A text a spreadsheet would take for a formula when retyped keeps the quotePrefix style.
    wb = load_workbook(out)
    label = next(c for row in wb["Summary"].iter_rows() for c in row if c.value == HOSTILE_LABELS[0])
    assert label.data_type == "s" and label.quotePrefix


def test_string_report_writes_hostile_text_as_text(tmp_path: Path, hostile_test: tuple) -> None:
    outcome, series, exceed, evidence = hostile_test
    out = write_string_report(tmp_path / "report.xlsx", outcome, series, exceedances=exceed,
                              evidence=evidence, resolution_s=60, chart_points=200)
    _assert_text_only(out, [*HOSTILE_LABELS[:3], *HOSTILE_TEXTS, '=HYPERLINK("t")', "@SUM(A1)", "-1+1"])


def test_longterm_workbook_writes_hostile_text_as_text(tmp_path: Path, hostile_test: tuple) -> None:
    _, series, _, evidence = hostile_test
    s = series[1]
    data = LongtermData(s.identity, s.config, daily_rows(s, "UTC"), samples=s, evidence=evidence[1],
                        extra={"=site": "=WEBSERVICE(\"x\")", "note": "\r=1"})
    out = write_longterm_workbook(tmp_path / "long.xlsx", data)
    _assert_text_only(out, [HOSTILE_LABELS[1], "=site", '=WEBSERVICE("x")', "\r=1"])


def test_streamed_sheet_headers_and_sheet_names_are_text(tmp_path: Path) -> None:
    wb = new_workbook()
    name = L.sheet_name("=x'!A1,'y", set())
    assert "'" not in name
    add_numeric_sheet(wb, name, [Column('=HYPERLINK("h")', np.arange(3.0)), Column("a\x00b", np.ones(3))])
    ws = L.add_sheet(wb, "Text")
    ws.append(["=1+1", 5, "@x"])  # bare strings appended to a text sheet
    out = save_workbook(wb, tmp_path / "s.xlsx")
    assert formula_cells(out) == []
    texts = _all_text(out)
    assert '=HYPERLINK("h")' in texts and "a\ufffdb" in texts and "=1+1" in texts and "@x" in texts
    with zipfile.ZipFile(out) as z:
        z.testzip()


class _Series:
    """A plain sample series whose serial is hostile (the CSV writer must not trust it)."""

    def __init__(self, base: LoggerSamples, serial: str) -> None:
        self.identity = type("Ident", (), {"serial": serial, "markers": ("SIMULATED",), "generation": 2,
                                           "firmware": "=1"})()
        self.config, self.t_ms, self.mv, self.dc = base.config, base.t_ms, base.mv, base.dc


def test_csv_and_parquet_writers_keep_text_as_text(tmp_path: Path, hostile_test: tuple) -> None:
    _, series, _, _ = hostile_test
    hostile = _Series(series[0], '=HYPERLINK("x")')
    out = write_samples_many(tmp_path / "all.csv", [hostile, series[1]])
    with out.open(newline="") as fh:
        rows = list(csv.reader(line for line in fh if not line.startswith("#")))
    for row in rows[1:]:
        for value in row:
            try:
                float(value)
                continue  # a number (negative temperatures included) is not text
            except ValueError:
                assert not formula_like(value), value
    assert rows[1][0] == "'=HYPERLINK(\"x\")"
    pq_out = write_samples_many(tmp_path / "all.parquet", [hostile, series[1]])
    table = pq.read_table(pq_out)
    # Parquet is typed: the serial is a string column, kept exactly (no spreadsheet guesses types).
    assert str(table.schema.field("serial").type).startswith("dictionary<values=string")
    assert table.column("serial").to_pylist()[0] == '=HYPERLINK("x")'


def _hostile_logfiles(d: Path) -> None:
    """Signed logfiles of a small test whose every text field (labels, test id, site, notes) is hostile."""
    from smartlogger.logfile import LogfileMetadata, simulated_credentials
    from smartlogger.model import ConfigChange, SampleBlock
    from smartlogger.testing.logfile_examples import ChainedLog
    from smartlogger.testing.synthetic import synthetic_string_test

    logs, _ = synthetic_string_test(2, current_a=100.0, capacity_ah=[50.0, 42.0], rated_ah=50.0,
                                    pre_s=60, post_s=60, seed=4)
    for i, log in enumerate(logs):
        chained = ChainedLog(log.serial)
        cfg = log.config.with_changes(block_label=HOSTILE_LABELS[i], test_id="=WEBSERVICE(\"http://x\")")
        chained.append(ConfigChange(int(log.t_ms[0]) - 1000, cfg, 1))
        for k in range(0, len(log), 600):
            chained.append(SampleBlock.of(int(log.t_ms[k]), 1000, log.mv[k:k + 600].tolist(),
                                          log.dc[k:k + 600].tolist()))
        cred = simulated_credentials(log.identity)
        end = int(log.t_ms[-1]) + 1000
        att = chained.sign(cred, bytes(16), end, end)
        meta = LogfileMetadata(HOSTILE_LABELS[i], i + 1, {
            "load": "100 A", "rated_time": "30min", "test_id": '=HYPERLINK("t")',
            "site": '=WEBSERVICE("http://evil.invalid/")', "notes": "@SUM(A1)"})
        (d / f"{log.serial}.slog").write_bytes(chained.logfile(log.identity, cred, [att], meta))


def test_cli_workbooks_of_a_hostile_test_have_no_formulas(tmp_path: Path) -> None:
    d = tmp_path / "test"
    d.mkdir()
    _hostile_logfiles(d)
    runner = CliRunner()
    report = tmp_path / "report.xlsx"
    res = runner.invoke(main, ["export", "xlsx", "--test", str(d), "-o", str(report)])
    assert res.exit_code == 0, res.output
    _assert_text_only(report, [HOSTILE_LABELS[0], HOSTILE_LABELS[1], '=WEBSERVICE("http://evil.invalid/")'])
    for f in sorted(d.glob("*.slog")):
        out = tmp_path / f"{f.stem}.xlsx"
        res = runner.invoke(main, ["export", "xlsx", str(f), "-o", str(out)])
        assert res.exit_code == 0, res.output
        assert formula_cells(out) == []
    csv_out = tmp_path / "samples.csv"
    res = runner.invoke(main, ["logfile", "convert", str(f), "-o", str(csv_out)])
    assert res.exit_code == 0
    assert csv_out.read_text().splitlines()[0] == "time_utc,voltage_v,temperature_c"

    soffice = shutil.which("soffice") or shutil.which("libreoffice")
    if soffice is None:
        return
    # A real spreadsheet program: the Summary sheet as CSV shows the hostile texts literally. Had
    # LibreOffice evaluated =HYPERLINK("t") the cell would read "t", and =WEBSERVICE would be empty.
    profile = tmp_path / "lo-profile"
    subprocess.run([soffice, f"-env:UserInstallation=file://{profile}", "--headless", "--convert-to",
                    "csv:Text - txt - csv (StarCalc):44,34,76,1,,0,false,true,false,false,false,1",
                    "--outdir", str(tmp_path), str(report)], check=True, capture_output=True, timeout=180)
    text = (tmp_path / "report-Summary.csv").read_text(encoding="utf-8", errors="replace")
    assert '"Capacity test =HYPERLINK(""t"")"' in text
    assert '"=WEBSERVICE(""http://evil.invalid/"")"' in text
    assert '"=HYPERLINK(""x"")"' in text and ",=cmd|'/Ccalc'!A0," in text
