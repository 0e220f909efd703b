"""Evidence benchmark: does anything that is not evidence pass as evidence, from the logger to the report?

Prints ONE JSON object. Goals: ``forged_simulated_exit0`` 0, ``tampered_in_results`` 0,
``unsigned_merged_into_signed`` 0, ``verified_result_changed`` 0, ``server_flags_stale_pull`` and
``server_flags_second_key`` true, ``server_refuses_simulated_for_hardware`` true,
``formula_cells_from_data`` 0 (every workbook of a test whose every text field is hostile) and
``formula_csv_cells_from_data`` 0.

    python benchmarks/evidence.py [--quick]

The test is a small hardware string (loggers certified by a throwaway production root, each
pulled twice; ``smartlogger.testing.evidence_cases``). Bad input: the tamper corpus of
benchmarks/logfile.py on every logger's latest pull, plus forged SIMULATED files (for hardware
serials and new ones, SIMULATED and REPLAYED), valid files of another logger with a relabelled
serial, unsigned continuations of a signed chain, stripped (unsigned) copies, older pulls after
newer ones and second device keys. Each bad file is analysed with the genuine files; its status
and what the analysis did with it are counted.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import tempfile
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from smartlogger.analysis.analyze import analyze_test
from smartlogger.analysis.inputs import ConstantCurrent, TestMetadata
from smartlogger.analysis.loading import load_test_files
from smartlogger.analysis.results import TestResult
from smartlogger.cli import main as cli
from smartlogger.export.adapters import load_test_dir, logger_export_inputs, longterm_inputs
from smartlogger.export.celltext import formula_like
from smartlogger.export.check import formula_cells
from smartlogger.export.data import write_samples
from smartlogger.export.logger_workbook import write_logger_workbook
from smartlogger.export.longterm import write_longterm_workbook
from smartlogger.export.string_report import write_string_report
from smartlogger.logfile import build_logfile, read_logfile, simulated_credentials
from smartlogger.logfile.trust import trust_toml
from smartlogger.model import LoggerIdentity
from smartlogger.testing.evidence_cases import SignedTest, signed_string_test
from smartlogger.testing.logfile_examples import ChainedLog
from smartlogger.testing.tamper import tamper_cases

META = TestMetadata(ConstantCurrent(100.0), rated_time_s=1800.0)
HOSTILE_LABELS = ['=HYPERLINK("x")', "=cmd|'/Ccalc'!A0", "+1+1", "-2+3", "@SUM(A1)", "\t=1"]
HOSTILE_META = {"load": "100 A", "rated_time": "30min", "test_id": '=HYPERLINK("http://x")',
                "site": '=WEBSERVICE("http://evil.invalid/")', "notes": "@SUM(A1)", "string": "-1+1",
                "customer": "\r=2+3"}


def _numbers(r: TestResult) -> list[tuple[Any, ...]]:
    return [*((b.serial, b.samples, b.capacity_pct, b.delivered_ah, b.time_to_end_s, b.min_voltage_v)
              for b in r.blocks), (r.discharge.start_ms, r.discharge.end_ms, r.capacity.capacity_pct)]


def _stripped(data: bytes) -> bytes:
    lf = read_logfile(data)
    return build_logfile(lf.identity, None, [[(r.seq, r.data) for r in st.records] for st in lf.streams],
                         [(st.anchor_seq, st.anchor_hash) for st in lf.streams], [], lf.metadata)


def _forged_simulated_new_serial(case: SignedTest, serial: str, *, replayed: bool) -> bytes:
    """A SIMULATED/REPLAYED file for a chosen serial with another logger's records (made up)."""
    lg = case.loggers[0]
    ident = LoggerIdentity(serial, lg.identity.generation, "2.1.0", simulated=not replayed, replayed=replayed)
    cred = simulated_credentials(ident)
    log = ChainedLog(serial)
    for _, _, rec in lg.log.streams[0]:
        log.append(rec)
    return log.logfile(ident, cred, [log.sign(cred, b"\x42" * 16, lg.end_ms, lg.end_ms)])


