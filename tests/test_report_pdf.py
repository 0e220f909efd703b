"""The customer report (issue 20): the PDF and the workbook rendered, each page's text checked."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from smartlogger.analysis.analyze import analyze_test
from smartlogger.analysis.inputs import ConstantCurrent, TestMetadata
from smartlogger.export.adapters import string_report_inputs
from smartlogger.export.pdf import pdf_report_bytes
from smartlogger.export.report import COLOURS, lower_bounds_coloured_as_fail, report_content
from smartlogger.export.string_report import write_string_report
from smartlogger.testinfo import BatteryInfo, SiteInfo, TestInfo
from smartlogger.testing.synthetic import synthetic_string_test

INFO = TestInfo(site=SiteInfo("Plant North", address="Hall 3"), technician="Tina Tester", company="Acme Service",
                battery=BatteryInfo(make="CSB", model="GP12400", rated_ah=100.0), ambient_c=21.5)


@pytest.fixture(scope="module")
def inputs():  # type: ignore[no-untyped-def]
    logs, _ = synthetic_string_test(3, current_a=10.0, capacity_ah=[100.0, 45.0, 100.0], duration_s=4.7 * 3600,
                                    seed=5)
    result = analyze_test(logs, TestMetadata(ConstantCurrent(10.0), rated_time_s=10 * 3600.0))
    result.report_info = INFO.report_info()
    return result, logs


def _pages(pdf: Path) -> list[str]:
    n = int(next(line.split()[-1] for line in subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True,
                                                             check=True).stdout.splitlines()
                 if line.startswith("Pages:")))
    return [subprocess.run(["pdftotext", "-f", str(i), "-l", str(i), "-layout", str(pdf), "-"], capture_output=True,
                           text=True, check=True).stdout for i in range(1, n + 1)]


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="poppler-utils not installed")
def test_pdf_pages_say_the_verdict_who_and_where(inputs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result, logs = inputs
    rep = report_content(result)
    assert rep.outcome == "fail"  # block 2 measured at ~45 %, the others lower bounds
    out = tmp_path / "r.pdf"
    _, series, _ = string_report_inputs(result, logs)
    out.write_bytes(pdf_report_bytes(rep, series))
    pages = _pages(out)
    assert 2 <= len(pages) <= 6
    first = " ".join(pages[0].split())
    assert "Result: FAIL" in first and " ".join(rep.sentence.split()) in first
    assert "Plant North" in first and "Tina Tester" in first and "CSB / GP12400" in first and "21.5 °C" in first
    for i, page in enumerate(pages, 1):
        assert f"page {i} of {len(pages)}" in page
    table = " ".join(" ".join(pages).split())
    bounds = [b for b in result.blocks if b.lower_bound]
    assert bounds and all(f"≥ {b.capacity_pct:.1f} %" in table for b in bounds)
    assert "not determined" in table and "FAIL" in table


def test_pdf_without_unicode_font_spells_the_signs_out(inputs) -> None:  # type: ignore[no-untyped-def]
    result, _ = inputs
    data = pdf_report_bytes(report_content(result), font=None)
    assert data.startswith(b"%PDF")


def test_lower_bounds_are_never_coloured_as_failures(inputs) -> None:  # type: ignore[no-untyped-def]
    result, _ = inputs
    rep = report_content(result)
    fills = {b.serial: COLOURS.get(b.disposition, "") for b in rep.blocks}
    assert lower_bounds_coloured_as_fail(rep, fills) == 0
    # The check itself can fail: a bound painted red is counted.
    bound = next(b.serial for b in rep.blocks if b.lower_bound)
    assert lower_bounds_coloured_as_fail(rep, {**fills, bound: COLOURS["fail"]}) == 1


@pytest.mark.skipif(shutil.which("soffice") is None or shutil.which("pdftotext") is None,
                    reason="LibreOffice / poppler not installed")
def test_workbook_through_libreoffice(inputs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result, logs = inputs
    outcome, series, exc = string_report_inputs(result, logs)
    xlsx = write_string_report(tmp_path / "report.xlsx", outcome, series, exceedances=exc)
    subprocess.run(["soffice", "--headless", f"-env:UserInstallation=file://{tmp_path}/lo", "--convert-to", "pdf",
                    "--outdir", str(tmp_path), str(xlsx)], check=True, capture_output=True, timeout=240)
    pages = _pages(tmp_path / "report.pdf")
    # Summary 1-2, Overview 2, Exceedances 1, one page per block; the Data and Evidence tables not printed.
    assert len(pages) <= 5 + len(series)
    assert not any("Elapsed" in p or "SHA-256" in p for p in pages)
    first = " ".join(pages[0].split())
    assert "Result: FAIL" in first and "Plant North" in first and "Tina Tester" in first
    text = " ".join(" ".join(pages).split())
    assert "≥ " in text and "not determined" in text
    for i, page in enumerate(pages, 1):
        assert f"page {i} of {len(pages)}" in page


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="poppler-utils not installed")
def test_api_serves_the_pdf_report(tmp_path: Path) -> None:
    from smartlogger.testing.api import api_env, simulated_logfiles

    with api_env("sqlite", tmp_path) as env:
        c, tech = env.client, env.a.headers("technician")
        tid = c.post("/api/tests", headers=tech, json={
            "load": "50A", "rated_time": "2h", "blocks": 3, "name": "Annual test",
            "metadata": {"site": "Plant North", "technician": "Tina Tester"}}).get_json()["id"]
        assert c.get(f"/api/tests/{tid}/report.pdf", headers=tech).status_code == 409  # no result yet
        for data in simulated_logfiles(3):
            assert c.post(f"/api/logfiles?test_id={tid}", headers=tech, data=data,
                          content_type="application/octet-stream").status_code == 201
        env.wait_jobs()
        result = c.get(f"/api/tests/{tid}/results", headers=tech).get_json()["result"]
        assert result["verdict"]["outcome"] in ("pass", "fail", "inconclusive")
        assert result["report_info"]["technician"] == "Tina Tester"
        r = c.get(f"/api/tests/{tid}/report.pdf", headers=tech)
        assert r.status_code == 200 and r.mimetype == "application/pdf"
        out = tmp_path / "api.pdf"
        out.write_bytes(r.data)
        first = " ".join(_pages(out)[0].split())
        assert " ".join(result["verdict"]["sentence"].split()) in first
        assert "Plant North" in first and "Tina Tester" in first


@pytest.mark.skipif(shutil.which("soffice") is None or shutil.which("pdftotext") is None,
                    reason="LibreOffice / poppler not installed")
def test_logger_workbook_prints_without_its_data(inputs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from smartlogger.export.logger_workbook import write_logger_workbook

    result, logs = inputs
    _, series, _ = string_report_inputs(result, logs)
    xlsx = write_logger_workbook(tmp_path / "logger.xlsx", series[1])  # ~17,000 samples on the Data sheet
    subprocess.run(["soffice", "--headless", f"-env:UserInstallation=file://{tmp_path}/lo", "--convert-to", "pdf",
                    "--outdir", str(tmp_path), str(xlsx)], check=True, capture_output=True, timeout=240)
    pages = _pages(tmp_path / "logger.pdf")
    assert len(pages) <= 4  # Summary, Charts (2): the Data sheet is not printed (not hundreds of pages)
    assert not any("Device time" in p for p in pages)
    assert f"Logger {series[1].identity.serial}" in pages[0] and f"page 1 of {len(pages)}" in pages[0]


def _test_folder(tmp_path: Path, info: TestInfo) -> Path:
    """A test folder of a simulated 3-block test's logfiles with ``info`` as its test.json."""
    from smartlogger.testing.api import simulated_logfiles

    d = tmp_path / "test"
    d.mkdir()
    for i, data in enumerate(simulated_logfiles(3)):
        (d / f"b{i + 1}.slog").write_bytes(data)
    info.write(d)
    return d


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="poppler-utils not installed")
def test_cli_export_pdf_of_a_test_folder(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from smartlogger.cli import main

    d = _test_folder(tmp_path, TestInfo(load="50A", rated_time="2h", technician="Tina Tester",
                                        site=SiteInfo("Plant North")))
    runner = CliRunner()
    bad = runner.invoke(main, ["export", "pdf", "--test", str(d), "-o", str(tmp_path / "report.txt")])
    assert bad.exit_code != 0 and "must end in .pdf" in bad.output
    out = tmp_path / "report.pdf"
    res = runner.invoke(main, ["export", "pdf", "--test", str(d), "-o", str(out), "--json"])
    assert res.exit_code == 0, res.output
    first = " ".join(_pages(out)[0].split())
    assert "Result: " in first and "Plant North" in first and "Tina Tester" in first
    # test.json edited after the analysis: the report says who tested as it says now.
    assert runner.invoke(main, ["test", "analyze", str(d)]).exit_code == 0
    assert runner.invoke(main, ["test", "set", str(d), "--technician", "Tom Other"]).exit_code == 0
    assert runner.invoke(main, ["export", "pdf", "--test", str(d), "-o", str(out)]).exit_code == 0
    assert "Tom Other" in " ".join(_pages(out)[0].split())


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="poppler-utils not installed")
def test_a_watch_record_beside_the_logs_is_the_reports_live_watch_annex(tmp_path: Path) -> None:
    import json

    from click.testing import CliRunner
    from openpyxl import load_workbook

    from smartlogger.analysis.results import TestResult
    from smartlogger.cli import main
    from smartlogger.export.report import local_time

    d = _test_folder(tmp_path, TestInfo(load="50A", rated_time="2h", end_voltage="10.5V/block"))
    runner = CliRunner()
    assert runner.invoke(main, ["test", "analyze", str(d)]).exit_code == 0
    result = TestResult.from_json((d / "result.json").read_text())
    first = min((b for b in result.blocks if b.reached_end_voltage), key=lambda b: b.time_to_end_s or 0)
    other = next(b for b in result.blocks if b.position != first.position)
    logs_ms = result.discharge.start_ms + round((first.time_to_end_s or 0) * 1000)
    out = tmp_path / "report.pdf"
    assert runner.invoke(main, ["export", "pdf", "--test", str(d), "-o", str(out)]).exit_code == 0
    assert "Live watch" not in " ".join(_pages(out))  # no watch record, no annex
    start = result.discharge.start_ms
    record = {"format": "smartlogger-watch", "v": 1,
              "options": {"end_v": 10.5, "guard_v": 0.1, "current_a": 50.0, "blocks": 3},
              "started_ms": start - 600_000, "ended_ms": logs_ms + 60_000, "first_seen_ms": start - 599_000,
              "discharge_start_ms": start, "accepted": 4321, "rejected": {"bad_mac": 3},
              "alarm": {"position": first.position, "serial": None, "mv": 10_590, "v": 10.59,
                        "sample_ms": logs_ms - 30_000, "fired_ms": logs_ms - 29_500, "alarm_v": 10.6,
                        "elapsed_s": (logs_ms - 30_000 - start) / 1000, "seq": 99},
              "blocks": [{"position": first.position, "samples": [[start + 1000, 12_100], [logs_ms - 30_000, 10_590],
                                                                  [logs_ms + 20_000, 10_495],
                                                                  [logs_ms + 30_000, 10_400]]},
                         {"position": other.position, "samples": [[start + 1000, 12_200], [logs_ms, 11_000]]}]}
    (d / "watch.json").write_text(json.dumps(record))
    res = runner.invoke(main, ["export", "pdf", "--test", str(d), "-o", str(out)])
    assert res.exit_code == 0, res.output
    pages = _pages(out)
    annex = " ".join(pages[-1].split())
    assert "Annex: Live watch" in annex and f"page {len(pages)} of {len(pages)}" in annex
    block = f"block {first.position} ({first.serial})"
    assert f"Watch started {local_time(start - 600_000, 'UTC')} (UTC)" in annex
    assert f"Watch ended {local_time(logs_ms + 60_000, 'UTC')}" in annex
    assert f"End alarm {block} at 10.590 V (alarm at 10.600 V), measured {local_time(logs_ms - 30_000, 'UTC')}, " \
           "raised 0.5 s later" in annex
    assert f"First at end V, live {block} at {local_time(logs_ms + 20_000, 'UTC')} (10.495 V)" in annex
    assert f"First at end V, logs {block} at {local_time(logs_ms, 'UTC')}" in annex
    assert "Live vs logs the same block; live 20 s later" in annex and "3 rejected (bad_mac)" in annex
    # the workbook's Summary carries the same annex
    xlsx = tmp_path / "report.xlsx"
    assert runner.invoke(main, ["export", "xlsx", "--test", str(d), "-o", str(xlsx)]).exit_code == 0
    cells = [str(c) for row in load_workbook(xlsx, read_only=True)["Summary"].iter_rows(values_only=True)
             for c in row if c is not None]
    assert "Annex: Live watch" in cells and "the same block; live 20 s later" in cells
    # a watch.json that is not a watch record: one line, and no report made from half the truth
    (d / "watch.json").write_text('{"format": "something else"}')
    bad = runner.invoke(main, ["export", "pdf", "--test", str(d), "-o", str(tmp_path / "bad.pdf")])
    assert bad.exit_code != 0 and "not a readable watch record" in bad.output
    assert not (tmp_path / "bad.pdf").exists()
