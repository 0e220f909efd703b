"""The API under hostile input and faults (issue 18): what one accepted file, a killed worker,
a database restart, a full disk and a stream of invalid tokens cost. Prints ONE JSON object:

- ``bomb_series_peak_mb``, ``bomb_series_s``: ``GET /api/logfiles/{id}/series`` (whole log,
  default ``max_points``) of a sample bomb: a small signed logfile of constant samples whose
  blocks declare the most samples the server accepts (``bomb_samples``; 2 MB of file for 2**26
  samples before the per-upload limit). Peak is the request's growth of the process's resident
  memory (its high-water mark ``VmHWM``, reset just before the request, minus the resident size
  then, in a fresh process per measurement; ``ru_maxrss`` would include the parent's size).
- ``bomb_check_peak_mb``, ``bomb_check_s``: the same for the bomb's check job (decodes every sample).
- ``bomb_analysis_peak_mb``, ``bomb_analysis_s``: the analysis job of a one-block test of the bomb
  (attach, analyse: it fails, no discharge). ``bomb_low_analysis_peak_mb``, ``bomb_low_analysis_s``:
  the same for a bomb whose every sample is below the start level (11.5 V on a 12 V block), one
  discharge as long as the file: the most an analysis can be made to look at (refused after the
  alignment: more samples in the test window than ``analysis.analyze.MAX_WINDOW_SAMPLES``).
- ``bomb_dis_jobs_peak_mb``, ``bomb_dis_jobs_s``: a bomb at the limit with a real discharge (3 h down
  to 10.4 V, ending an hour before its last sample): its test's analysis job and the report job
  (workbook) it queues, run one after the other in one process (``bomb_dis_result`` the capacity
  found). ``bomb_dis_pdf_peak_mb``, ``bomb_dis_pdf_s``: then ``GET /api/tests/{id}/report.pdf`` (built
  on request from the stored result and the logfile).
- ``bomb_over_limit_status``: the upload answer for a bomb of 2**26 samples (the decoder's own limit).
- ``nul_5xx``: 5xx answers among NUL / unpaired-surrogate inputs (JSON fields, query parameters,
  logfile header strings) on SQLite and, with ``SMARTLOGGER_TEST_DATABASE_URL``, PostgreSQL.
- ``job_double_runs_after_kill``: a worker process runs check jobs of files that decode to
  "unreadable" (each run that commits audits that) and is killed with SIGKILL mid-job; a second
  worker takes its jobs, and a replacement starts while it runs them (as gunicorn replaces a
  killed worker): the logfiles audited more than once (a job whose effects happened twice).
  ``killed_job_retried_after_s``: from the kill until a killed job was claimed again
  (``job_lease_s`` is the lease the workers run with).
- ``jobs_stuck_after_db_restart``: check jobs queued in a web process whose (private, throwaway)
  PostgreSQL is restarted before they run; those not finished ``--restart-wait`` s later, the web
  process untouched. ``null`` without PostgreSQL's server binaries.
- ``disk_full_status``: the answer to an upload when the file store's disk (a 2 MB tmpfs) is full.
  ``null`` where a tmpfs cannot be mounted (not root).
- ``invalid_token_per_s_before_throttle`` (and ``invalid_token_401_before_429``): invalid bearer
  tokens answered 401 per second from one address before the first 429 (default limits).

Usage: ``python benchmarks/api_hostile.py [--quick]``; ``--quick`` uses 2**22-sample bombs and
smaller jobs (a check that the script works, not the measurement).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from smartlogger.api.admin import Admin
from smartlogger.api.db import database
from smartlogger.api.models import AuditEvent, Job
from smartlogger.testing.api import PG_ENV, api_env, backends, make_app, seed_tenant
from smartlogger.testing.hostile import private_postgres, sample_bomb, wait_until

SLOG = {"Content-Type": "application/vnd.smartlogger.slog"}
MB = 1024 * 1024
#: Jobs wait (no runner picks them up) in the processes that only set up or measure. (The idle
#: time counts from the last request, or from the clock's start in a process that served none.)
QUIET = {"CHECK_IDLE_SECONDS": 1e9, "CHECK_MAX_DELAY_SECONDS": 1e9, "JOB_SWEEP_SECONDS": 1e9}
# (The analysis phase lets its runner run the analysis: an analysis is not deferred like a check.)


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _reset_peak() -> None:
    """Start the peak over from the resident size now (``VmHWM``; Linux 4.0+). A child's
    ``ru_maxrss`` starts at its parent's resident size when it was spawned (kept across exec), so
    it cannot measure a phase whose parent held more than it will."""
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _peak() -> int:
    """The resident size's high-water mark since ``_reset_peak`` (``VmHWM``), else ``ru_maxrss``."""
    with contextlib.suppress(OSError), open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def accepted_samples() -> int:
    """The most samples the server accepts in one uploaded logfile."""
    from smartlogger.api import services  # lazy: only the bomb needs it

    limit = getattr(services, "MAX_UPLOAD_SAMPLES", None)  # absent before the per-upload limit
    if limit is None:
        from smartlogger.logfile.format import MAX_FILE_SAMPLES  # lazy, as above
        return int(MAX_FILE_SAMPLES)
    return int(limit)