def bad_files(case: SignedTest, positions: int) -> list[tuple[str, str, bytes]]:
    """(kind, name, bytes) of every adversarial file."""
    out: list[tuple[str, str, bytes]] = []
    n = len(case.loggers)
    for i, lg in enumerate(case.loggers):
        other = case.loggers[(i + 1) % n]
        for k, c in enumerate(tamper_cases(lg.pulls[-1], other=other.pulls[-1], older_pull=lg.pulls[0],
                                           positions=positions, seed=11 + i)):
            out.append((f"tamper_{c.kind}", f"{lg.serial}-tamper-{k}.slog", c.data))
        out += [("forged_simulated", f"{lg.serial}-forged-sim.slog", case.forged_simulated(i)),
                ("tampered_shift", f"{lg.serial}-shift.slog", case.tampered(i)),
                ("relabelled", f"{lg.serial}-relabelled.slog", case.relabelled(i, (i + 1) % n)),
                ("unsigned_continuation", f"{lg.serial}-continued.slog", case.unsigned_continuation(i)),
                ("stripped_copy", f"{lg.serial}-stripped.slog", _stripped(lg.pulls[-1])),
                ("older_pull", f"{lg.serial}-older.slog", case.older_pull(i)),
                ("second_key", f"{lg.serial}-clone.slog", case.second_key(i))]
    return out


def analysis_checks(case: SignedTest, bad: list[tuple[str, str, bytes]]) -> dict[str, Any]:
    genuine_files = case.files()
    logs, excluded = _loaded(genuine_files, case)
    genuine = analyze_test(logs, META, excluded=excluded)
    tampered_used = unsigned_merged = changed = unnamed = 0
    outcome: dict[str, Counter[str]] = {}
    genuine_shas = {hashlib.sha256(d).hexdigest() for d in genuine_files.values()}
    for kind, name, data in bad:
        logs, excluded = _loaded({**genuine_files, name: data}, case)
        r = analyze_test(logs, META, excluded=excluded)
        if _numbers(r) != _numbers(genuine) or not r.evidence.verified_only:
            changed += 1
        if hashlib.sha256(data).hexdigest() in genuine_shas:
            # The genuine bytes again (an older pull already in the set, a no-op "tamper"): the
            # loader counts a copied file once.
            outcome.setdefault(kind, Counter())["copy of a genuine file/counted once"] += 1
            continue
        records = [f for b in r.blocks for f in b.evidence.files if f.file == name] + \
                  [f for f in r.excluded if f.file == name]
        rec = records[0] if records else None
        if rec is None or not rec.status:
            unnamed += 1
            continue
        outcome.setdefault(kind, Counter())[f"{rec.status}/{'used' if rec.used else rec.reason}"] += 1
        if rec.used and rec.status in ("tampered", "unreadable"):
            tampered_used += 1
        if rec.used and rec.status == "unsigned" and any(
                f.used and f.status in ("verified", "simulated") for b in r.blocks for f in b.evidence.files
                if f.serial == rec.serial):
            unsigned_merged += 1
    return {"bad_files": len(bad), "tampered_in_results": tampered_used,
            "unsigned_merged_into_signed": unsigned_merged, "verified_result_changed": changed,
            "bad_files_without_a_named_status": unnamed,
            "outcome_by_kind": {k: dict(sorted(v.items())) for k, v in sorted(outcome.items())}}


def _loaded(files: dict[str, bytes], case: SignedTest) -> tuple[Any, Any]:
    loaded = load_test_files(list(files.items()), trust=case.trust)
    return loaded.logs, loaded.excluded


def verify_checks(case: SignedTest, tmp: Path) -> dict[str, Any]:
    """``smartlogger logfile verify`` (as a script would call it) on forged simulated files."""
    forged = [case.forged_simulated(i) for i in range(len(case.loggers))]
    forged += [_forged_simulated_new_serial(case, f"ACME-2024-{k:06d}", replayed=bool(k % 2)) for k in range(4)]
    trust = tmp / "trust.toml"
    trust.write_text(trust_toml(case.trust))
    runner = CliRunner()
    exit0 = exit6 = 0
    for k, data in enumerate(forged):
        path = tmp / f"forged-{k}.slog"
        path.write_bytes(data)
        for extra in ([], ["--trust", str(trust)]):
            code = runner.invoke(cli, ["logfile", "verify", str(path), *extra]).exit_code
            exit0 += code == 0
            exit6 += code == 6
    genuine = tmp / "genuine.slog"
    genuine.write_bytes(case.loggers[0].pulls[-1])
    ok = runner.invoke(cli, ["logfile", "verify", str(genuine), "--trust", str(trust)]).exit_code
    return {"forged_simulated_files": len(forged), "forged_simulated_runs": 2 * len(forged),
            "forged_simulated_exit0": exit0, "forged_simulated_exit6": exit6, "genuine_hardware_exit": ok}


