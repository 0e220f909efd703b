"""The whole job on a simulated string, every seam exercised: ``smartlogger demo``.

Owns the orchestration only; every step calls the same library functions the
individual commands use, and the string is a virtual site (``smartlogger sim site``),
so the demo and a rehearsal step by step share one path:

1. start a virtual site of healthy and weak blocks in ``OUT/site`` (its own process,
   ``device.site``), one logger per block;
2. program every logger over NFC in tap order (nfcpy's ``udp`` driver against the
   site's walk, ``field.nfc.KitSession``), the phone's clock being the site's;
3. run the constant-load discharge test on the site's virtual time: float, load bank
   on with its cutoff at the end voltage, until it switches off, rest;
4. pull every log over BLE (bleak on a Bumble controller in the site's process, over
   HCI) with at most K connections, as on a phone (``field.ble.pull_many``);
5. verify every logfile (``logfile.verify_logfile``): the demo's loggers are simulated, so
   each must come out ``simulated`` (intact, never evidence), as ``smartlogger logfile
   verify --allow-simulated`` accepts it;
6. analyse the test (``analysis.analyze_test``), write the string report and the
   per-logger workbooks (``export``);
7. start the API in-process on an embedded SQLite in the output folder and sync
   everything to it (``field.sync``);
8. summarise. The site is stopped and kept in ``OUT/site`` (``smartlogger sim site
   start OUT/site`` continues the rehearsal); a later demo into the folder replaces it.

A failing step raises ``DemoStepError`` naming the step; nothing here catches
and hides an error, and the demo's site never outlives the demo.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from werkzeug.serving import make_server

from smartlogger.analysis.analyze import analyze_test
from smartlogger.analysis.inputs import TestMetadata, load_from_quantity, read_datasheet_csv
from smartlogger.analysis.loading import load_test_files
from smartlogger.api import create_app
from smartlogger.api.admin import Admin, AdminError
from smartlogger.device.site.launch import start_background
from smartlogger.errors import SmartLoggerError
from smartlogger.export.adapters import (
    evidence_from_report,
    logger_export_inputs,
    string_report_inputs,
    watch_annex_rows,
)
from smartlogger.export.logger_workbook import write_logger_workbook
from smartlogger.export.pdf import write_pdf_report
from smartlogger.export.string_report import write_string_report
from smartlogger.field import ble as fb
from smartlogger.field.ble_virtual import VirtualBleakClient, VirtualBleakScanner, VirtualRadio
from smartlogger.field.nfc import KitSession, Outcome
from smartlogger.field.profiles import load_profile
from smartlogger.field.site import SiteClient, is_site
from smartlogger.field.sync import sync_folder
from smartlogger.logfile import verify_logfile
from smartlogger.protocol.site import lock_is_held
from smartlogger.quantities import parse_load
from smartlogger.testinfo import BatteryInfo, SiteInfo, StringInfo, SystemInfo, TestInfo

#: The datasheet of the simulated block (CSB GP 12400 scaled to 100 Ah C10), used as rated data.
DATASHEET = Path(__file__).parent / "data" / "sim_vrla_12v100_datasheet.csv"

STEPS: tuple[tuple[str, str], ...] = (
    ("simulate", "Start a virtual site: the string and its loggers"),
    ("nfc", "Program every logger over NFC (tap order)"),
    ("discharge", "Run the discharge test on virtual time"),
    ("ble", "Pull every log over BLE"),
    ("verify", "Verify every logfile (simulated: accepted as --allow-simulated)"),
    ("analyze", "Analyse the capacity test"),
    ("workbooks", "Write the string report and logger workbooks"),
    ("api", "Start the API and sync everything to it"),
)


class DemoStepError(SmartLoggerError):
    """A demo step failed; ``step`` names it."""

    def __init__(self, step: str, message: str) -> None:
        self.step = step
        super().__init__(f"demo step '{step}' failed: {message}")


@dataclass(frozen=True)
class DemoOptions:
    blocks: int = 24
    weak: int = 2
    out: Path = Path("demo-out")
    seed: int = 1
    load: str = "20A"
    ambient_c: float = 25.0
    rated_ah: float = 100.0
    concurrency: int = 3  # BLE connections at once, as a phone allows
    logger_workbooks: bool = True


@dataclass
class DemoSummary:
    """What the demo did and where everything is (also written as ``summary.json``)."""

    options: dict[str, Any]
    steps: dict[str, float] = field(default_factory=dict)  # step -> wall seconds
    facts: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"options": self.options, "step_wall_s": self.steps, "facts": self.facts,
                "outputs": self.outputs}


StepHook = Callable[[str, str], None]  # (step key, description) when a step starts
ProgressHook = Callable[[int, int], None]  # (done, total) within the current step

#: Marks a folder as written by ``smartlogger demo`` (so a later demo may clear it).
DEMO_MARKER = ".smartlogger-demo"
#: What a demo writes into its output folder; a later demo removes exactly these (the marker
#: stays: the folder remains a demo folder while it is cleared, whatever else is in it).
DEMO_OUTPUTS = ("logs", "workbooks", "api", "report.xlsx", "report.pdf", "result.json", "summary.json",
                "nfc_session.json", "site")


def prepare_output(out: Path) -> list[str]:
    """Make ``out`` an empty demo folder; returns what an earlier demo left there and was removed.

    A folder that holds anything and was not written by a demo is refused (``DemoStepError``):
    the demo never deletes files it did not write.
    """
    if out.exists() and not out.is_dir():
        raise DemoStepError("options", f"--out {out} is a file, not a folder")
    if not out.exists():
        out.mkdir(parents=True)
        return []
    present = sorted(p.name for p in out.iterdir())
    if not present:
        return []
    # A demo folder: our marker, or (from demos before the marker) the demo's own summary files.
    ours = (out / DEMO_MARKER).exists() or (out / "summary.json").exists() or (out / "nfc_session.json").exists()
    site = out / "site"
    if site.exists() and (not is_site(site) or lock_is_held(site)):
        why = "is running" if is_site(site) else "is not a virtual site"
        raise DemoStepError("options", f"{site} {why}; stop it (smartlogger sim site stop {site}) "
                                       "or choose another --out")
    if not ours:
        raise DemoStepError("options", f"--out {out} is not empty and was not written by smartlogger demo "
                                       f"(it holds {', '.join(present[:5])}{', ...' if len(present) > 5 else ''}): "
                                       "choose another --out or empty it")
    removed = []
    for name in DEMO_OUTPUTS:
        p = out / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()
        else:
            continue
        removed.append(name)
    return removed


def run_demo(opts: DemoOptions, *, on_step: StepHook | None = None,
             on_progress: ProgressHook | None = None,
             on_note: Callable[[str], None] | None = None) -> DemoSummary:
    """Run every step; raises ``DemoStepError`` naming the first step that fails.

    An output folder of an earlier demo is cleared first (``on_note`` says what was removed);
    any other non-empty folder is refused.
    """
    if opts.blocks < 2:
        raise DemoStepError("options", "a string needs at least 2 blocks")
    if not 0 <= opts.weak <= opts.blocks:
        raise DemoStepError("options", f"--weak {opts.weak} is outside 0..{opts.blocks}")
    out = opts.out
    removed = prepare_output(out)
    (out / DEMO_MARKER).write_text("written by smartlogger demo; a later demo may clear this folder\n")
    if removed and on_note is not None:
        on_note(f"starting clean: removed the earlier demo's {', '.join(removed)} from {out}")
    summary = DemoSummary(options={"blocks": opts.blocks, "weak": opts.weak, "seed": opts.seed,
                                   "load": opts.load, "ambient_c": opts.ambient_c,
                                   "rated_ah": opts.rated_ah, "concurrency": opts.concurrency,
                                   "out": str(out)})
    if removed:
        summary.facts["cleared_earlier_demo"] = removed
    ctx: dict[str, Any] = {}
    progress = on_progress or (lambda done, total: None)
    try:
        for key, description in STEPS:
            if on_step is not None:
                on_step(key, description)
            t0 = time.perf_counter()
            try:
                _STEP_FUNCS[key](opts, ctx, summary, progress)
            except DemoStepError:
                raise
            except SmartLoggerError as err:
                raise DemoStepError(key, str(err)) from err
            except Exception as err:  # a bug or an environment problem: still name the step
                raise DemoStepError(key, f"{type(err).__name__}: {err}") from err
            summary.steps[key] = round(time.perf_counter() - t0, 3)
    finally:
        _stop_site(ctx)
    (out / "summary.json").write_text(json.dumps(summary.to_json(), indent=1) + "\n")
    summary.outputs["summary"] = str(out / "summary.json")
    return summary


# --------------------------------------------------------------------------- steps


def _simulate(opts: DemoOptions, ctx: dict[str, Any], summary: DemoSummary, progress: ProgressHook) -> None:
    parse_load(opts.load)  # a bad load is the demo's input error, before anything starts
    test_id = f"DEMO-{opts.seed}"
    site_dir = opts.out / "site"
    # The site never outlives the demo: it stops on its own if this process is gone.
    start_background(site_dir, {"blocks": opts.blocks, "weak": opts.weak, "seed": opts.seed,
                                "rated_ah": opts.rated_ah, "ambient_c": opts.ambient_c},
                     owner_pid=os.getpid())
    client = SiteClient.open(site_dir)
    ctx["site"] = client
    ctx["test_id"] = test_id
    truth = client.request("truth")
    summary.facts["weak_blocks_truth"] = [b["position"] for b in truth["blocks"] if b["weak"]]
    summary.outputs["site"] = str(site_dir)


def _stop_site(ctx: dict[str, Any]) -> None:
    client = ctx.pop("site", None)
    if client is None:
        return
    with contextlib.suppress(SmartLoggerError, OSError):
        client.stop(wait_s=30.0)
    client.close()


def _nfc(opts: DemoOptions, ctx: dict[str, Any], summary: DemoSummary, progress: ProgressHook) -> None:
    site = ctx["site"]
    n = opts.blocks
    profile = load_profile("vrla-12v", rated_ah=opts.rated_ah)
    # The phone's clock during the walk is the site's virtual clock (docs/SIMULATOR.md).
    session = KitSession(profile, count=n, test_id=ctx["test_id"], clock=site.phone_clock_ms,
                         on_update=lambda s, r: progress(s.done, n))
    t0 = time.perf_counter()
    rows = session.run(site.nfc_device, timeout_s=30.0 + 5.0 * n)
    wall = time.perf_counter() - t0
    bad = [r for r in rows if r.result.outcome is not Outcome.PROGRAMMED]
    if len(rows) != n or bad:
        detail = "; ".join(f"{r.serial}: {r.result.outcome.value} {r.result.message}" for r in bad)
        raise DemoStepError("nfc", f"{len(rows) - len(bad)} of {n} loggers programmed. {detail}")
    on_block = {lg["serial"]: lg["position"] for lg in site.request("status")["loggers"]}
    for row in rows:
        # Tap order numbers the blocks: the k-th logger tapped must be the one on block k.
        if on_block.get(row.serial) != row.position:
            raise DemoStepError("nfc", f"{row.serial} on block {on_block.get(row.serial)} was "
                                       f"programmed as position {row.position}")
    summary.facts["nfc_programmed"] = n
    summary.facts["nfc_wall_s_per_tap"] = round(wall / n, 3)
    (opts.out / "nfc_session.json").write_text(json.dumps(session.to_json(), indent=1) + "\n")
    summary.outputs["nfc_session"] = str(opts.out / "nfc_session.json")


#: Virtual time on float before the load and at rest after it (as ``smartlogger sim string``).
REST_BEFORE = "5min"
REST_AFTER = "10min"


def _discharge(opts: DemoOptions, ctx: dict[str, Any], summary: DemoSummary,
               progress: ProgressHook) -> None:
    site = ctx["site"]
    site.request("advance", {"duration": REST_BEFORE})
    # The load bank switches itself off at the string's end voltage (the chemistry's default).
    site.request("load", {"load": opts.load, "cutoff": "1.75"})
    site.request("advance", {"duration": "48h", "until_load_off": True},
                 progress=lambda done, total: progress(int(done), int(total)))
    if site.request("status")["load"] is not None:
        raise DemoStepError("discharge", "the string did not reach its end voltage within 48 h")
    site.request("advance", {"duration": REST_AFTER})
    truth = site.request("truth")
    summary.facts["virtual_test_h"] = round(truth["t_s"] / 3600, 2)
    summary.facts["load_on_to_off_h_truth"] = round(truth["test"]["duration_s"] / 3600, 3)


def _ble(opts: DemoOptions, ctx: dict[str, Any], summary: DemoSummary, progress: ProgressHook) -> None:
    site = ctx["site"]
    n = opts.blocks
    logs_dir = opts.out / "logs"
    logs_dir.mkdir(parents=True, exist_ok=True)
    done = 0

    def on_done(serial: str, result: Any, error: str | None) -> None:
        nonlocal done
        done += 1
        progress(done, n)

    async def pull() -> fb.FleetOutcome:
        async with VirtualRadio(transport=site.ble_transport):
            found = await fb.scan(10.0, backend=VirtualBleakScanner, until_count=n)
            if len(found) != n:
                raise DemoStepError("ble", f"scan found {len(found)} of {n} loggers")
            options = fb.PullOptions(full=True, backend=VirtualBleakClient)
            return await fb.pull_many(found, logs_dir, options, concurrency=opts.concurrency,
                                      on_done=on_done)

    # The phone's clock at the pull is the site's virtual clock: the end of the test.
    with fb.phone_clock(site.phone_clock_ms):
        outcome = asyncio.run(pull())
    if outcome.failures:
        detail = "; ".join(f"{k}: {v}" for k, v in sorted(outcome.failures.items()))
        raise DemoStepError("ble", f"{len(outcome.failures)} of {n} pulls failed: {detail}")
    unverified = [s for s, r in outcome.results.items() if not r.verified]
    if unverified:
        raise DemoStepError("ble", f"pulled chains did not verify for {', '.join(sorted(unverified))}")
    files = sorted(logs_dir.glob("*.slog"))
    if len(files) != n:
        raise DemoStepError("ble", f"{len(files)} logfiles written for {n} loggers")
    ctx["logfiles"] = files
    summary.facts["ble_pulled"] = n
    summary.facts["ble_bytes"] = sum(f.stat().st_size for f in files)
    summary.outputs["logfiles"] = str(logs_dir)


def _verify(opts: DemoOptions, ctx: dict[str, Any], summary: DemoSummary,
            progress: ProgressHook) -> None:
    files: list[Path] = ctx["logfiles"]
    reports = {}
    for i, f in enumerate(files):
        report = verify_logfile(f)
        reports[f] = report
        # Simulated loggers: intact and certified by the TEST authority, i.e. "simulated". Anything
        # else (even "verified": a simulated logger must never pass as hardware) fails the step.
        if report.status != "simulated":
            problems = "; ".join(p.message for p in report.problems[:3]) or report.verdict
            raise DemoStepError("verify", f"{f.name}: {report.status}: {problems}")
        progress(i + 1, len(files))
    ctx["verify"] = reports
    summary.facts["verified_simulated"] = len(reports)


def demo_test_info(opts: DemoOptions, test_id: str) -> TestInfo:
    """The demo test's ``test.json``: what a technician states with ``smartlogger test new``."""
    return TestInfo(
        test_id=test_id, name=f"Capacity test {test_id}", client_key=test_id,
        site=SiteInfo("Demo data centre", address="Basement B2"), system=SystemInfo("UPS A", "UPS"),
        string=StringInfo(f"String 1 ({opts.blocks} blocks)", opts.blocks),
        technician="Demo Technician", company="smartlogger demo service",
        battery=BatteryInfo(make="simulated", model="12 V 100 Ah VRLA (CSB GP 12400 scaled)", chemistry="vrla",
                            block_voltage_v=12.0, rated_ah=opts.rated_ah),
        load=opts.load, datasheet_csv=DATASHEET.read_text(), tz="UTC",
        load_setup="load bank (simulated)", load_source="the load bank's set constant current",
        cutoff="load bank end-voltage cutoff at the string end voltage",
        metadata={"source": "smartlogger demo", "markers": "SIMULATED"},
    )


