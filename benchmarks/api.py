"""API benchmark: gunicorn + PostgreSQL server, load from this (separate) process over loopback.

Prints ONE JSON object:

- ``upload_per_s``, ``upload_p50_ms``, ``upload_p99_ms``: distinct ~40 kB signed logfiles
  (real simulated pulls; variants differ in their unsigned test metadata) POSTed at
  concurrency 16 (a connection per request by default; ``--keep-alive 30`` keeps them).
- ``read_per_s``, ``read_p50_ms``, ``read_p99_ms``: ``GET /api/tests/<id>/results`` at concurrency
  16, driven by wrk when it is installed (``apt-get install wrk``; ``read_client`` says which),
  for 5 s; ``read_cpu_ms`` splits the CPU per read like ``upload_cpu_ms``. The same reads by this
  script's own Python client are reported too (``*_python_client``; the only figures without wrk).
- ``results_ready_s``: from the response to the last upload of an N-block test (240; 24 with
  ``--quick``) until both its results and its report workbook are available.
- ``upload_cpu_ms``: CPU milliseconds per upload during the upload burst, split into the gunicorn
  workers, PostgreSQL and this load generator (all share the machine's cores).
- ``checks_done_s`` / ``upload_with_checks_per_s``: each upload's sample payloads are decoded
  by its "check" job after the response (deferred while requests keep coming): seconds from
  the last upload until every check has run, and the upload rate counting that work.
- ``series_ms``, ``series_body_bytes``: ``GET /api/logfiles/<id>/series?max_points=2000`` of a
  blackbox logfile (10 years of 1-minute samples, ``blackbox_logfile_bytes``; 1 year with
  ``--quick``): the median of 5 requests and the answer's size; ``series_day_ms``: the same for
  one day in the middle of that log (only its sample blocks are decoded).
- ``test_checks_done_s``: seconds after the report was ready until the N-block test's own
  check jobs had run too; the read phase starts then (they would take CPU from the reads).

Usage: ``python benchmarks/api.py [--quick] [--workers 3] [--threads 4] [--keep-alive 0] [--database-url URL]``.
The database is a fresh schema in ``--database-url`` (default: ``SMARTLOGGER_TEST_DATABASE_URL``
or ``postgresql://postgres@127.0.0.1:5432/test``), dropped at the end.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import queue
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

from smartlogger.api.admin import Admin
from smartlogger.logfile import LogfileMetadata, read_logfile
from smartlogger.testing.api import database_url, simulated_logfiles
from smartlogger.testing.tamper import rebuild

CONCURRENCY = 16


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def base_logfile() -> bytes:
    """One ~40 kB signed logfile: a long, slow discharge logged at 1 Hz."""
    from smartlogger.device.sim import simulate_string_test
    from smartlogger.device.store import MemoryStore
    from smartlogger.logfile import pull_logfile, simulated_credentials

    st = simulate_string_test(1, weak=0, load="8A", rest_before_s=600, rest_after_s=1500,
                              store_factory=lambda ident: MemoryStore(serial=ident.serial))
    lg = st.loggers[0]
    return pull_logfile(simulated_credentials(lg.identity), lg.identity, lg.store, device_ms=lg.now_ms(),
                        nonce=bytes(16))


def blackbox_logfile(years: float) -> bytes:
    """The signed pull of a logger left on a floating battery for ``years`` (1-minute samples)."""
    from smartlogger.device.sim import simulate_years
    from smartlogger.logfile import pull_logfile, simulated_credentials

    lg = simulate_years(years, seed=1).logger
    return pull_logfile(simulated_credentials(lg.identity), lg.identity, lg.store, device_ms=lg.now_ms(),
                        nonce=bytes(16))


def variants(data: bytes, n: int) -> list[bytes]:
    """``n`` distinct files: same signed records, different (unsigned) phone metadata."""
    lf = read_logfile(data)
    out = []
    for i in range(n):
        lf.metadata = LogfileMetadata(test={"bench": str(i)})
        out.append(rebuild(lf))
    return out


class Client:
    """A keep-alive HTTP/1.1 connection per worker thread."""

    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self.headers = {"Authorization": f"Bearer {token}"}
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def request(self, method: str, path: str, body: bytes | None = None,
                ctype: str | None = None) -> tuple[int, bytes]:
        headers = dict(self.headers)
        if ctype:
            headers["Content-Type"] = ctype
        for attempt in range(2):
            try:
                self.conn.request(method, path, body=body, headers=headers)
                resp = self.conn.getresponse()
                return resp.status, resp.read()
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
                if attempt:
                    raise
        raise AssertionError("unreachable")


def run_concurrent(port: int, token: str, jobs: list[tuple[str, str, bytes | None, str | None]],
                   concurrency: int = CONCURRENCY) -> tuple[float, list[float], list[int]]:
    """Run ``jobs`` (method, path, body, content type) on ``concurrency`` connections."""
    q: queue.Queue[tuple[str, str, bytes | None, str | None] | None] = queue.Queue()
    for j in jobs:
        q.put(j)
    latencies: list[float] = []
    codes: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        c = Client(port, token)
        while True:
            try:
                job = q.get_nowait()
            except queue.Empty:
                return
            assert job is not None
            t = time.perf_counter()
            status, _ = c.request(*job)
            dt = time.perf_counter() - t
            with lock:
                latencies.append(dt)
                codes.append(status)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0, latencies, codes


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of ``pids`` so far (Linux /proc; vanished processes count 0)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / tick


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in open(f"/proc/{pid}/task/{pid}/children").read().split()]
    except OSError:
        return []


def postgres_pids() -> list[int]:
    """Every postgres process on this machine (the server under test is local; other clients of
    the same server, e.g. a concurrent test run, are counted too)."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/comm") as f:
                    comm = f.read().strip()
                if comm == "postgres":
                    out.append(int(d))
            except OSError:
                pass
    return out


