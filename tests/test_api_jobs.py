"""Jobs exactly once: leases, a killed worker, a real PostgreSQL restart (issue 18).

A worker killed with SIGKILL mid-job keeps its claim until the lease expires, then its job runs
once more, and only once; a worker that starts meanwhile takes nothing another live worker
holds. A web process whose database restarts runs its queued jobs when it is back, by itself.
The restart uses a private throwaway PostgreSQL cluster (``testing.hostile.private_postgres``),
never the shared server; skipped only where PostgreSQL's server binaries are not installed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from smartlogger.api.admin import Admin
from smartlogger.api.db import database
from smartlogger.api.models import AuditEvent, Job
from smartlogger.api.worker import Claim, claim, run_job, sweep
from smartlogger.testing.api import api_env, backends, make_app, seed_tenant, simulated_logfiles
from smartlogger.testing.hostile import postgres_bin, private_postgres, sample_bomb, wait_until

SLOG = {"Content-Type": "application/vnd.smartlogger.slog"}
QUIET = {"CHECK_IDLE_SECONDS": 1e9, "CHECK_MAX_DELAY_SECONDS": 1e9, "JOB_SWEEP_SECONDS": 1e9}


def _statuses(app: object) -> dict[int, tuple[str, int]]:
    with database(app).system_session() as s:  # type: ignore[arg-type]
        return {int(i): (str(st), int(a)) for i, st, a in s.execute(select(Job.id, Job.status, Job.attempts))}


def _unreadable_audits(app: object) -> dict[int, int]:
    with database(app).system_session() as s:  # type: ignore[arg-type]
        rows = s.execute(select(AuditEvent.object_id, func.count()).where(AuditEvent.action == "logfile_unreadable")
                         .group_by(AuditEvent.object_id)).all()
    return {int(i): int(n) for i, n in rows}


@pytest.mark.parametrize("kind", backends())
def test_a_claim_is_exclusive_fenced_and_retried_only_after_its_lease(kind: str, tmp_path: Path) -> None:
    """The claim protocol itself, step by step (no timing): two claims of one job, one wins; a
    sweep leaves a live lease alone and re-queues an expired one; the old claim's finish (its
    runner was only slow) then commits nothing, the new one's commits once."""
    with api_env(kind, tmp_path, **QUIET) as env:
        data = sample_bomb(100_000, unreadable_tail=True, serial="SIM-J001")
        r = env.client.post("/api/logfiles", data=data, headers={**env.a.headers("technician"), **SLOG})
        assert r.status_code == 201
        (job_id,) = _statuses(env.app)
        first = claim(env.app, [job_id])
        assert first == [Claim(job_id, 1)] and claim(env.app, [job_id]) == []  # exclusive
        assert sweep(env.app) == [] and sweep(env.app, startup=True) == []  # a live lease is left alone
        assert _statuses(env.app)[job_id] == ("running", 1)
        with database(env.app).system_session() as s:  # time passes: the lease expires
            s.execute(update(Job).values(lease_until=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)))
        assert sweep(env.app) == [(job_id, True)] and _statuses(env.app)[job_id] == ("queued", 1)
        env.app.extensions["smartlogger_jobs"].close()  # run the retry here, not in the runner
        second = claim(env.app, [job_id])
        assert second == [Claim(job_id, 2)]
        from smartlogger.api.worker import _fence  # the finish of the first, slow runner

        with database(env.app).system_session() as s:
            assert not _fence(s, first[0], "finished", "")
        with database(env.app).system_session() as s:  # its claim is gone: give it back to run_job
            s.execute(update(Job).values(status="queued"))
        run_job(env.app, job_id)
        assert _statuses(env.app)[job_id] == ("finished", 3)
        run_job(env.app, job_id)  # finished: nothing runs again
        assert _unreadable_audits(env.app) == {r.get_json()["id"]: 1}
        with database(env.app).system_session() as s:
            job = s.get(Job, job_id)
            assert job is not None and job.finished_at is not None and job.started_at is not None
            assert job.finished_at >= job.started_at and job.lease_until is None