def _analyze(opts: DemoOptions, ctx: dict[str, Any], summary: DemoSummary,
             progress: ProgressHook) -> None:
    files: list[Path] = ctx["logfiles"]
    loaded = load_test_files(files)
    logs = loaded.logs
    meta = TestMetadata(load=load_from_quantity(parse_load(opts.load)), datasheet=read_datasheet_csv(DATASHEET),
                        string_blocks=opts.blocks, test_id=ctx["test_id"])
    result = analyze_test(logs, meta, excluded=loaded.excluded)
    result.report_info = demo_test_info(opts, ctx["test_id"]).report_info()
    if result.excluded or result.evidence.status != "simulated":
        raise DemoStepError("analyze", f"the simulated logs should rest on simulated evidence only: "
                                       f"{result.evidence.statement}")
    ctx["logs"] = logs
    ctx["result"] = result
    path = opts.out / "result.json"
    path.write_text(result.to_json())
    summary.outputs["result"] = str(path)
    cap = result.capacity
    summary.facts.update({
        "discharge_h": round(result.discharge.duration_s / 3600, 3),
        "end_reason": result.discharge.end_reason,
        "capacity_pct": None if cap.capacity_pct is None else round(cap.capacity_pct, 1),
        "capacity_method": cap.method,
        "capacity_lower_bound": cap.lower_bound,
        "verdict": result.verdict.outcome if result.verdict else None,
        "verdict_criterion": result.verdict.criterion if result.verdict else None,
        "verdict_sentence": result.verdict.sentence if result.verdict else None,
        "ranking_rule": result.verdict.ranking_rule if result.verdict else None,
        "weakest": [
            {"position": b.position, "serial": b.serial,
             "capacity_pct": None if b.capacity_pct is None else round(b.capacity_pct, 1),
             "lower_bound": b.lower_bound, "replace": b.replace, "disposition": b.disposition,
             "min_voltage_v": b.min_voltage_v}
            for b in sorted((b for b in result.blocks if b.rank is not None),
                            key=lambda b: b.rank or 0)[: max(3, opts.weak)]
        ],
        "replace_blocks": [b.position for b in result.blocks if b.replace],
        "yellow": sum(b.yellow for b in result.blocks),
        "red": sum(b.red for b in result.blocks),
        "alignment_uncertainty_ms": result.alignment_uncertainty_ms,
        "warnings": list(result.warnings),
        "evidence": result.evidence.status,
        "evidence_statement": result.evidence.statement,
    })


