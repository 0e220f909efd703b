"""Background jobs, the worker side: what a job does, and the in-process runner.

Owns ``run_job`` (claim a queued job atomically, run it, record finished or failed
in its row), ``run_checks`` (a batch of logfile check jobs in one transaction), the
in-process back end ``ThreadRunner`` (default; zero setup), ``make_runner`` (the
back end the configuration asks for: ``ThreadRunner``, or ``queue.RQRunner`` when
``REDIS_URL`` is set), ``sweep`` (hand to a runner the jobs nobody runs) and ``recover``
(the sweep a starting process makes). The queueing side (``enqueue``, job keys) is ``api.queue``.

Exactly once, by leases (``claim``): a runner claims a queued job with one conditional UPDATE
(``status = 'queued'`` -> ``running``, ``attempts + 1``, ``lease_until = now + JOB_LEASE_SECONDS``;
on PostgreSQL the UPDATE row-locks and re-checks its condition, on SQLite the write lock
serialises it), so of several runners handed the same job exactly one gets it; its
``attempts`` after the claim is the claim's token. While it works, a heartbeat thread renews the
lease. The job's effects (a logfile's verdict and audit event, a result row, a report row) are
committed in one transaction with the job's ``finished`` row, and that UPDATE is fenced by the
token (``attempts`` unchanged, still ``running``): a runner that lost its claim (its lease
expired while, say, the database was away, and the job was taken again) commits nothing. A job
whose runner died keeps its claim until the lease expires; then ``sweep`` (every
``JOB_SWEEP_SECONDS`` in every runner, and at start) puts it back to ``queued`` and submits it.
A runner that cannot reach the database keeps its jobs and retries them with back-off; jobs it
never got (a lost process, a lost Redis message) are found by the sweep.

An analysis that finishes enqueues the report, so "results and report ready"
follows the last upload by itself. A "check" job (one per uploaded logfile,
committed with the logfile's row, see ``services.ingest_logfile``) decodes every
sample payload of that logfile off the request path and marks the logfile
``unreadable`` if they do not decode.
"""

from __future__ import annotations

import datetime as dt
import heapq
import logging
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from flask import Flask
from sqlalchemy import and_, or_, select, true, update
from sqlalchemy.orm import Session

from smartlogger.api import services
from smartlogger.api.db import database
from smartlogger.api.errors import database_unreachable
from smartlogger.api.filestore import PatientStore
from smartlogger.api.models import CapacityTest, Job, Logfile, utcnow
from smartlogger.api.queue import JobRunner, RQRunner, enqueue
from smartlogger.errors import SmartLoggerError

log = logging.getLogger("smartlogger.api.jobs")
#: Check jobs the in-process runner runs in one transaction (amortises claim and commit).
CHECK_BATCH = 32
#: Default ``JOB_LEASE_SECONDS``: a claim lasts this long without its runner's heartbeat.
JOB_LEASE_SECONDS = 60.0
#: Default ``JOB_SWEEP_SECONDS``: how often a runner looks for jobs nobody runs.
JOB_SWEEP_SECONDS = 30.0
#: Longest wait before a runner retries jobs it could not claim or finish (database away).
RETRY_MAX_S = 10.0


@dataclass(frozen=True)
class Claim:
    """A job this runner holds: ``attempt`` is the job's ``attempts`` after the claim (its token)."""

    job_id: int
    attempt: int


def _lease_s(app: Flask) -> float:
    return float(app.config.get("JOB_LEASE_SECONDS") or JOB_LEASE_SECONDS)


def claim(app: Flask, job_ids: Sequence[int], *, kind: str | None = None) -> list[Claim]:
    """Claim the queued jobs among ``job_ids`` (of ``kind``, if given): one conditional UPDATE."""
    now = utcnow()
    cond = [Job.id.in_(list(job_ids)), Job.status == "queued"]
    if kind is not None:
        cond.append(Job.kind == kind)
    with database(app).system_session() as s:
        rows = s.execute(
            update(Job).where(*cond)
            .values(status="running", started_at=now, finished_at=None, attempts=Job.attempts + 1,
                    lease_until=now + dt.timedelta(seconds=_lease_s(app)))
            .returning(Job.id, Job.attempts), execution_options={"synchronize_session": False}).all()
    return [Claim(int(i), int(a)) for i, a in rows]