def wrk(port: int, token: str, path: str, seconds: int = 5) -> dict[str, Any]:
    """``GET path`` with wrk (2 threads, ``CONCURRENCY`` connections) for ``seconds``.

    Returns read_per_s, read_p50_ms, read_p99_ms (wrk's latency distribution), read_requests,
    read_errors (non-2xx responses and socket errors), client (wrk's version) and client_cpu_s.
    """
    import resource

    cmd = ["wrk", "-t2", f"-c{CONCURRENCY}", f"-d{seconds}s", "--latency",
           "-H", f"Authorization: Bearer {token}", f"http://127.0.0.1:{port}{path}"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    text = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)

    def ms(label: str) -> float:
        value = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        if value is None:
            raise RuntimeError(f"wrk printed no {label} latency:\n{text}")
        return round(float(value[1]) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[value[2]], 1)

    requests = int(re.search(r"(\d+) requests in", text)[1])  # type: ignore[index]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split(" [")[0]
    return {"read_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", text)[1]),  # type: ignore[index]
            "read_p50_ms": ms("50%"), "read_p99_ms": ms("99%"), "read_requests": requests,
            # the server closes every connection (keep-alive 0): wrk counts those as read errors
            "read_errors": (int(non2xx[1]) if non2xx else 0) + (int(sock[1]) + int(sock[4]) if sock else 0),
            "client": version, "client_cpu_s": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)}


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def wait_checks(url: str, schema: str | None, n: int, timeout_s: float = 600) -> float:
    """Seconds until ``n`` logfile check jobs have finished (polling the database)."""
    from sqlalchemy import func, select

    from smartlogger.api.db import make_engine
    from smartlogger.api.models import Job

    engine = make_engine(url, schema=schema)
    t0 = time.perf_counter()
    try:
        with engine.connect() as conn:
            while True:
                done = conn.scalar(select(func.count()).select_from(Job).where(
                    Job.kind == "check", Job.status.in_(("finished", "failed"))))
                conn.rollback()
                if (done or 0) >= n:
                    return round(time.perf_counter() - t0, 2)
                if time.perf_counter() - t0 > timeout_s:
                    raise RuntimeError(f"only {done} of {n} check jobs done after {timeout_s} s")
                time.sleep(0.1)
    finally:
        engine.dispose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short run (fewer requests, 24-block test)")
    # 3 workers x 4 threads on this 2-core machine: a request spends part of its time off the
    # GIL (PostgreSQL round trips and commit, the blob's fsync); a third process keeps both cores
    # busy meanwhile, which 2 processes cannot (one GIL each). More threads per process (2 x 8)
    # uploaded about as fast but halved read_per_s (more GIL hand-offs per 230 kB JSON answer).
    # Measured: docs/API.md, "Deployment".
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--threads", type=int, default=4)
    # 0: a connection per request, as behind nginx (whose upstream connections are not kept alive
    # by default) or with many phones syncing; the kernel then spreads accepts over the workers.
    # Long-lived keep-alive connections stay with one worker and its GIL (docs/API.md, Deployment).
    ap.add_argument("--keep-alive", type=int, default=0,
                    help="gunicorn keep-alive seconds; 0 closes each connection after its response")
    ap.add_argument("--database-url", default=os.environ.get("SMARTLOGGER_TEST_DATABASE_URL",
                                                              "postgresql://postgres@127.0.0.1:5432/test"))
    args = ap.parse_args()
    n_upload = 200 if args.quick else 1000
    n_read = 1000 if args.quick else 5000
    n_blocks = 24 if args.quick else 240

    t = time.perf_counter()
    uploads = variants(base_logfile(), n_upload)
    test_files = simulated_logfiles(n_blocks, load="50A", seed=7, test_id="bench")
    prep_s = time.perf_counter() - t

    out: dict[str, Any] = {"benchmark": "api", "quick": args.quick, "server": "gunicorn",
                           "workers": args.workers, "threads": args.threads, "database": "postgresql",
                           "concurrency": CONCURRENCY, "upload_bytes_mean": round(statistics.mean(map(len, uploads))),
                           "uploads": n_upload, "reads": n_read, "blocks": n_blocks,
                           "prepare_s": round(prep_s, 1)}
    os.environ["SMARTLOGGER_TEST_DATABASE_URL"] = args.database_url  # database_url() makes a fresh schema in it
    with tempfile.TemporaryDirectory(prefix="sl-bench-api-") as data, database_url("postgresql") as (url, schema):
        admin = Admin(url, schema=schema)
        admin.create_org("Bench")
        admin.create_user("Bench", "tech@bench.example", "technician")
        token = admin.issue_token("tech@bench.example").token
        admin.close()
        port = _free_port()
        env = {**os.environ, "SMARTLOGGER_DATABASE_URL": url, "SMARTLOGGER_DB_SCHEMA": schema or "",
               "SMARTLOGGER_DATA_DIR": data, "SMARTLOGGER_RATE_LIMIT_PER_MINUTE": "0"}
        env.pop("REDIS_URL", None)
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-w", str(args.workers), "--threads", str(args.threads),
             "-b", f"127.0.0.1:{port}", "--log-level", "warning", "--keep-alive", str(args.keep_alive),
             "smartlogger.api.wsgi:app"], env=env)
        try:
            deadline = time.time() + 60
            while True:
                try:
                    if Client(port, token).request("GET", "/api/health")[0] == 200:
                        break
                except OSError:
                    pass
                if time.time() > deadline:
                    raise RuntimeError("gunicorn did not start")
                time.sleep(0.2)

            # --- uploads (CPU per upload split by process: server workers, PostgreSQL, this client)
            workers = children(server.pid)
            pg = postgres_pids()
            cpu0 = (cpu_seconds(workers), cpu_seconds(pg), time.process_time())
            wall, lat, codes = run_concurrent(port, token, [
                ("POST", "/api/logfiles", d, "application/vnd.smartlogger.slog") for d in uploads])
            cpu1 = (cpu_seconds(workers), cpu_seconds(sorted(set(pg) | set(postgres_pids()))), time.process_time())
            out["upload_errors"] = sum(1 for c in codes if c != 201)
            out["upload_per_s"] = round(n_upload / wall, 1)
            out["upload_p50_ms"] = round(pct(lat, 50) * 1000, 1)
            out["upload_p99_ms"] = round(pct(lat, 99) * 1000, 1)
            out["upload_cpu_ms"] = {k: round((b - a) / n_upload * 1000, 2)
                                    for k, a, b in zip(("server", "postgres", "client"), cpu0, cpu1, strict=True)}
            # The sample payloads are decoded by each logfile's check job, after the response
            # (deferred while requests keep coming): time until every check has run, and the
            # upload rate that includes that work.
            t_done = time.perf_counter()
            out["checks_done_s"] = wait_checks(url, schema, n_upload)
            out["upload_with_checks_per_s"] = round(n_upload / (wall + time.perf_counter() - t_done), 1)

            # --- the N-block test: create, upload, wait for results + report
            c = Client(port, token)
            status, body = c.request("POST", "/api/tests", json.dumps(
                {"load": "50A", "rated_time": "2h", "blocks": n_blocks, "name": "bench"}).encode(), "application/json")
            tid = json.loads(body)["id"]
            _, _, codes = run_concurrent(port, token, [
                ("POST", f"/api/logfiles?test_id={tid}", d, "application/octet-stream") for d in test_files])
            t_last = time.perf_counter()
            out["test_upload_errors"] = sum(1 for c in codes if c != 201)
            while True:
                status, body = c.request("GET", f"/api/tests/{tid}/report")
                state = json.loads(body)
                if status == 200 and state["status"] == "ready":
                    break
                if (status == 200 and state["status"] == "failed") or time.perf_counter() - t_last > 900:
                    raise RuntimeError(f"report not ready: {state}")
                time.sleep(0.1)
            out["results_ready_s"] = round(time.perf_counter() - t_last, 2)
            status, body = c.request("GET", f"/api/tests/{tid}/results")
            assert status == 200 and len(json.loads(body)["result"]["blocks"]) == n_blocks
            out["read_body_bytes"] = len(body)

            # --- reads, once the test's own check jobs have run: left over from the upload phase,
            # they would take CPU from the reads (measured separately, as checks_done_s above).
            out["test_checks_done_s"] = wait_checks(url, schema, n_upload + n_blocks)

            # --- reads: with wrk when installed (a C load generator: ~0.05 ms of CPU per request
            # where this Python client takes ~0.25, on the same two cores as the server), and with
            # this client in any case.
            path = f"/api/tests/{tid}/results"
            workers = children(server.pid)
            if shutil.which("wrk"):
                cpu0 = (cpu_seconds(workers), cpu_seconds(postgres_pids()))
                w = wrk(port, token, path, seconds=3 if args.quick else 5)
                cpu1 = (cpu_seconds(workers), cpu_seconds(postgres_pids()), w.pop("client_cpu_s"))
                out.update({"read_client": w.pop("client"), **w})
                out["read_cpu_ms"] = {k: round((b - a) / max(1, w["read_requests"]) * 1000, 2) for k, a, b in
                                      zip(("server", "postgres", "client"), (*cpu0, 0.0), cpu1, strict=True)}
            wall, lat, codes = run_concurrent(port, token, [("GET", path, None, None)] * n_read)
            py = {"read_errors": sum(1 for c in codes if c != 200), "read_per_s": round(n_read / wall, 1),
                  "read_p50_ms": round(pct(lat, 50) * 1000, 1), "read_p99_ms": round(pct(lat, 99) * 1000, 1)}
            if "read_client" in out:
                out.update({f"{k}_python_client": v for k, v in py.items()})
            else:
                out.update({"read_client": "python http.client", **py})

            # --- the chart series of a blackbox logfile (10 years at 1 min; 1 year with --quick)
            blackbox = blackbox_logfile(1.0 if args.quick else 10.0)
            status, body = c.request("POST", "/api/logfiles", blackbox, "application/vnd.smartlogger.slog")
            assert status == 201, body
            lid = json.loads(body)["id"]

            def timed_get(path: str) -> tuple[float, bytes]:
                """Median milliseconds of 5 GETs of ``path``, and the last answer."""
                times = []
                for _ in range(5):
                    t = time.perf_counter()
                    status, answer = c.request("GET", path)
                    times.append(time.perf_counter() - t)
                    assert status == 200, answer
                return round(statistics.median(times) * 1000, 1), answer

            ms, body = timed_get(f"/api/logfiles/{lid}/series?max_points=2000")
            series = json.loads(body)
            out.update({"blackbox_years": 1.0 if args.quick else 10.0, "blackbox_logfile_bytes": len(blackbox),
                        "series_samples": series["samples"], "series_points": len(series["t_ms"]),
                        "series_body_bytes": len(body), "series_ms": ms})
            # one day in the middle of it: only that day's sample blocks are decoded
            mid = (series["t_ms"][0] + series["t_ms"][-1]) // 2
            ms, body = timed_get(f"/api/logfiles/{lid}/series?from_ms={mid}&to_ms={mid + 86_400_000}")
            out.update({"series_day_samples": json.loads(body)["samples"], "series_day_ms": ms})
        finally:
            server.terminate()
            server.wait(30)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