def _workbooks(opts: DemoOptions, ctx: dict[str, Any], summary: DemoSummary,
               progress: ProgressHook) -> None:
    files: list[Path] = ctx["logfiles"]
    evidence = [evidence_from_report(ctx["verify"][f], f.name) for f in files]
    outcome, series, exceedances = string_report_inputs(ctx["result"], ctx["logs"], evidence)
    if outcome.report is not None:  # a watch record beside the pulled logs: the report's annex
        watch = watch_annex_rows(opts.out / "logs", ctx["result"], outcome.report.tz)
        if watch:
            outcome = replace(outcome, report=replace(outcome.report, watch=watch))
    report = opts.out / "report.xlsx"
    write_string_report(report, outcome, series, exceedances=exceedances, evidence=evidence)
    summary.outputs["string_report"] = str(report)
    if outcome.report is not None:  # the customer report, verdict first (docs/REPORT.md)
        summary.outputs["pdf_report"] = str(write_pdf_report(opts.out / "report.pdf", outcome.report, series))
    total = len(files) + 1
    progress(1, total)
    if opts.logger_workbooks:
        wb_dir = opts.out / "workbooks"
        wb_dir.mkdir(exist_ok=True)
        for i, f in enumerate(files):
            inputs = logger_export_inputs(f)
            write_logger_workbook(wb_dir / (f.stem + ".xlsx"), inputs.series,
                                  exceedances=inputs.exceedances, evidence=inputs.evidence)
            progress(i + 2, total)
        summary.outputs["logger_workbooks"] = str(wb_dir)