# ----------------------------------------------------------------------------- sample bomb


def _phase(args: list[str]) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, "--phase", *args], capture_output=True, text=True,
                         timeout=900)
    if out.returncode != 0:
        raise RuntimeError(f"phase {args[0]} failed: {out.stderr[-2000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def phase_main(argv: list[str]) -> None:
    what, data_dir = argv[0], Path(argv[1])
    url = f"sqlite:///{data_dir / 'api.db'}"
    info = json.loads((data_dir / "info.json").read_text())
    app = make_app(data_dir, url, None, **QUIET)
    gc.collect()
    base = _rss()
    _reset_peak()
    t = time.perf_counter()
    if what == "check":
        from smartlogger.api.worker import run_job  # lazy: only this phase runs a job
        run_job(app, info["job_id"])
        with database(app).system_session() as s:
            job = s.get(Job, info["job_id"])
            assert job is not None
            result: dict[str, Any] = {"status": job.status, "error": job.error[:200]}
    elif what == "report_pdf":
        r = app.test_client().get(f"/api/tests/{info['test_id_dis']}/report.pdf",
                                  headers={"Authorization": f"Bearer {info['token']}"})
        result = {"status": r.status_code, "bytes": len(r.data)}
    elif what in ("analyse", "analyse_low", "analyse_dis"):
        c = app.test_client()
        h = {"Authorization": f"Bearer {info['tech_token']}"}
        low = what[len("analyse"):]
        test_id = info[f"test_id{low}"]
        r = c.put(f"/api/logfiles/{info[f'logfile_id{low}']}/test", json={"test_id": test_id}, headers=h)
        assert r.status_code == 200, r.get_json()

        def analysed() -> bool:
            with database(app).system_session() as s:
                st = s.scalars(select(Job.status).where(Job.kind == "analyse", Job.test_id == test_id)).all()
            return bool(st) and all(x in ("finished", "failed") for x in st)

        wait_until(analysed, 600, "the analysis", poll=0.1)
        with database(app).system_session() as s:
            job = s.scalars(select(Job).where(Job.kind == "analyse", Job.test_id == test_id)).one()
            result = {"status": job.status, "error": job.error[:200]}
        if what == "analyse_dis":  # and the report job it queued
            def reported() -> bool:
                with database(app).system_session() as s:
                    st = s.scalars(select(Job.status).where(Job.kind == "report", Job.test_id == test_id)).all()
                return bool(st) and all(x in ("finished", "failed") for x in st)

            wait_until(reported, 600, "the report", poll=0.1)
            got = c.get(f"/api/tests/{test_id}/results", headers=h).get_json()
            result["report"] = c.get(f"/api/tests/{test_id}/report", headers=h).get_json().get("status")
            result["capacity"] = (got.get("result", got).get("capacity") or {}).get("capacity_pct")
    else:
        r = app.test_client().get(f"/api/logfiles/{info['logfile_id']}/series",
                                  headers={"Authorization": f"Bearer {info['token']}"})
        body = r.get_json()
        result = {"status": r.status_code, "samples": body.get("samples"), "points": len(body.get("t_ms", []))}
    seconds = time.perf_counter() - t
    print(json.dumps({"peak_mb": round(max(0, _peak() - base) / MB, 1), "s": round(seconds, 3), **result}))


def bomb(tmp: Path, samples: int) -> dict[str, Any]:
    data_dir = tmp / "bomb"
    data_dir.mkdir()
    url = f"sqlite:///{data_dir / 'api.db'}"
    app = make_app(data_dir, url, None, **QUIET)
    admin = Admin(url, migrate=False)
    tenant = seed_tenant(admin, "Bomb Co")
    c = app.test_client()
    h = {**tenant.headers("technician"), **SLOG}
    over = c.post("/api/logfiles", data=sample_bomb(1 << 26, serial="SIM-OVER"), headers=h)
    data = sample_bomb(samples)
    t = time.perf_counter()
    r = c.post("/api/logfiles", data=data, headers=h)
    upload_s = time.perf_counter() - t
    assert r.status_code == 201, r.get_json()
    logfile_id = r.get_json()["id"]
    with database(app).system_session() as s:
        job_id = s.scalar(select(Job.id).where(Job.logfile_id == logfile_id))
    test_id = c.post("/api/tests", json={"blocks": 1, "load": "50A", "rated_time": "3h"},
                     headers=tenant.headers("technician")).get_json()["id"]
    low = c.post("/api/logfiles", data=sample_bomb(samples, serial="SIM-LOW", mv=11_500), headers=h)
    assert low.status_code == 201, low.get_json()
    test_id_low = c.post("/api/tests", json={"blocks": 1, "load": "50A", "rated_time": "3h"},
                         headers=tenant.headers("technician")).get_json()["id"]
    dis = c.post("/api/logfiles", data=sample_bomb(samples, serial="SIM-DIS", discharge=3 * 3600), headers=h)
    assert dis.status_code == 201, dis.get_json()
    test_id_dis = c.post("/api/tests", json={"blocks": 1, "load": "50A", "rated_time": "3h"},
                         headers=tenant.headers("technician")).get_json()["id"]
    (data_dir / "info.json").write_text(json.dumps({"logfile_id": logfile_id, "job_id": job_id, "test_id": test_id,
                                                    "logfile_id_dis": dis.get_json()["id"], "test_id_dis": test_id_dis,
                                                    "logfile_id_low": low.get_json()["id"], "test_id_low": test_id_low,
                                                    "token": tenant.tokens["viewer"],
                                                    "tech_token": tenant.tokens["technician"]}))
    app.extensions["smartlogger_jobs"].close()
    admin.close()
    database(app).dispose()
    check = _phase(["check", str(data_dir)])
    series = _phase(["series", str(data_dir)])
    analysis = _phase(["analyse", str(data_dir)])
    analysis_low = _phase(["analyse_low", str(data_dir)])
    dis_jobs = _phase(["analyse_dis", str(data_dir)])
    dis_pdf = _phase(["report_pdf", str(data_dir)])
    return {"bomb_samples": samples, "bomb_bytes": len(data), "bomb_upload_s": round(upload_s, 3),
            "bomb_over_limit_status": over.status_code,
            "bomb_check_peak_mb": check["peak_mb"], "bomb_check_s": check["s"], "bomb_check_job": check["status"],
            "bomb_series_peak_mb": series["peak_mb"], "bomb_series_s": series["s"],
            "bomb_series_status": series["status"], "bomb_analysis_peak_mb": analysis["peak_mb"],
            "bomb_analysis_s": analysis["s"], "bomb_analysis_job": f"{analysis['status']}: {analysis['error']}",
            "bomb_low_analysis_peak_mb": analysis_low["peak_mb"], "bomb_low_analysis_s": analysis_low["s"],
            "bomb_low_analysis_job": f"{analysis_low['status']}: {analysis_low['error']}",
            "bomb_dis_jobs_peak_mb": dis_jobs["peak_mb"], "bomb_dis_jobs_s": dis_jobs["s"],
            "bomb_dis_jobs": f"{dis_jobs['status']}: {dis_jobs['error']} (report {dis_jobs.get('report')})",
            "bomb_dis_result": dis_jobs.get("capacity"),
            "bomb_dis_pdf_peak_mb": dis_pdf["peak_mb"], "bomb_dis_pdf_s": dis_pdf["s"],
            "bomb_dis_pdf_status": dis_pdf["status"]}


# ----------------------------------------------------------------------------- NUL and surrogates


def _nul_logfile() -> bytes:
    from smartlogger.logfile import LogfileMetadata, simulated_credentials
    from smartlogger.model import Generation, LoggerIdentity
    from smartlogger.testing.logfile_examples import EPOCH_2026_MS, example_log

    ident = LoggerIdentity("SIM-0100", Generation.GEN2, "2.1.0\x00", simulated=True)
    cred = simulated_credentials(ident)
    log = example_log("SIM-0100")
    att = log.sign(cred, bytes(16), EPOCH_2026_MS + 10**7, None)
    return log.logfile(ident, cred, [att], LogfileMetadata("B\x007", 7, {"site": "a\x00"}))


def nul(tmp: Path) -> dict[str, Any]:
    fivexx, total = 0, 0
    for kind in backends():
        with api_env(kind, tmp / f"nul-{kind}") as env:
            c, h = env.client, env.a.headers("admin")
            bodies = [("/api/sites", {"name": "Plant\x00North"}), ("/api/sites", {"name": "ok", "customer": "B\ud800"}),
                      ("/api/tests", {"blocks": 2, "load": "50A", "rated_time": "3h", "client_key": "k\x00"}),
                      ("/api/tests", {"blocks": 2, "load": "50A", "rated_time": "3h", "metadata": {"s\x00": "a"}}),
                      ("/api/users", {"email": "x@y.example", "role": "viewer", "name": "\x00"})]
            codes = [c.post(path, json=body, headers=h).status_code for path, body in bodies]
            codes += [c.get(q, headers=h).status_code for q in (
                "/api/logfiles?serial=SIM%00", "/api/logfiles?sha256=ab%00cd", "/api/audit?action=upload%00",
                "/api/tests?client_key=%00")]
            codes.append(c.post("/api/logfiles", data=_nul_logfile(), headers={**h, **SLOG}).status_code)
            fivexx += sum(1 for code in codes if code >= 500)
            total += len(codes)
    return {"nul_5xx": fivexx, "nul_requests": total, "nul_backends": backends()}


# ----------------------------------------------------------------------------- a killed worker


WORKER = """
import sys, time
from smartlogger.testing.api import make_app
app = make_app(__import__('pathlib').Path(sys.argv[1]), sys.argv[2], None, CHECK_IDLE_SECONDS=0,
               JOB_LEASE_SECONDS=float(sys.argv[3]), JOB_SWEEP_SECONDS=float(sys.argv[3]) / 2)
print("ready", flush=True)
time.sleep(3600)
"""


def _audits(app: Any) -> dict[int, int]:
    with database(app).system_session() as s:
        rows = s.execute(select(AuditEvent.object_id, func.count()).where(AuditEvent.action == "logfile_unreadable")
                         .group_by(AuditEvent.object_id)).all()
    return {int(i): int(n) for i, n in rows}


def _jobs(app: Any) -> dict[str, int]:
    with database(app).system_session() as s:
        rows = s.execute(select(Job.status, func.count()).group_by(Job.status)).all()
    return {str(k): int(n) for k, n in rows}


def _max_attempts(app: Any) -> int:
    with database(app).system_session() as s:
        return int(s.scalar(select(func.max(Job.attempts))) or 0)


def killed_worker(tmp: Path, n_files: int, samples: int, url: str | None) -> dict[str, Any]:
    data_dir = tmp / "kill"
    data_dir.mkdir()
    url = url or f"sqlite:///{data_dir / 'api.db'}"
    app = make_app(data_dir, url, None, **QUIET)
    admin = Admin(url, migrate=False)
    tenant = seed_tenant(admin, "Kill Co")
    c = app.test_client()
    h = {**tenant.headers("technician"), **SLOG}
    for i in range(n_files):
        r = c.post("/api/logfiles", data=sample_bomb(samples, serial=f"SIM-K{i:03d}", unreadable_tail=True),
                   headers=h)
        assert r.status_code == 201, r.get_json()
    lease = 4.0
    procs: list[subprocess.Popen[str]] = []

    def worker() -> subprocess.Popen[str]:
        p = subprocess.Popen([sys.executable, "-c", WORKER, str(data_dir), url, str(lease)],
                             stdout=subprocess.PIPE, text=True)
        procs.append(p)
        return p

    try:
        victim = worker()
        wait_until(lambda: _jobs(app).get("running", 0) >= 1, 120, "a job claimed")
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        killed = time.monotonic()
        worker()  # a live worker: takes the killed one's jobs (once their lease has expired)
        wait_until(lambda: _max_attempts(app) >= 2, 120, "a killed job taken again", poll=0.1)
        retried_after_s = time.monotonic() - killed
        worker()  # a replacement starts (its start sweeps) while that worker runs them
        wait_until(lambda: set(_jobs(app)) <= {"finished", "failed"}, 300, "every job done", poll=0.2)
        audits = _audits(app)
        with database(app).system_session() as s:
            attempts = sorted(int(a) for a in s.scalars(select(Job.attempts)))
    finally:
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                p.kill()
            p.wait()
        app.extensions["smartlogger_jobs"].close()
        admin.close()
        database(app).dispose()
    return {"job_double_runs_after_kill": sum(1 for n in audits.values() if n > 1),
            "job_lease_s": lease, "killed_job_retried_after_s": round(retried_after_s, 1),
            "jobs_without_effect_after_kill": n_files - len(audits), "job_attempts_after_kill": attempts}


# ----------------------------------------------------------------------------- a database restart


def db_restart(tmp: Path, n_files: int, wait_s: float) -> dict[str, Any]:
    from smartlogger.testing.api import simulated_logfiles

    try:
        cm = private_postgres()
        pg = cm.__enter__()
    except FileNotFoundError:
        return {"jobs_stuck_after_db_restart": None}
    try:
        data_dir = tmp / "restart"
        data_dir.mkdir()
        # Checks run after 1 s without requests: the database is gone by then.
        app = make_app(data_dir, pg.url, None, CHECK_IDLE_SECONDS=1.0)
        admin = Admin(pg.url, migrate=False)
        tenant = seed_tenant(admin, "Restart Co")
        c = app.test_client()
        h = {**tenant.headers("technician"), **SLOG}
        for data in simulated_logfiles(n_files, seed=7):
            assert c.post("/api/logfiles", data=data, headers=h).status_code == 201
        pg.stop("fast")
        time.sleep(3)  # the runner tries them now, with no database
        pg.start()
        t = time.monotonic()
        with contextlib.suppress(TimeoutError):
            wait_until(lambda: set(_jobs(app)) <= {"finished"}, wait_s, "jobs finished", poll=0.5)
        jobs = _jobs(app)
        stuck = sum(n for k, n in jobs.items() if k != "finished")
        resumed_s = round(time.monotonic() - t, 1) if not stuck else None
        app.extensions["smartlogger_jobs"].close()
        admin.close()
        database(app).dispose()
    finally:
        cm.__exit__(None, None, None)
    return {"jobs_stuck_after_db_restart": stuck, "jobs_resumed_after_db_restart_s": resumed_s}


# ----------------------------------------------------------------------------- full disk, tokens


def disk_full(tmp: Path) -> dict[str, Any]:
    from smartlogger.testing.api import simulated_logfiles

    mnt = tmp / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
                      capture_output=True).returncode != 0:
        return {"disk_full_status": None}
    try:
        files = simulated_logfiles(2, seed=11)
        with api_env("sqlite", tmp / "disk", STORE=f"file://{mnt / 'files'}") as env:
            h = {**env.a.headers("technician"), **SLOG}
            assert env.client.post("/api/logfiles", data=files[0], headers=h).status_code == 201
            with open(mnt / "filler", "wb", buffering=0) as f, contextlib.suppress(OSError):
                while True:
                    f.write(b"\0" * 4096)
            r = env.client.post("/api/logfiles", data=files[1], headers=h)
            health = env.client.get("/api/health")
            (mnt / "filler").unlink()
            return {"disk_full_status": r.status_code, "disk_full_health_status": health.status_code}
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def invalid_tokens(tmp: Path, n: int) -> dict[str, Any]:
    with api_env("sqlite", tmp / "tokens", AUTH_FAILURES_PER_MINUTE=30) as env:
        c = env.client
        bad = {"Authorization": "Bearer slt_" + "x" * 43}
        t = time.perf_counter()
        first_429, n401 = None, 0
        for _ in range(n):
            code = c.get("/api/me", headers=bad).status_code
            if code == 401:
                n401 += 1
            elif code == 429 and first_429 is None:
                first_429 = time.perf_counter() - t
        elapsed = first_429 if first_429 is not None else time.perf_counter() - t
    return {"invalid_token_per_s_before_throttle": round(n401 / elapsed, 1), "invalid_token_401_before_429": n401,
            "invalid_token_requests": n}


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--phase":
        phase_main(sys.argv[2:])
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes: the script works, not the measurement")
    ap.add_argument("--only-bomb", action="store_true", help="measure the sample bomb only")
    ap.add_argument("--restart-wait", type=float, default=120.0, help="seconds to wait for jobs after a restart")
    args = ap.parse_args()
    out: dict[str, Any] = {"quick": args.quick, "postgresql": bool(os.environ.get(PG_ENV))}
    with tempfile.TemporaryDirectory(prefix="sl-hostile-") as d:
        tmp = Path(d)
        out.update(bomb(tmp, 1 << 22 if args.quick else accepted_samples()))
        if args.only_bomb:
            print(json.dumps(out))
            return
        out.update(nul(tmp))
        out.update(killed_worker(tmp, 3 if args.quick else 6, 1 << 21 if args.quick else 1 << 22,
                                 None))
        out.update(db_restart(tmp, 3 if args.quick else 8, args.restart_wait))
        out.update(disk_full(tmp))
        out.update(invalid_tokens(tmp, 200 if args.quick else 1000))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
