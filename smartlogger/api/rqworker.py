"""The RQ worker's entry point: ``rq_entry(job_id)`` runs one job in an RQ worker process.

RQ workers (``rq worker --url $REDIS_URL smartlogger``) import this module by name
(``queue.RQ_ENTRY``) and build the app once per worker process from the same
``SMARTLOGGER_*`` environment as the web process (database, file store, Redis).
A module of its own because it is the one place that needs both the app factory
and the worker, and the app factory needs the worker.
"""

from __future__ import annotations

from flask import Flask

from smartlogger.api.app import create_app
from smartlogger.api.worker import run_job

_RQ_APP: Flask | None = None


def rq_entry(job_id: int) -> None:
    """What an RQ worker runs: build the app once per worker process from the environment."""
    global _RQ_APP
    if _RQ_APP is None:
        _RQ_APP = create_app({"MIGRATE_ON_START": False})
    run_job(_RQ_APP, job_id)