def _api(opts: DemoOptions, ctx: dict[str, Any], summary: DemoSummary, progress: ProgressHook) -> None:
    """Start the API on an embedded SQLite in OUT/api, sync the logs, wait for its own results."""

    data_dir = (opts.out / "api").resolve()
    app = create_app({"DATA_DIR": str(data_dir)})
    admin = Admin(app.config["DATABASE_URL"])
    email = "technician@demo.invalid"
    try:
        try:
            org = admin.create_org(DEMO_ORG)
        except AdminError:  # a demo run into the same folder before: reuse its organisation
            org = admin.find_org(DEMO_ORG)
        with contextlib.suppress(AdminError):  # the user exists from an earlier demo run
            admin.create_user(org.name, email, "technician", name="Demo technician")
        issued = admin.issue_token(email, days=30, label="smartlogger demo")
    finally:
        admin.close()
    token_file = data_dir / "demo-token.txt"
    token_file.write_text(issued.token + "\n")
    token_file.chmod(0o600)

    # werkzeug logs every request at INFO; the demo shows its own progress instead. The API's
    # own log (e.g. a job's traceback) goes to a file next to its data, not to the terminal.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server_log = data_dir / "server.log"
    api_log = logging.getLogger("smartlogger.api")
    handler = logging.FileHandler(server_log, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    api_log.addHandler(handler)
    api_log.propagate = False
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="smartlogger-demo-api", daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    http = _Http(base, issued.token)
    try:
        # The test's metadata file names the site, system and string: the sync creates them
        # on the server (found by name on a later run), as 'smartlogger test new' + 'sync' do.
        logs_dir = opts.out / "logs"
        demo_test_info(opts, ctx["test_id"]).write(logs_dir)
        report = sync_folder(base, issued.token, logs_dir)
        if report.rejected or report.pending or report.errors:
            raise DemoStepError("api", f"sync incomplete: {report.to_dict()}")
        progress(1, 4)
        test = next((t for t in http.get("/api/tests?limit=1000") if t.get("client_key") == ctx["test_id"]),
                    None)
        if test is None:
            raise DemoStepError("api", "the synced test is not on the server")
        test = http.wait(f"/api/tests/{test['id']}", lambda t: t["status"] in ("analysed", "failed"))
        if test["status"] != "analysed":
            raise DemoStepError("api", f"the server's analysis ended {test['status']} (see {server_log})")
        progress(2, 4)
        results = http.get(f"/api/tests/{test['id']}/results")
        server_cap = results["result"]["capacity"]["capacity_pct"]
        local_cap = ctx["result"].capacity.capacity_pct
        if (server_cap is None) != (local_cap is None) or (
                server_cap is not None and abs(server_cap - local_cap) > 1e-6):
            raise DemoStepError("api", f"server capacity {server_cap} differs from the local {local_cap}")
        http.post(f"/api/tests/{test['id']}/report", {})
        rep = http.wait(f"/api/tests/{test['id']}/report", lambda r: r["status"] in ("ready", "failed"))
        if rep["status"] != "ready":
            error = (rep.get("job") or {}).get("error", "")
            raise DemoStepError("api", f"the server's report job ended {rep['status']}: {error} "
                                       f"(see {server_log})")
        progress(4, 4)
    finally:
        server.shutdown()
        thread.join(timeout=5)
        api_log.removeHandler(handler)
        api_log.propagate = True
        handler.close()
    summary.facts.update({"api_uploaded": report.uploaded, "api_duplicates": report.duplicates,
                          "api_test_id": test["id"], "api_report_bytes": rep["size"],
                          "api_app_url": f"http://127.0.0.1:8000/app/#/tests/{test['id']}"})
    summary.outputs["api_data"] = str(data_dir)
    summary.outputs["api_token"] = str(token_file)


DEMO_ORG = "smartlogger demo"


class _Http:
    """Just enough of an HTTP client for the demo's checks against its own API (stdlib only)."""

    def __init__(self, base: str, token: str) -> None:
        self.base = base
        self.token = token

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method, headers={
            "Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as rsp:
                return json.loads(rsp.read() or b"null")
        except urllib.error.HTTPError as err:
            detail = err.read().decode(errors="replace")[:300]
            raise DemoStepError("api", f"{method} {path}: HTTP {err.code} {detail}") from None

    def get(self, path: str) -> Any:
        return self._call("GET", path)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self._call("POST", path, body)

    def wait(self, path: str, done: Callable[[Any], bool], *, timeout_s: float = 600.0) -> Any:
        deadline = time.monotonic() + timeout_s
        delay = 0.05
        while True:
            value = self.get(path)
            if done(value):
                return value
            if time.monotonic() > deadline:
                raise DemoStepError("api", f"{path} not done after {timeout_s:.0f} s: {value}")
            time.sleep(delay)  # polling a background job of the server, not a test sleep
            delay = min(delay * 2, 1.0)


_STEP_FUNCS: dict[str, Callable[[DemoOptions, dict[str, Any], DemoSummary, ProgressHook], None]] = {
    "simulate": _simulate,
    "nfc": _nfc,
    "discharge": _discharge,
    "ble": _ble,
    "verify": _verify,
    "analyze": _analyze,
    "workbooks": _workbooks,
    "api": _api,
}