def server_checks(case: SignedTest, tmp: Path) -> dict[str, Any]:
    from smartlogger.testing.api import api_env

    out: dict[str, Any] = {}
    with api_env("sqlite", tmp / "api", TRUST=case.trust) as env:
        c, h = env.client, {**env.a.headers("technician"), "Content-Type": "application/octet-stream"}
        lg = case.loggers[0]
        c.post("/api/logfiles", data=lg.pulls[1], headers=h)
        stale = c.post("/api/logfiles", data=lg.pulls[0], headers=h).get_json()
        out["server_flags_stale_pull"] = [f["kind"] for f in stale["custody"]] == ["possible_replay"]
        clone = c.post("/api/logfiles", data=case.second_key(0), headers=h).get_json()
        out["server_flags_second_key"] = [f["kind"] for f in clone["custody"]] == ["possible_clone"]
        forged = c.post("/api/logfiles", data=case.forged_simulated(0), headers=h)
        out["server_refuses_simulated_for_hardware"] = (
            forged.status_code == 409 and forged.get_json()["error"]["code"] == "provenance_conflict")
        receipt = c.get(f"/api/logfiles/{stale['id']}/receipt", headers=h).get_json()["receipt"]
        out["receipt_names_status_and_custody"] = (receipt["verification_status"] == "verified"
                                                   and receipt["custody"] == ["possible_replay"])
        env.wait_jobs()
    return out


def formula_checks(tmp: Path) -> dict[str, Any]:
    """Every workbook and CSV of a test whose every text field (labels, test id, site, notes) is hostile."""
    case = signed_string_test(3, labels=HOSTILE_LABELS[:3], test_meta=HOSTILE_META)
    folder = tmp / "hostile"
    folder.mkdir()
    for name, data in case.files().items():
        (folder / name).write_bytes(data)
    workbooks: list[Path] = []
    t = load_test_dir(folder, trust=case.trust)
    t.outcome = replace(t.outcome, notes=[*t.outcome.notes, *HOSTILE_META.values()])  # user notes too
    workbooks.append(write_string_report(tmp / "report.xlsx", t.outcome, t.series, exceedances=t.exceedances,
                                         evidence=t.evidence, resolution_s=30, chart_points=500))
    csv_cells = 0
    csv_files = 0
    for path in sorted(folder.glob("*-pull2.slog")):
        inputs = logger_export_inputs(path, trust=case.trust)
        workbooks.append(write_logger_workbook(tmp / f"{path.stem}.xlsx", inputs.series,
                                               exceedances=inputs.exceedances, evidence=inputs.evidence,
                                               chart_points=500))
        data = longterm_inputs(path, trust=case.trust)
        data.extra.update(HOSTILE_META)
        workbooks.append(write_longterm_workbook(tmp / f"{path.stem}-long.xlsx", data))
        out = write_samples(tmp / f"{path.stem}.csv", inputs.series)
        csv_files += 1
        for row in csv.reader(io.StringIO(out.read_text())):
            for cell in row:
                try:
                    float(cell)
                except ValueError:
                    csv_cells += formula_like(cell)
    return {"hostile_workbooks": len(workbooks), "formula_cells_from_data": sum(len(formula_cells(w))
                                                                                for w in workbooks),
            "hostile_csv_files": csv_files, "formula_csv_cells_from_data": csv_cells}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="a smaller tamper corpus")
    args = ap.parse_args()
    t0 = time.perf_counter()
    case = signed_string_test(3)
    out: dict[str, Any] = {"benchmark": "evidence", "quick": args.quick, "blocks": len(case.loggers)}
    with tempfile.TemporaryDirectory(prefix="sl-evidence-") as d:
        tmp = Path(d)
        out.update(verify_checks(case, tmp))
        bad = bad_files(case, 3 if args.quick else 8)
        out.update(analysis_checks(case, bad))
        out.update(server_checks(case, tmp))
        out.update(formula_checks(tmp))
    out["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