WORKER = """
import sys, time
from pathlib import Path
from smartlogger.testing.api import make_app
app = make_app(Path(sys.argv[1]), sys.argv[2], sys.argv[3] or None, CHECK_IDLE_SECONDS=0,
               JOB_LEASE_SECONDS=float(sys.argv[4]), JOB_SWEEP_SECONDS=0.5)
print("ready", flush=True)
time.sleep(600)
"""


@pytest.mark.parametrize("kind", backends())
def test_a_killed_worker_s_job_runs_once_more_after_its_lease_and_nothing_runs_twice(
        kind: str, tmp_path: Path) -> None:
    """Two worker processes run check jobs of files that decode to "unreadable" (each run that
    commits audits it). One is killed with SIGKILL while it holds a job; a replacement starts
    (its start sweeps) while the other is still working. Every logfile is audited exactly once,
    and the killed job was taken again only once its lease had expired."""
    lease = 3.0
    with api_env(kind, tmp_path, **QUIET) as env:
        h = {**env.a.headers("technician"), **SLOG}
        for i in range(4):
            data = sample_bomb(1 << 21, unreadable_tail=True, serial=f"SIM-K{i:03d}")
            assert env.client.post("/api/logfiles", data=data, headers=h).status_code == 201
        env.app.extensions["smartlogger_jobs"].close()
        procs: list[subprocess.Popen[str]] = []

        def worker() -> subprocess.Popen[str]:
            p = subprocess.Popen([sys.executable, "-c", WORKER, str(tmp_path), env.url, env.schema or "", str(lease)],
                                 stdout=subprocess.PIPE, text=True)
            procs.append(p)
            return p

        try:
            victim = worker()
            wait_until(lambda: any(st == "running" for st, _ in _statuses(env.app).values()), 120, "a job claimed")
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            with database(env.app).system_session() as s:
                held = {int(i): lease_end for i, lease_end in s.execute(
                    select(Job.id, Job.lease_until).where(Job.status == "running"))}
            assert held
            worker()  # a live worker takes the killed one's jobs once their lease has expired
            wait_until(lambda: any(a == 2 and st == "running" for st, a in _statuses(env.app).values()), 120,
                       "a killed job taken again")
            worker()  # and a replacement starts (its start sweeps) while that worker is running them
            wait_until(lambda: all(st in ("finished", "failed") for st, _ in _statuses(env.app).values()), 240,
                       "every job done", poll=0.1)
            got = _statuses(env.app)
            assert all(st == "finished" for st, _ in got.values()), got
            assert all(got[i][1] == 2 for i in held), got  # taken once more, once
            with database(env.app).system_session() as s:
                for job_id, lease_end in held.items():
                    job = s.get(Job, job_id)
                    assert job is not None and job.started_at is not None and job.started_at >= lease_end
            audits = _unreadable_audits(env.app)
            assert len(audits) == 4 and set(audits.values()) == {1}, audits  # nothing ran twice
        finally:
            for p in procs:
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
                p.wait()


@pytest.mark.skipif(postgres_bin() is None or not (postgres_bin() / "initdb").exists(),  # type: ignore[operator]
                    reason="PostgreSQL server binaries (initdb, pg_ctl) are not installed")
