"""Background jobs, the worker side: what a job does, and the in-process runner.

Owns ``run_job`` (claim a queued job atomically, run it, record finished or failed
in its row), ``run_checks`` (a batch of logfile check jobs in one transaction), the
in-process back end ``ThreadRunner`` (default; zero setup), ``make_runner`` (the
back end the configuration asks for: ``ThreadRunner``, or ``queue.RQRunner`` when
``REDIS_URL`` is set) and ``recover`` (resubmit what an in-process runner lost in
a restart). The queueing side (``enqueue``, job keys) is ``api.queue``.

An analysis that finishes enqueues the report, so "results and report ready"
follows the last upload by itself. A "check" job (one per uploaded logfile,
committed with the logfile's row, see ``services.ingest_logfile``) decodes every
sample payload of that logfile off the request path and marks the logfile
``unreadable`` if they do not decode.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

from flask import Flask
from sqlalchemy import select, update

from smartlogger.api import services
from smartlogger.api.db import database
from smartlogger.api.filestore import PatientStore
from smartlogger.api.models import CapacityTest, Job, Logfile, utcnow
from smartlogger.api.queue import JobRunner, RQRunner, enqueue
from smartlogger.errors import SmartLoggerError

log = logging.getLogger("smartlogger.api.jobs")
#: Check jobs the in-process runner runs in one transaction (amortises claim and commit).
CHECK_BATCH = 32


class ThreadRunner:
    """One daemon thread executing jobs (the CPU has 2 cores: one is plenty).

    Analyses and reports (``submit``) run in submission order, ahead of background work.
    Background jobs (``submit_background``: logfile checks) run when this process has
    served no request for ``idle_s`` seconds, or at the latest ``max_delay_s`` after
    submission: the GIL is shared with the request threads, so a check that runs during
    an upload burst takes its CPU from the uploads; under sustained load the checks
    still run (``max_delay_s``), they never wait forever.
    """

    def __init__(self, app: Flask, *, idle_s: float = 0.5, max_delay_s: float = 60.0) -> None:
        self.app = app
        self.idle_s = idle_s
        self.max_delay_s = max_delay_s
        self._urgent: deque[int] = deque()
        self._background: deque[tuple[float, int]] = deque()  # (monotonic submit time, job id)
        self._cond = threading.Condition()
        self._pending = 0
        self._closed = False
        self._last_request = 0.0  # time.monotonic() of the last request start
        self._thread = threading.Thread(target=self._loop, name="smartlogger-jobs", daemon=True)
        self._thread.start()

    def submit(self, job_id: int) -> None:
        with self._cond:
            self._pending += 1
            self._urgent.append(job_id)
            self._cond.notify_all()

    def submit_background(self, job_id: int) -> None:
        with self._cond:
            self._pending += 1
            wake = not self._background
            self._background.append((time.monotonic(), job_id))
            # Only the first waiting job changes when the runner must wake (later ones are due later,
            # and requests only push "quiet" further out): no GIL hand-off to it on every upload.
            if wake:
                self._cond.notify_all()

    def request_started(self) -> None:
        """Note request activity (a ``before_request`` hook; one float store, no lock needed)."""
        self._last_request = time.monotonic()

    def _next(self) -> tuple[bool, list[int]] | None:
        """(background?, job ids) to run next; None once closed. Background jobs come in
        batches of up to ``CHECK_BATCH`` (one database transaction for the batch)."""
        with self._cond:
            while True:
                if self._closed:
                    return None
                if self._urgent:
                    return False, [self._urgent.popleft()]
                if not self._background:
                    self._cond.wait()
                    continue
                now = time.monotonic()
                quiet_in = self._last_request + self.idle_s - now
                due_in = self._background[0][0] + self.max_delay_s - now
                if quiet_in <= 0 or due_in <= 0:
                    batch: list[int] = []
                    while self._background and len(batch) < CHECK_BATCH and (
                            quiet_in <= 0 or self._background[0][0] + self.max_delay_s <= now):
                        batch.append(self._background.popleft()[1])
                    return True, batch
                self._cond.wait(min(quiet_in, due_in))

    def _loop(self) -> None:
        while True:
            nxt = self._next()
            if nxt is None:
                return
            background, ids = nxt
            try:
                if background:
                    run_checks(self.app, ids)
                else:
                    run_job(self.app, ids[0])
            except Exception:  # run_job/run_checks record failures; this is a bug guard only
                log.exception("jobs %s crashed the runner loop", ids)
            finally:
                with self._cond:
                    self._pending -= len(ids)
                    self._cond.notify_all()

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Block until every submitted job (and the jobs they enqueued) ran; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._pending == 0, timeout)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


def job_store(app: Flask) -> PatientStore:
    """The file store as jobs use it: waiting out a short outage (``JOB_STORE_PATIENCE_SECONDS``,
    default 60) where a request would answer 503 at once: a job has no client that retries it."""
    return PatientStore(app.extensions["smartlogger_files"],
                        float(app.config.get("JOB_STORE_PATIENCE_SECONDS") or 60))


def make_runner(app: Flask) -> JobRunner:
    url = app.config.get("REDIS_URL")
    if url:
        return RQRunner(url, app.config.get("RQ_QUEUE", "smartlogger"))
    runner = ThreadRunner(app, idle_s=float(app.config.get("CHECK_IDLE_SECONDS", 0.5)),
                          max_delay_s=float(app.config.get("CHECK_MAX_DELAY_SECONDS", 60)))
    return runner


def recover(app: Flask) -> int:
    """Resubmit jobs an in-process runner lost in a restart (queued, or running when it died).

    Only for the thread runner (one process owns its jobs); RQ keeps its queue in Redis.
    Returns how many jobs were resubmitted.
    """
    with database(app).system_session() as s:
        lost = list(s.scalars(select(Job).where(Job.status.in_(("queued", "running"))).order_by(Job.id)))
        for job in lost:
            job.status = "queued"
        ids = [(job.id, job.kind == "check") for job in lost]
    runner = app.extensions["smartlogger_jobs"]
    for job_id, background in ids:
        (runner.submit_background if background else runner.submit)(job_id)
    return len(ids)


def run_checks(app: Flask, job_ids: list[int]) -> None:
    """Run several check jobs in one transaction (the in-process runner's batches).

    Same effect as ``run_job`` on each: claimed atomically (a job another runner holds is
    skipped), each job finished with its verdict on its logfile, or failed with the reason.
    """
    db = database(app)
    store = job_store(app)
    with db.system_session() as s:
        claimed = set(s.scalars(
            update(Job).where(Job.id.in_(job_ids), Job.status == "queued", Job.kind == "check")
            .values(status="running", started_at=utcnow(), attempts=Job.attempts + 1)
            .returning(Job.id), execution_options={"synchronize_session": False}))
    if not claimed:
        return
    with db.system_session() as s:
        jobs = list(s.scalars(select(Job).where(Job.id.in_(claimed)).order_by(Job.id)))
        ids = [j.logfile_id for j in jobs if j.logfile_id is not None]
        logfiles = {lf.id: lf for lf in s.scalars(select(Logfile).where(Logfile.id.in_(ids)))}
        for job in jobs:
            logfile = logfiles.get(job.logfile_id) if job.logfile_id is not None else None
            job.finished_at = utcnow()
            if logfile is None:
                job.status, job.error = "failed", "the logfile was deleted"
                continue
            try:
                # Raises (e.g. StoreError: blob missing) before it changes anything in the session,
                # so one job's failure leaves the others' verdicts to be committed.
                problem = services.check_logfile_samples(s, store, logfile)
            except Exception as err:
                if not isinstance(err, SmartLoggerError):
                    log.exception("check job %s failed", job.id)
                job.status = "failed"
                job.error = (str(err).splitlines()[0] if isinstance(err, SmartLoggerError) and str(err)
                             else f"{type(err).__name__}: the job failed (see the server log)")[:2000]
                continue
            job.status = "finished"
            job.error = "" if problem is None else f"logfile marked unreadable: {problem}"[:2000]


def run_job(app: Flask, job_id: int) -> None:
    """Execute job ``job_id`` (any process); records running/finished/failed in its row."""
    db = database(app)
    store = job_store(app)
    with db.system_session() as s:
        # Claim atomically: of several workers handed the same job, exactly one runs it.
        claimed = s.execute(
            update(Job).where(Job.id == job_id, Job.status == "queued")
            .values(status="running", started_at=utcnow(), attempts=Job.attempts + 1)
        ).rowcount  # type: ignore[attr-defined]
        if claimed != 1:
            return
    follow_up: tuple[int, str] | None = None
    try:
        with db.system_session() as s:
            job = s.get(Job, job_id)
            assert job is not None
            test_id = job.test_id
            if job.kind == "check":
                logfile = s.get(Logfile, job.logfile_id) if job.logfile_id is not None else None
                if logfile is None:
                    raise SmartLoggerError("the logfile was deleted")
                problem = services.check_logfile_samples(s, store, logfile)
                # The job did its work either way; its verdict is on the logfile, echoed here.
                job.status, job.finished_at = "finished", utcnow()
                job.error = "" if problem is None else f"logfile marked unreadable: {problem}"[:2000]
                return
            test = s.get(CapacityTest, job.test_id)
            if test is None:
                raise SmartLoggerError("the test was deleted")
            trust = app.extensions["smartlogger_trust"]
            if job.kind == "analyse":
                result = services.compute_result(s, store, test, trust=trust)
                follow_up = (test.org_id, services.report_key(result))
            else:
                services.build_report(s, store, test, trust=trust)
            job.status, job.finished_at, job.error = "finished", utcnow(), ""
    except Exception as err:
        if not isinstance(err, SmartLoggerError):
            log.exception("job %s failed", job_id)
        message = str(err).splitlines()[0] if isinstance(err, SmartLoggerError) and str(err) else (
            f"{type(err).__name__}: the job failed (see the server log)")
        with db.system_session() as s:
            job = s.get(Job, job_id)
            if job is not None:
                job.status, job.finished_at, job.error = "failed", utcnow(), message[:2000]
        return
    if follow_up is not None and test_id is not None:
        enqueue(app, follow_up[0], "report", test_id, follow_up[1])
