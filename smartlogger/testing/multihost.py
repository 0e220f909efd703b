"""A deployment of several stateless API hosts for tests and benchmarks, all on this machine.

Owns ``Deployment``: N gunicorn processes (the hosts, each on its own loopback port and with a
``DATA_DIR`` of its own that must stay empty), ``smartlogger worker`` processes (the job
workers), on one PostgreSQL schema (fresh, dropped afterwards), one Redis queue (a name of its
own on a Redis database number of the caller's) and one file store: SeaweedFS over S3
(``testing.seaweedfs``) or, for comparison, a folder. The hosts share exactly what a real
deployment shares: the database URL, the store, Redis and the server key, all given by
environment variables (nothing on a host's own disk).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import redis

from smartlogger.api.admin import Admin
from smartlogger.api.receipts import new_key_pem
from smartlogger.testing.api import database_url
from smartlogger.testing.seaweedfs import SeaweedFS, free_port

BUCKET = "smartlogger"


@dataclass
class Host:
    name: str
    port: int
    data_dir: Path
    process: subprocess.Popen[bytes]

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"


@dataclass
class Deployment:
    folder: Path
    db_url: str
    schema: str | None
    redis_url: str
    store: str  # the STORE moniker
    seaweed: SeaweedFS | None
    token: str = ""
    queue: str = field(default_factory=lambda: f"sl-{secrets.token_hex(6)}")
    server_key: str = field(default_factory=new_key_pem)
    hosts: list[Host] = field(default_factory=list)
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def env(self, data_dir: Path) -> dict[str, str]:
        """A host's (or worker's) whole configuration: environment variables only."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("SMARTLOGGER_", "AWS_")) and k != "REDIS_URL"}
        env.update({"SMARTLOGGER_DATABASE_URL": self.db_url, "SMARTLOGGER_DB_SCHEMA": self.schema or "",
                    "SMARTLOGGER_STORE": self.store, "SMARTLOGGER_SERVER_KEY": self.server_key,
                    "SMARTLOGGER_DATA_DIR": str(data_dir), "SMARTLOGGER_RATE_LIMIT_PER_MINUTE": "0",
                    "SMARTLOGGER_RQ_QUEUE": self.queue, "REDIS_URL": self.redis_url,
                    "SMARTLOGGER_JOB_STORE_PATIENCE_SECONDS": "90"})
        if self.seaweed is not None:
            env.update(self.seaweed.env())
        return env

    def start_host(self, *, workers: int = 1, threads: int = 4, timeout_s: float = 120.0) -> Host:
        name = f"host{len(self.hosts) + 1}"
        port = free_port()
        data_dir = self.folder / name / "data"  # never created by a stateless host
        log = open(self.folder / f"{name}.log", "ab")  # noqa: SIM115  # the child keeps it open
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-w", str(workers), "--threads", str(threads),
                 "-b", f"127.0.0.1:{port}", "--keep-alive", "0", "--log-level", "warning",
                 "smartlogger.api.wsgi:app"],
                env=self.env(data_dir), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        finally:
            log.close()
        host = Host(name, port, data_dir, proc)
        self.hosts.append(host)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with urllib.request.urlopen(f"{host.api}/health", timeout=5) as r:
                    if r.status == 200:
                        return host
            except (urllib.error.URLError, OSError):
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start; see {self.folder / (name + '.log')}")
            time.sleep(0.2)  # polling a starting server

    def start_worker(self, *extra: str) -> subprocess.Popen[bytes]:
        name = f"worker{len(self.workers) + 1}"
        log = open(self.folder / f"{name}.log", "ab")  # noqa: SIM115  # the child keeps it open
        try:
            proc = subprocess.Popen(
                [sys.executable, "-c", "from smartlogger.cli import main; main()", "worker", *extra],
                env=self.env(self.folder / name / "data"), stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL)
        finally:
            log.close()
        self.workers.append(proc)
        return proc

    def stop(self) -> None:
        for proc in [h.process for h in self.hosts] + self.workers:
            if proc.poll() is None:
                proc.terminate()
        for proc in [h.process for h in self.hosts] + self.workers:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


@contextmanager
def deployment(folder: Path, *, store: str = "s3", redis_url: str = "redis://127.0.0.1:6379/13") -> Iterator[Deployment]:
    """An empty deployment (database migrated, one technician with a token, no hosts yet) on a
    fresh PostgreSQL schema (in ``SMARTLOGGER_TEST_DATABASE_URL``) and ``store`` ("s3": a SeaweedFS of its own; "file": a folder)."""
    folder.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        url, schema = stack.enter_context(database_url("postgresql"))
        seaweed = None
        if store == "s3":
            seaweed = SeaweedFS(folder / "seaweedfs")
            stack.callback(seaweed.stop)
            seaweed.start(bucket=BUCKET)
            moniker = f"s3://{BUCKET}/{secrets.token_hex(4)}"
        else:
            moniker = f"file://{folder / 'files'}"
        d = Deployment(folder, url, schema, redis_url, moniker, seaweed)
        admin = Admin(url, schema=schema)
        try:
            admin.create_org("Multi Host Service")
            admin.create_user("Multi Host Service", "tech@multihost.example", "technician")
            d.token = admin.issue_token("tech@multihost.example").token
        finally:
            admin.close()
        conn = redis.Redis.from_url(redis_url)
        stack.callback(conn.close)
        stack.callback(lambda: [conn.delete(k) for k in conn.scan_iter(f"rq:*{d.queue}*")])
        stack.callback(d.stop)
        yield d