def _fence(s: Session, c: Claim, status: str, error: str) -> bool:
    """Finish the claimed job in ``s``'s transaction if the claim still holds (see module doc)."""
    done = s.execute(
        update(Job).where(Job.id == c.job_id, Job.attempts == c.attempt, Job.status == "running")
        .values(status=status, error=error[:2000], finished_at=utcnow(), lease_until=None),
        execution_options={"synchronize_session": False}).rowcount  # type: ignore[attr-defined]
    if done != 1:
        log.warning("job %s: attempt %s lost its claim (lease expired, taken again); its work is "
                    "discarded", c.job_id, c.attempt)
    return bool(done == 1)


@contextmanager
def held(app: Flask, claims: Sequence[Claim]) -> Iterator[None]:
    """Renew the leases of ``claims`` every third of ``JOB_LEASE_SECONDS`` while the block runs."""
    if not claims:
        yield
        return
    lease = _lease_s(app)
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(lease / 3):
            try:
                with database(app).system_session() as s:
                    for c in claims:
                        s.execute(update(Job).where(Job.id == c.job_id, Job.attempts == c.attempt,
                                                    Job.status == "running")
                                  .values(lease_until=utcnow() + dt.timedelta(seconds=lease)),
                                  execution_options={"synchronize_session": False})
            except Exception:  # the database away: the lease may lapse; the fence guards the effects
                log.warning("jobs %s: could not renew their lease", [c.job_id for c in claims], exc_info=True)

    thread = threading.Thread(target=beat, name="smartlogger-job-lease", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def sweep(app: Flask, *, startup: bool = False) -> list[tuple[int, bool]]:
    """Jobs nobody runs, made claimable and handed to this app's runner: ``[(id, background)]``.

    A running job whose lease expired (its runner died) goes back to ``queued``; a queued job
    is handed on when no runner may still hold it in a queue: at ``startup`` every queued job
    (this process's queue was lost; another process's runner that holds it too loses the claim
    race harmlessly), otherwise one queued for longer than a lease plus the in-process runner's
    longest deferral, or whose last hand-over is that old. Each job is taken by one sweeping
    process only (a conditional UPDATE of ``lease_until``, the next hand-over time).
    """
    now = utcnow()
    lease = _lease_s(app)
    stale = dt.timedelta(seconds=lease + float(app.config.get("CHECK_MAX_DELAY_SECONDS") or 60))
    queued_stale = or_(and_(Job.lease_until.is_(None), Job.created_at < now - stale), Job.lease_until < now)
    with database(app).system_session() as s:
        expired = s.execute(
            # No lease at all: claimed before leases existed (migration 0007), by a runner long gone.
            update(Job).where(Job.status == "running", or_(Job.lease_until.is_(None), Job.lease_until < now))
            .values(status="queued", lease_until=now + stale)
            .returning(Job.id, Job.kind), execution_options={"synchronize_session": False}).all()
        queued = s.execute(
            update(Job).where(Job.status == "queued", true() if startup else queued_stale)
            .values(lease_until=now + stale)
            .returning(Job.id, Job.kind), execution_options={"synchronize_session": False}).all()
    found = sorted({(int(i), k == "check") for i, k in [*expired, *queued]})
    if expired:
        log.warning("jobs %s: their runner's lease expired; queued again", sorted(int(i) for i, _ in expired))
    runner = app.extensions["smartlogger_jobs"]
    for job_id, background in found:
        (runner.submit_background if background else runner.submit)(job_id)
    return found


class ThreadRunner:
    """One daemon thread executing jobs (the CPU has 2 cores: one is plenty).

    Analyses and reports (``submit``) run in submission order, ahead of background work.
    Background jobs (``submit_background``: logfile checks) run when this process has
    served no request for ``idle_s`` seconds, or at the latest ``max_delay_s`` after
    submission: the GIL is shared with the request threads, so a check that runs during
    an upload burst takes its CPU from the uploads; under sustained load the checks
    still run (``max_delay_s``), they never wait forever. Jobs that fail to claim or finish
    because the database is away are kept and retried with back-off (up to ``RETRY_MAX_S``);
    every ``sweep_s`` the runner sweeps (``sweep``) for jobs nobody runs.
    """

    def __init__(self, app: Flask, *, idle_s: float = 0.5, max_delay_s: float = 60.0,
                 sweep_s: float = JOB_SWEEP_SECONDS) -> None:
        self.app = app
        self.idle_s = idle_s
        self.max_delay_s = max_delay_s
        self.sweep_s = sweep_s
        self._urgent: deque[int] = deque()
        self._background: deque[tuple[float, int]] = deque()  # (monotonic submit time, job id)
        self._retry: list[tuple[float, int, bool]] = []  # heap of (monotonic due time, job id, background)
        self._known: set[int] = set()  # ids waiting in one of the queues (a sweep adds no duplicate)
        self._failures = 0  # consecutive rounds that could not reach the database
        self._next_sweep = time.monotonic() + sweep_s
        self._cond = threading.Condition()
        self._pending = 0
        self._closed = False
        self._last_request = 0.0  # time.monotonic() of the last request start
        self._thread = threading.Thread(target=self._loop, name="smartlogger-jobs", daemon=True)
        self._thread.start()

    def submit(self, job_id: int) -> None:
        with self._cond:
            if job_id in self._known:
                return
            self._known.add(job_id)
            self._pending += 1
            self._urgent.append(job_id)
            self._cond.notify_all()

    def submit_background(self, job_id: int) -> None:
        with self._cond:
            if job_id in self._known:
                return
            self._known.add(job_id)
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
        """(background?, job ids) to run next; (False, []) when a sweep is due; None once closed.
        Background jobs come in batches of up to ``CHECK_BATCH`` (one database transaction)."""
        with self._cond:
            while True:
                if self._closed:
                    return None
                now = time.monotonic()
                if now >= self._next_sweep:
                    self._next_sweep = now + self.sweep_s
                    return False, []
                if self._retry and self._retry[0][0] <= now:
                    _, job_id, background = heapq.heappop(self._retry)
                    return background, [job_id]
                if self._urgent:
                    return False, [self._urgent.popleft()]
                wait = self._next_sweep - now
                if self._retry:
                    wait = min(wait, self._retry[0][0] - now)
                if not self._background:
                    self._cond.wait(wait)
                    continue
                quiet_in = self._last_request + self.idle_s - now
                due_in = self._background[0][0] + self.max_delay_s - now
                if quiet_in <= 0 or due_in <= 0:
                    batch: list[int] = []
                    while self._background and len(batch) < CHECK_BATCH and (
                            quiet_in <= 0 or self._background[0][0] + self.max_delay_s <= now):
                        batch.append(self._background.popleft()[1])
                    return True, batch
                self._cond.wait(min(quiet_in, due_in, wait))

    def _loop(self) -> None:
        while True:
            nxt = self._next()
            if nxt is None:
                return
            background, ids = nxt
            if not ids:
                try:
                    sweep(self.app)
                except Exception:  # the database away: the next sweep tries again
                    log.warning("job sweep failed", exc_info=True)
                continue
            with self._cond:
                self._known.difference_update(ids)
            retry = False
            try:
                if background:
                    run_checks(self.app, ids)
                else:
                    run_job(self.app, ids[0])
                self._failures = 0
            except Exception:  # the database (or a bug) stopped the claim or the finish: try again
                self._failures += 1
                retry = True
                delay = min(RETRY_MAX_S, 0.5 * 2 ** min(self._failures, 10))
                log.warning("jobs %s could not run (%s in a row); again in %.1f s", ids, self._failures, delay,
                            exc_info=True)
            finally:
                with self._cond:
                    if retry and not self._closed:
                        due = time.monotonic() + delay
                        for job_id in ids:
                            if job_id not in self._known:
                                self._known.add(job_id)
                                heapq.heappush(self._retry, (due, job_id, background))
                            else:
                                self._pending -= 1
                    else:
                        self._pending -= len(ids)
                    self._cond.notify_all()

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Block until every submitted job (and the jobs they enqueued) ran; False on timeout, or
        at once if the runner was closed with jobs left (they stay queued in the database)."""
        with self._cond:
            self._cond.wait_for(lambda: self._pending == 0 or self._closed, timeout)
            return self._pending == 0

    def close(self, timeout: float = 10.0) -> None:
        """Stop taking jobs and wait (up to ``timeout``) for the job or sweep in hand to end, so
        that nothing runs against a database its owner is about to close."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)


def job_store(app: Flask) -> PatientStore:
    """The file store as jobs use it: waiting out a short outage (``JOB_STORE_PATIENCE_SECONDS``,
    default 60) where a request would answer 503 at once: a job has no client that retries it."""
    return PatientStore(app.extensions["smartlogger_files"],
                        float(app.config.get("JOB_STORE_PATIENCE_SECONDS") or 60))


class Sweeper:
    """A daemon thread that calls ``sweep`` every ``every_s`` seconds: for RQ, whose workers are
    other processes (a worker killed mid-job leaves its claim to expire; RQ does not run the job
    again by itself). The in-process runner sweeps in its own loop."""

    def __init__(self, app: Flask, every_s: float) -> None:
        self._stop = threading.Event()

        def loop() -> None:
            while not self._stop.wait(every_s):
                try:
                    sweep(app)
                except Exception:  # the database or Redis away: the next sweep tries again
                    log.warning("job sweep failed", exc_info=True)

        self._thread = threading.Thread(target=loop, name="smartlogger-job-sweep", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)


def make_runner(app: Flask) -> JobRunner:
    url = app.config.get("REDIS_URL")
    if url:
        rq_runner = RQRunner(url, app.config.get("RQ_QUEUE", "smartlogger"))
        app.extensions["smartlogger_sweeper"] = Sweeper(
            app, float(app.config.get("JOB_SWEEP_SECONDS") or JOB_SWEEP_SECONDS))
        return rq_runner
    runner = ThreadRunner(app, idle_s=float(app.config.get("CHECK_IDLE_SECONDS", 0.5)),
                          max_delay_s=float(app.config.get("CHECK_MAX_DELAY_SECONDS", 60)),
                          sweep_s=float(app.config.get("JOB_SWEEP_SECONDS") or JOB_SWEEP_SECONDS))
    return runner


def recover(app: Flask) -> int:
    """At the start of a process with an in-process runner: hand it every queued job (the queue of
    the process it replaces is lost) and every job whose runner's lease expired. A job another
    live process is running keeps its claim. Returns how many jobs were handed on."""
    return len(sweep(app, startup=True))


def _error_text(job_id: int, err: Exception) -> str:
    if not isinstance(err, SmartLoggerError):
        log.error("job %s failed", job_id, exc_info=err)
    return (str(err).splitlines()[0] if isinstance(err, SmartLoggerError) and str(err)
            else f"{type(err).__name__}: the job failed (see the server log)")


def run_checks(app: Flask, job_ids: list[int]) -> None:
    """Run several check jobs, their verdicts committed in one transaction (the in-process
    runner's batches). Same effect as ``run_job`` on each: claimed atomically (a job another
    runner holds is skipped), the samples decoded outside any transaction, then each job
    finished (fenced by its claim) with its verdict on its logfile, or failed with the reason.
    Raises only if the database cannot be reached (the jobs stay claimed until their lease ends).
    """
    db = database(app)
    store = job_store(app)
    claims = claim(app, job_ids, kind="check")
    if not claims:
        return
    with held(app, claims):
        with db.system_session() as s:
            targets = dict(s.execute(select(Job.id, Job.logfile_id).where(
                Job.id.in_([c.job_id for c in claims]))).all())
            shas = dict(s.execute(select(Logfile.id, Logfile.sha256).where(
                Logfile.id.in_([i for i in targets.values() if i is not None]))).all())
        verdicts: dict[int, tuple[str, tuple[str, int | None] | None, str]] = {}
        for c in claims:
            logfile_id = targets.get(c.job_id)
            if logfile_id is None or logfile_id not in shas:
                verdicts[c.job_id] = ("failed", None, "the logfile was deleted")
                continue
            try:
                found = services.logfile_problem(store, shas[logfile_id])
            except Exception as err:  # e.g. StoreError: the blob is missing
                verdicts[c.job_id] = ("failed", None, _error_text(c.job_id, err))
                continue
            note = "" if found is None else f"logfile marked unreadable: {found[0]}"
            verdicts[c.job_id] = ("finished", found, note)
        with db.system_session() as s:
            for c in claims:
                status, found, note = verdicts[c.job_id]
                if not _fence(s, c, status, note):
                    continue
                if found is not None:
                    logfile = s.get(Logfile, targets[c.job_id])
                    if logfile is not None:
                        services.mark_unreadable(s, logfile, *found)


def run_job(app: Flask, job_id: int) -> None:
    """Execute job ``job_id`` (any process); records running/finished/failed in its row.

    Exactly once (module doc): claimed with a lease, the lease renewed while it works, its
    effects committed with its ``finished`` row only if the claim still holds. Raises only if the
    database cannot be reached (then the job stays claimed until its lease expires, and a sweep
    queues it again).
    """
    db = database(app)
    store = job_store(app)
    claims = claim(app, [job_id])
    if not claims:
        return
    c = claims[0]
    follow_up: tuple[int, str] | None = None
    test_id: int | None = None
    with held(app, claims):
        try:
            with db.system_session() as s:
                job = s.get(Job, job_id)
                assert job is not None
                test_id = job.test_id
                if job.kind == "check":
                    sha = s.scalar(select(Logfile.sha256).where(Logfile.id == job.logfile_id)) \
                        if job.logfile_id is not None else None
                    if sha is None:
                        raise SmartLoggerError("the logfile was deleted")
                    s.rollback()  # no transaction open while the samples decode
                    found = services.logfile_problem(store, sha)
                    # The job did its work either way; its verdict is on the logfile, echoed here.
                    note = "" if found is None else f"logfile marked unreadable: {found[0]}"
                    if _fence(s, c, "finished", note) and found is not None:
                        logfile = s.get(Logfile, job.logfile_id)
                        if logfile is not None:
                            services.mark_unreadable(s, logfile, *found)
                    return
                test = s.get(CapacityTest, job.test_id)
                if test is None:
                    raise SmartLoggerError("the test was deleted")
                trust = app.extensions["smartlogger_trust"]
                budget = int(app.config.get("ANALYSIS_MAX_SAMPLES") or services.ANALYSIS_MAX_SAMPLES)
                if job.kind == "analyse":
                    result = services.compute_result(s, store, test, trust=trust, max_samples=budget)
                    follow_up = (test.org_id, services.report_key(result))
                else:
                    services.build_report(s, store, test, trust=trust, max_samples=budget)
                if not _fence(s, c, "finished", ""):
                    s.rollback()
                    return
        except Exception as err:
            if database_unreachable(err):
                raise  # the runner retries; the claim lapses with its lease
            message = _error_text(job_id, err)
            with db.system_session() as s:
                _fence(s, c, "failed", message)
            return
    if follow_up is not None and test_id is not None:
        enqueue(app, follow_up[0], "report", test_id, follow_up[1])
