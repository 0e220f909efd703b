"""Security behaviour: expiry, rate limit, CORS, no stack traces, fail-closed guard, server key, RQ jobs."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest
from sqlalchemy import select, update

from smartlogger.api.db import database
from smartlogger.api.models import ApiToken
from smartlogger.testing.api import api_env, simulated_logfiles

ORIGIN = "https://app.smartlogger.example"


def test_expired_token_is_refused(tmp_path: Path) -> None:
    with api_env("sqlite", tmp_path) as env:
        c, h = env.client, env.a.headers("viewer")
        assert c.get("/api/me", headers=h).status_code == 200
        with database(env.app).system_session() as s:
            s.execute(update(ApiToken).values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)))
        r = c.get("/api/me", headers=h)
        assert r.status_code == 401 and r.get_json()["error"]["message"] == "token expired"
        assert r.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize("shared", [False, True], ids=["in-process", "redis"])
def test_rate_limit_per_token(tmp_path: Path, shared: bool) -> None:
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")
    if shared:
        redis = pytest.importorskip("redis")
        try:
            redis.Redis.from_url(redis_url).ping()
        except Exception:
            pytest.skip("no Redis server")
    # Only the limits on Redis; jobs stay in-process for this test.
    with api_env("sqlite", tmp_path, RATE_LIMIT_PER_MINUTE=5,
                 RATE_LIMIT_STORAGE_URL=redis_url if shared else None) as env:
        c = env.client
        codes = [c.get("/api/me", headers=env.a.headers("viewer")).status_code for _ in range(6)]
        if codes[0] == 429:  # the minute window turned over on a shared counter of an earlier run
            codes = [c.get("/api/me", headers=env.a.headers("viewer")).status_code for _ in range(6)]
        assert codes.count(200) <= 5 and codes[-1] == 429
        r = c.get("/api/me", headers=env.a.headers("viewer"))
        assert r.get_json()["error"]["code"] == "rate_limited" and 1 <= int(r.headers["Retry-After"]) <= 60
        # Another token has its own budget.
        assert c.get("/api/me", headers=env.a.headers("admin")).status_code == 200


def test_cors_only_for_the_apps_origin(tmp_path: Path) -> None:
    with api_env("sqlite", tmp_path, CORS_ORIGIN=ORIGIN) as env:
        c, h = env.client, env.a.headers("viewer")
        ok = c.get("/api/me", headers={**h, "Origin": ORIGIN})
        assert ok.headers["Access-Control-Allow-Origin"] == ORIGIN
        evil = c.get("/api/me", headers={**h, "Origin": "https://evil.example"})
        assert "Access-Control-Allow-Origin" not in evil.headers
        pre = c.options("/api/logfiles", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"})
        assert pre.status_code == 204 and pre.headers["Access-Control-Allow-Origin"] == ORIGIN
        assert "Authorization" in pre.headers["Access-Control-Allow-Headers"]
        bad = c.options("/api/logfiles", headers={"Origin": "https://evil.example"})
        assert bad.status_code == 403 and "Access-Control-Allow-Origin" not in bad.headers
        assert ok.headers["X-Content-Type-Options"] == "nosniff"


def test_unexpected_error_has_no_stack_trace_and_unguarded_view_is_refused(tmp_path: Path) -> None:
    with api_env("sqlite", tmp_path) as env:
        app = env.app

        def boom() -> str:
            raise RuntimeError("secret detail /etc/passwd")

        boom._sl_role = "viewer"  # type: ignore[attr-defined]
        app.add_url_rule("/api/boom", "boom", boom)

        def unguarded() -> str:
            return "data of every tenant"

        app.add_url_rule("/api/unguarded", "unguarded", unguarded)
        c = app.test_client()
        r = c.get("/api/boom")
        assert r.status_code == 500
        assert r.get_json() == {"error": {"code": "internal", "message": "internal server error"}}
        assert b"secret" not in r.data and b"Traceback" not in r.data
        r = c.get("/api/unguarded", headers=env.a.headers("admin"))
        assert r.status_code == 500 and b"every tenant" not in r.data


def test_server_key_survives_restart(tmp_path: Path) -> None:
    from smartlogger.testing.api import make_app

    with api_env("sqlite", tmp_path) as env:
        key1 = env.client.get("/api/server-key", headers=env.a.headers("viewer")).get_json()["fingerprint"]
        app2 = make_app(tmp_path, env.url, env.schema)
        assert app2.extensions["smartlogger_key"].fingerprint == key1
        app2.extensions["smartlogger_jobs"].close()
        app2.extensions["smartlogger_db"].dispose()
        assert (tmp_path / "server_key.pem").stat().st_mode & 0o077 == 0


def test_jobs_on_rq_with_a_real_redis(tmp_path: Path) -> None:
    redis = pytest.importorskip("redis")
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/14")
    try:
        redis.Redis.from_url(url).ping()
    except Exception:
        pytest.skip("no Redis server")
    from rq import Queue, SimpleWorker

    from smartlogger.api import queue, rqworker

    queue_name = f"smartlogger-test-{os.getpid()}"
    with api_env("sqlite", tmp_path, REDIS_URL=url, RQ_QUEUE=queue_name) as env:
        assert isinstance(env.app.extensions["smartlogger_jobs"], queue.RQRunner)
        rqworker._RQ_APP = env.app  # the worker process would build this app from its environment
        try:
            c, h = env.client, env.a.headers("technician")
            tid = c.post("/api/tests", headers=h, json={"load": "50A", "blocks": 2, "rated_time": "2h"}).get_json()["id"]
            for data in simulated_logfiles(2):
                c.post(f"/api/logfiles?test_id={tid}", headers=h, data=data, content_type="application/octet-stream")
            assert c.get(f"/api/tests/{tid}", headers=h).get_json()["status"] == "analysing"
            conn = redis.Redis.from_url(url)
            q = Queue(queue_name, connection=conn)
            SimpleWorker([q], connection=conn).work(burst=True)  # analysis, then the report it enqueues
            assert c.get(f"/api/tests/{tid}", headers=h).get_json()["status"] == "analysed"
            assert c.get(f"/api/tests/{tid}/report", headers=h).get_json()["status"] == "ready"
            q.delete(delete_jobs=True)
        finally:
            rqworker._RQ_APP = None


def test_tokens_are_stored_hashed(tmp_path: Path) -> None:
    with api_env("sqlite", tmp_path) as env, database(env.app).system_session() as s:
        stored = {t.token_sha256 for t in s.scalars(select(ApiToken))}
        assert not any(tok in stored for tok in env.a.tokens.values())
        import hashlib

        assert hashlib.sha256(env.a.tokens["admin"].encode()).hexdigest() in stored


def test_thread_runner_recovers_jobs_lost_in_a_restart(tmp_path: Path) -> None:
    from smartlogger.api.models import Job
    from smartlogger.testing.api import make_app

    with api_env("sqlite", tmp_path) as env:
        c, h = env.client, env.a.headers("technician")
        tid = c.post("/api/tests", headers=h, json={"load": "50A", "blocks": 1}).get_json()["id"]
        with database(env.app).system_session() as s:  # as if the process died with the job queued
            s.add(Job(org_id=env.a.org_id, key="lost-job", kind="analyse", test_id=tid, status="running"))
        app2 = make_app(tmp_path, env.url, env.schema)  # the restart
        try:
            assert app2.extensions["smartlogger_jobs"].wait_idle(60)
            with database(app2).system_session() as s:
                job = s.scalar(select(Job).where(Job.key == "lost-job"))
                assert job is not None and job.status == "failed" and "no logfiles" in job.error
        finally:
            app2.extensions["smartlogger_jobs"].close()
            app2.extensions["smartlogger_db"].dispose()


def test_token_cache_forgets_revoked_tokens_and_changed_users_at_once(tmp_path: Path) -> None:
    with api_env("sqlite", tmp_path, AUTH_CACHE_SECONDS=300) as env:
        c, admin = env.client, env.a.headers("admin")
        tok = c.post("/api/tokens", headers=env.a.headers("technician"), json={}).get_json()
        h = {"Authorization": f"Bearer {tok['token']}"}
        assert c.post("/api/sites", headers=h, json={"name": "x"}).status_code == 201  # cached now
        c.patch(f"/api/users/{env.a.user_ids['technician']}", headers=admin, json={"role": "viewer"})
        assert c.post("/api/sites", headers=h, json={"name": "y"}).status_code == 403
        c.delete(f"/api/tokens/{tok['id']}", headers=admin)
        assert c.get("/api/me", headers=h).status_code == 401
        # Revoked elsewhere (the CLI): honoured once the cache entry ages out (300 s here).
        viewer = env.a.headers("viewer")
        assert c.get("/api/me", headers=viewer).status_code == 200
        env.admin.revoke_token(next(t["id"] for t in c.get("/api/tokens", headers=admin).get_json()
                                    if t["user_id"] == env.a.user_ids["viewer"]))
        assert c.get("/api/me", headers=viewer).status_code == 200
        env.app.extensions["smartlogger_tokencache"].ttl_s = 0
        assert c.get("/api/me", headers=viewer).status_code == 401


def test_results_etag(tmp_path: Path) -> None:
    with api_env("sqlite", tmp_path) as env:
        c, h = env.client, env.a.headers("technician")
        tid = c.post("/api/tests", headers=h, json={"load": "50A", "blocks": 2, "rated_time": "2h"}).get_json()["id"]
        for data in simulated_logfiles(2):
            c.post(f"/api/logfiles?test_id={tid}", headers=h, data=data, content_type="application/octet-stream")
        env.wait_jobs()
        r = c.get(f"/api/tests/{tid}/results", headers=h)
        assert r.status_code == 200 and r.headers["ETag"].strip('"') == r.get_json()["inputs_sha256"]
        again = c.get(f"/api/tests/{tid}/results", headers={**h, "If-None-Match": r.headers["ETag"]})
        assert again.status_code == 304 and again.data == b""


def test_behind_a_reverse_proxy_the_client_address_is_audited(tmp_path: Path) -> None:
    from smartlogger.testing.api import simulated_logfiles as sl

    with api_env("sqlite", tmp_path, PROXY_FIX=1) as env:
        c = env.client
        c.post("/api/logfiles", headers=env.a.headers("technician", **{"X-Forwarded-For": "203.0.113.7"}),
               data=sl(1)[0], content_type="application/octet-stream")
        event = c.get("/api/audit", headers=env.a.headers("admin")).get_json()[0]
        assert event["action"] == "upload" and event["remote_addr"] == "203.0.113.7"


def test_a_queue_outage_fails_the_job_not_the_upload(tmp_path: Path) -> None:
    from smartlogger.api.queue import RQRunner

    with api_env("sqlite", tmp_path) as env:
        dead = RQRunner("redis://127.0.0.1:1/0")  # nothing listens on port 1: a real refused connection
        threads = env.app.extensions["smartlogger_jobs"]
        env.app.extensions["smartlogger_jobs"] = dead
        try:
            c, h = env.client, env.a.headers("technician")
            tid = c.post("/api/tests", headers=h, json={"load": "50A", "blocks": 1}).get_json()["id"]
            r = c.post(f"/api/logfiles?test_id={tid}", headers=h, data=simulated_logfiles(1)[0],
                       content_type="application/octet-stream")
            assert r.status_code == 201  # the logfile is kept
            test = c.get(f"/api/tests/{tid}", headers=h).get_json()
            assert test["status"] == "failed"
            job = c.post(f"/api/tests/{tid}/analyse", headers=h).get_json()
            assert job["status"] == "failed" and "could not queue" in job["error"]
        finally:
            dead.close()
            env.app.extensions["smartlogger_jobs"] = threads


def test_receipt_signature_covers_every_field() -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from smartlogger.api.receipts import ServerKey, verify_receipt

    key = ServerKey(Ed25519PrivateKey.from_private_bytes(bytes(range(32))))
    values = st.one_of(st.integers(-(2**53), 2**53), st.text(max_size=20), st.booleans(), st.none())

    @settings(max_examples=60, deadline=None)
    @given(body=st.dictionaries(st.text(min_size=1, max_size=10), values, min_size=1, max_size=8),
           data=st.data())
    def check(body: dict[str, object], data: st.DataObject) -> None:
        sig = key.sign(body)
        assert verify_receipt(body, sig, key.public_raw)
        assert verify_receipt(dict(reversed(list(body.items()))), sig, key.public_pem())  # order-free
        field = data.draw(st.sampled_from(sorted(body)))
        changed = {**body, field: data.draw(values.filter(lambda v: v != body[field] or type(v) is not type(body[field])))}
        if changed != body:
            assert not verify_receipt(changed, sig, key.public_raw)

    check()
