"""Background jobs, the queueing side: the job table protocol and the runner seam.

Owns ``enqueue`` (idempotent by key: the same inputs give the same job; a failed job
is retried by enqueueing again), ``submit_check`` (hand a committed logfile check job
to the runner), the job keys, and the runner seam ``JobRunner`` with the producer of
the RQ back end (``RQRunner``: jobs on Redis when ``REDIS_URL`` is set; workers run
``rq worker --url $REDIS_URL smartlogger`` and execute ``smartlogger.api.rqworker.rq_entry``).

A job only records its state in the database; its output (a ``Result`` or a
``Report`` row) is what the API serves. What a job does, and the in-process runner,
are the worker side (``api.worker``): this module never imports it, so the request
path (resources, services) can queue work without depending on the code that runs it.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Protocol

from flask import Flask
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from smartlogger.api.db import database
from smartlogger.api.models import Job, utcnow

log = logging.getLogger("smartlogger.api.jobs")
KINDS = ("analyse", "report", "check")
#: What an RQ worker runs for a job (by name: the worker process imports it).
RQ_ENTRY = "smartlogger.api.rqworker.rq_entry"


class JobRunner(Protocol):
    def submit(self, job_id: int) -> None: ...

    def submit_background(self, job_id: int) -> None: ...

    def close(self) -> None: ...


class RQRunner:
    """Jobs on Redis through RQ (``queue`` name ``smartlogger``)."""

    def __init__(self, redis_url: str, queue_name: str = "smartlogger") -> None:
        # Lazy: the optional RQ back end (and Redis) only when REDIS_URL is configured.
        import redis
        from rq import Queue

        self.connection = redis.Redis.from_url(redis_url)
        self.queue = Queue(queue_name, connection=self.connection)

    def submit(self, job_id: int) -> None:
        # RQ's own job id; ours (the row id) is the argument, and the row holds the state.
        self.queue.enqueue(RQ_ENTRY, job_id, job_timeout=1800)

    def submit_background(self, job_id: int) -> None:
        # Same queue: RQ workers are other processes, they take no CPU time from a request's GIL.
        self.submit(job_id)

    def close(self) -> None:
        self.connection.close()


def job_key(org_id: int, kind: str, inputs: str) -> str:
    return hashlib.sha256(f"{org_id}/{kind}/{inputs}".encode()).hexdigest()


def enqueue(app: Flask, org_id: int, kind: str, test_id: int, inputs: str) -> Job:
    """The job for (``kind``, ``inputs``): existing unless it failed; submitted if (re)queued."""
    if kind not in KINDS:
        raise ValueError(f"unknown job kind {kind!r}")
    key = job_key(org_id, kind, inputs)
    db = database(app)
    submit = False
    with db.system_session() as s:
        job = s.scalar(select(Job).where(Job.key == key))
        if job is None:
            job = Job(org_id=org_id, key=key, kind=kind, test_id=test_id)
            try:
                with s.begin_nested():
                    s.add(job)
                submit = True
            except IntegrityError:  # enqueued concurrently by another request
                job = s.scalar(select(Job).where(Job.key == key))
                assert job is not None
        elif job.status == "failed":
            job.status, job.error, job.started_at, job.finished_at = "queued", "", None, None
            submit = True
        s.flush()
        s.expunge(job)
    if submit:
        try:
            app.extensions["smartlogger_jobs"].submit(job.id)
        except Exception as err:  # e.g. Redis down: the upload that triggered this must not fail
            log.exception("could not queue job %s", job.id)
            with db.system_session() as s:
                row = s.get(Job, job.id)
                if row is not None:
                    row.status, row.finished_at = "failed", utcnow()
                    row.error = f"could not queue the job ({type(err).__name__}); ask again to retry"
                    s.flush()
                    s.expunge(row)
                    job = row
    return job


def submit_check(app: Flask, job_id: int) -> None:
    """Run the (committed) check job ``job_id``; if it cannot be queued, say so in its row.

    Never raises: the upload that created the job has already succeeded.
    """
    try:
        app.extensions["smartlogger_jobs"].submit_background(job_id)
    except Exception as err:  # e.g. Redis down
        log.exception("could not queue job %s", job_id)
        with database(app).system_session() as s:
            row = s.get(Job, job_id)
            if row is not None:
                row.status, row.finished_at = "failed", utcnow()
                row.error = f"could not queue the job ({type(err).__name__})"
