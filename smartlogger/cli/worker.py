"""``smartlogger worker``: run the API's background jobs (checks, analyses, reports) from Redis.

Thin wrapper over RQ: builds the app once from the same ``SMARTLOGGER_*`` environment as the
web hosts (database, file store) and then takes jobs from the queue. Unlike a plain
``rq worker``, whose work horse imports the whole API and builds the app again for every job
(~2 s of CPU before a 5 ms logfile check), the jobs run in this process by default (RQ's
``SimpleWorker``); ``--fork`` runs each in a forked child of the ready app instead (RQ's
``Worker``: a job that crashes its process does not take the worker with it, at the cost of a
fork per job). Workers may run on any host that reaches the database, Redis and the store.
"""

from __future__ import annotations

import click


@click.command("worker")
@click.option("--url", envvar="REDIS_URL", required=True, help="Redis URL (REDIS_URL), as the web hosts'")
@click.option("--queue", envvar="SMARTLOGGER_RQ_QUEUE", default="smartlogger", show_default=True,
              help="RQ queue name (SMARTLOGGER_RQ_QUEUE), as the web hosts'")
@click.option("--burst", is_flag=True, help="stop once the queue is empty")
@click.option("--fork", is_flag=True, help="run each job in a forked child process (isolation; slower)")
@click.option("--max-jobs", type=click.IntRange(1), default=None,
              help="stop after this many jobs (a supervisor starts a fresh worker)")
def worker(url: str, queue: str, burst: bool, fork: bool, max_jobs: int | None) -> None:
    """Run background jobs from the Redis queue until stopped (or, with --burst, until it is empty)."""
    # Lazy: RQ, Redis and the API only for this command (the others start without them).
    import redis
    from rq import Queue, SimpleWorker, Worker

    from smartlogger.api import rqworker

    rqworker.preload({"REDIS_URL": url, "RQ_QUEUE": queue})
    conn = redis.Redis.from_url(url)
    cls = Worker if fork else SimpleWorker
    w = cls([Queue(queue, connection=conn)], connection=conn)
    w.work(burst=burst, max_jobs=max_jobs)
