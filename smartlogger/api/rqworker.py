"""The RQ worker's entry point: ``rq_entry(job_id)`` runs one job in an RQ worker process.

RQ workers import this module by name (``queue.RQ_ENTRY``) and build the app once per
process from the same ``SMARTLOGGER_*`` environment as the web process (database, file
store, Redis). ``smartlogger worker`` builds it before the first job (``preload``) and runs
the jobs in that process; a plain ``rq worker --url $REDIS_URL smartlogger`` works too, but
its work horse builds the app again for every job.
A module of its own because it is the one place that needs both the app factory
and the worker, and the app factory needs the worker.
"""

from __future__ import annotations

from typing import Any

from flask import Flask

from smartlogger.api.app import create_app
from smartlogger.api.worker import run_job

_RQ_APP: Flask | None = None


def preload(config: dict[str, Any] | None = None) -> Flask:
    """Build this process's app now (``config`` over the environment), for every job it will run."""
    global _RQ_APP
    _RQ_APP = create_app({"MIGRATE_ON_START": False, **(config or {})})
    return _RQ_APP


def rq_entry(job_id: int) -> None:
    """What an RQ worker runs: build the app once per worker process from the environment."""
    global _RQ_APP
    if _RQ_APP is None:
        _RQ_APP = create_app({"MIGRATE_ON_START": False})
    run_job(_RQ_APP, job_id)
