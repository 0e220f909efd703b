"""Storage: migrations match the models (SQLite and PostgreSQL), the file store, `smartlogger serve`."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from smartlogger.api.db import make_engine
from smartlogger.api.filestore import LocalFileStore
from smartlogger.api.migrate import current_revision, upgrade
from smartlogger.api.models import Base
from smartlogger.api.testing import backends, database_url
from smartlogger.errors import StoreError


@pytest.mark.parametrize("kind", backends())
def test_migrations_build_exactly_the_models(kind: str) -> None:
    with database_url(kind) as (url, schema):
        engine = make_engine(url, schema=schema)
        try:
            upgrade(engine)
            upgrade(engine)  # idempotent
            assert current_revision(engine) == "0003"
            with engine.connect() as conn:
                diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
            assert diff == []
        finally:
            engine.dispose()


@pytest.mark.parametrize("kind", backends())
def test_upgrade_keeps_existing_rows(kind: str) -> None:
    """A database made by the first release (0001) with data in it upgrades to head."""
    from sqlalchemy import text

    with database_url(kind) as (url, schema):
        engine = make_engine(url, schema=schema)
        try:
            upgrade(engine, "0001")
            with engine.begin() as conn:
                conn.execute(text("INSERT INTO organisations (id, name, created_at) VALUES (1, 'Acme', :t)"),
                             {"t": "2026-01-01T00:00:00+00:00"})
                conn.execute(text("INSERT INTO sites (id, org_id, name, address, created_at) "
                                  "VALUES (1, 1, 'Plant', '', :t)"), {"t": "2026-01-01T00:00:00+00:00"})
            upgrade(engine)
            with engine.connect() as conn:
                assert conn.execute(text("SELECT name, customer FROM sites")).one() == ("Plant", "")
        finally:
            engine.dispose()


def test_local_file_store(tmp_path: Path) -> None:
    store = LocalFileStore(tmp_path / "blobs")
    data = b"\x89SLOG\r\n\x1a example"
    digest = store.put(data)
    assert digest == hashlib.sha256(data).hexdigest() and store.put(data) == digest
    assert store.get(digest) == data and store.exists(digest)
    blob = tmp_path / "blobs" / digest[:2] / digest  # one level of fan-out
    assert blob.read_bytes() == data
    blob.write_bytes(b"rotted")  # damage on disk is noticed, never served
    with pytest.raises(StoreError, match="damaged"):
        store.get(digest)
    store.delete(digest)
    assert not store.exists(digest)
    with pytest.raises(StoreError, match="not in the file store"):
        store.get(digest)
    with pytest.raises(StoreError, match="not a SHA-256"):
        store.get("../../etc/passwd")
    assert [p.name for p in (tmp_path / "blobs").rglob(".tmp-*")] == []


def test_local_file_store_reads_the_legacy_two_level_layout(tmp_path: Path) -> None:
    """Blobs of a store written with two levels of fan-out stay readable, known and deletable."""
    data = b"\x89SLOG\r\n\x1a stored by an earlier build"
    digest = hashlib.sha256(data).hexdigest()
    legacy = tmp_path / "blobs" / digest[:2] / digest[2:4] / digest
    legacy.parent.mkdir(parents=True)
    legacy.write_bytes(data)
    store = LocalFileStore(tmp_path / "blobs")
    assert store.exists(digest) and store.get(digest) == data
    assert store.put(data) == digest and not (tmp_path / "blobs" / digest[:2] / digest).exists()
    legacy.write_bytes(b"rotted")
    with pytest.raises(StoreError, match="damaged"):
        store.get(digest)
    store.delete(digest)
    assert not legacy.exists() and not store.exists(digest)


@pytest.mark.slow
def test_serve_works_with_zero_setup(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTLOGGER_") and k != "REDIS_URL"}
    proc = subprocess.Popen([sys.executable, "-c", "from smartlogger.cli import main; main()", "serve",
                             "--data", str(tmp_path / "d"),
                             "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
                assert time.monotonic() < deadline, "serve did not come up"
                time.sleep(0.1)  # polling a child process, not waiting for a result
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/openapi.json", timeout=5) as r:
            assert b'"/api/logfiles"' in r.read()
    finally:
        proc.terminate()
        proc.wait(10)
    assert (tmp_path / "d" / "smartlogger.db").exists() and (tmp_path / "d" / "server_key.pem").exists()


def _terminate_backends(url: str, pids: set[int]) -> None:
    """Make PostgreSQL drop these connections (as a restart or an idle timeout would)."""
    from sqlalchemy import text

    admin = make_engine(url)
    try:
        with admin.connect() as conn:
            for pid in pids:
                conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
            conn.commit()
            for _ in range(500):  # until the server has closed them
                left = conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(:p)"),
                                    {"p": list(pids)}).scalar()
                conn.rollback()
                if not left:
                    return
                time.sleep(0.01)
            raise AssertionError(f"backends {pids} still alive")
    finally:
        admin.dispose()


@pytest.mark.skipif("postgresql" not in backends(), reason="needs SMARTLOGGER_TEST_DATABASE_URL")
def test_pool_replaces_connections_the_server_dropped_while_idle() -> None:
    """A pooled connection unused for longer than ``ping_after_idle_s`` is tested on checkout and
    replaced if the server dropped it; one in steady use is not tested (no round trip), so a drop
    shows on its next statement as a disconnect, and the pool then starts over."""
    from sqlalchemy import exc, text

    with database_url("postgresql") as (url, schema):
        for after_s, survives in ((0.0, True), (3600.0, False)):
            engine = make_engine(url, schema=schema, ping_after_idle_s=after_s)
            try:
                with engine.connect() as conn:
                    old = conn.execute(text("SELECT pg_backend_pid()")).scalar()
                _terminate_backends(url, {old})
                if survives:
                    with engine.connect() as conn:
                        assert conn.execute(text("SELECT pg_backend_pid()")).scalar() != old
                else:
                    with pytest.raises(exc.DBAPIError) as info, engine.connect() as conn:
                        conn.execute(text("SELECT 1"))
                    assert info.value.connection_invalidated
                    with engine.connect() as conn:  # the pool started over
                        assert conn.execute(text("SELECT pg_backend_pid()")).scalar() != old
            finally:
                engine.dispose()


@pytest.mark.skipif("postgresql" not in backends(), reason="needs SMARTLOGGER_TEST_DATABASE_URL")
def test_api_answers_503_when_the_database_connection_is_lost(tmp_path: Path) -> None:
    """A request whose connection the server dropped gets the JSON 503 (retry), not a 500 or a
    trace; the next request works. With the idle check it never sees the drop at all."""
    from sqlalchemy import text

    from smartlogger.api.testing import api_env

    for after_s in (3600.0, 0.0):
        with api_env("postgresql", tmp_path / str(after_s), DB_PING_AFTER_IDLE_SECONDS=after_s) as env:
            c, h = env.client, env.a.headers("viewer")
            assert c.get("/api/sites", headers=h).status_code == 200
            engine = env.app.extensions["smartlogger_db"].engine
            pool = engine.pool
            with engine.connect() as conn:  # the pooled connection the request used
                pid = conn.execute(text("SELECT pg_backend_pid()")).scalar()
            assert pool.checkedin() == 1
            _terminate_backends(url=env.url, pids={pid})
            r = c.get("/api/sites", headers=h)
            if after_s:
                assert r.status_code == 503 and r.headers["Retry-After"] == "1"
                assert r.get_json() == {"error": {"code": "unavailable",
                                                  "message": "the database is unavailable; retry shortly"}}
            else:
                assert r.status_code == 200
            assert c.get("/api/sites", headers=h).status_code == 200