def test_jobs_resume_by_themselves_after_a_real_database_restart(tmp_path: Path) -> None:
    """A private PostgreSQL is stopped while check jobs wait in a web process's runner (they fail
    to claim), then started again: every job finishes, the app untouched. Before, the runner
    loop lost them ("crashed the runner loop") and they stayed queued until a restart."""
    with private_postgres() as pg:
        app = make_app(tmp_path / "app", pg.url, None, CHECK_IDLE_SECONDS=1.0, JOB_SWEEP_SECONDS=2)
        admin = Admin(pg.url, migrate=False)
        try:
            tenant = seed_tenant(admin, "Restart Co")
            c = app.test_client()
            h = {**tenant.headers("technician"), **SLOG}
            for data in simulated_logfiles(3, seed=5):
                assert c.post("/api/logfiles", data=data, headers=h).status_code == 201
            pg.stop("fast")
            time.sleep(2.5)  # the runner tries them now: no database
            pg.start()
            wait_until(lambda: {st for st, _ in _statuses(app).values()} == {"finished"}, 90,
                       "jobs finished after the restart", poll=0.25)
            r = c.post("/api/logfiles", data=simulated_logfiles(1, seed=6)[0], headers=h)
            assert r.status_code == 201  # and the API itself is back
        finally:
            app.extensions["smartlogger_jobs"].close()
            admin.close()
            database(app).dispose()


def test_on_rq_a_killed_worker_s_job_is_queued_again_after_its_lease_and_runs_once(tmp_path: Path) -> None:
    """With Redis: an RQ worker (``smartlogger worker``) killed with SIGKILL mid-job loses the job's
    RQ message; the web process's sweeper re-queues the job once its lease has expired and
    another worker runs it, once."""
    redis = pytest.importorskip("redis")
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/13")
    try:
        redis.Redis.from_url(url).ping()
    except Exception:
        pytest.skip("no Redis server")
    from rq import Queue

    queue_name = f"smartlogger-kill-{os.getpid()}"
    lease = 3.0
    with api_env("sqlite", tmp_path, REDIS_URL=url, RQ_QUEUE=queue_name, JOB_LEASE_SECONDS=lease,
                 JOB_SWEEP_SECONDS=0.5) as env:
        h = {**env.a.headers("technician"), **SLOG}
        for i in range(3):
            data = sample_bomb(1 << 21, unreadable_tail=True, serial=f"SIM-R{i:03d}")
            assert env.client.post("/api/logfiles", data=data, headers=h).status_code == 201
        worker_env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTLOGGER_") and k != "REDIS_URL"}
        worker_env.update({"SMARTLOGGER_DATABASE_URL": env.url, "SMARTLOGGER_DATA_DIR": str(tmp_path),
                           "SMARTLOGGER_RQ_QUEUE": queue_name, "REDIS_URL": url,
                           "SMARTLOGGER_JOB_LEASE_SECONDS": str(lease)})
        cmd = [sys.executable, "-c", "from smartlogger.cli import main; main()", "worker"]
        procs: list[subprocess.Popen[bytes]] = []
        try:
            victim = subprocess.Popen(cmd, env=worker_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(victim)
            wait_until(lambda: any(st == "running" for st, _ in _statuses(env.app).values()), 120, "a job claimed")
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            with database(env.app).system_session() as s:
                held = {int(i): lease_end for i, lease_end in s.execute(
                    select(Job.id, Job.lease_until).where(Job.status == "running"))}
            assert held
            procs.append(subprocess.Popen(cmd, env=worker_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            wait_until(lambda: all(st in ("finished", "failed") for st, _ in _statuses(env.app).values()), 240,
                       "every job done", poll=0.1)
            got = _statuses(env.app)
            assert all(st == "finished" for st, _ in got.values()), got
            assert all(got[i][1] == 2 for i in held), got
            with database(env.app).system_session() as s:
                for job_id, lease_end in held.items():
                    job = s.get(Job, job_id)
                    assert job is not None and job.started_at is not None and job.started_at >= lease_end
            audits = _unreadable_audits(env.app)
            assert len(audits) == 3 and set(audits.values()) == {1}, audits
        finally:
            for p in procs:
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
                p.wait()
            env.app.extensions["smartlogger_sweeper"].close()
            Queue(queue_name, connection=redis.Redis.from_url(url)).delete(delete_jobs=True)
