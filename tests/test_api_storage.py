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
from smartlogger.errors import StoreError
from smartlogger.testing.api import backends, database_url


@pytest.mark.parametrize("kind", backends())
def test_migrations_build_exactly_the_models(kind: str) -> None:
    with database_url(kind) as (url, schema):
        engine = make_engine(url, schema=schema)
        try:
            upgrade(engine)
            upgrade(engine)  # idempotent
            assert current_revision(engine) == "0008"
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

    from smartlogger.testing.api import api_env

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
                                                  "message": "the database is unavailable; nothing was written, retry shortly"}}
            else:
                assert r.status_code == 200
            assert c.get("/api/sites", headers=h).status_code == 200


@pytest.mark.parametrize("kind", backends())
def test_upgrade_to_0004_keeps_every_row_and_reference(kind: str) -> None:
    """0004 rebuilds every SQLite table (AUTOINCREMENT): rows, ids and references survive, and no
    ON DELETE action of the old tables runs (jobs of logfiles, logfiles' test ids)."""
    from sqlalchemy import func, select, text
    from sqlalchemy.orm import Session

    from smartlogger.api.models import (
        AuditEvent,
        BatteryString,
        BatterySystem,
        CapacityTest,
        Job,
        Logfile,
        Logger,
        Organisation,
        Site,
        User,
    )

    with database_url(kind) as (url, schema):
        engine = make_engine(url, schema=schema)
        try:
            upgrade(engine, "0003")
            with Session(engine) as s:  # the columns did not change in 0004: today's models fit (but tests)
                org = Organisation(name="Acme")
                s.add(org)
                s.flush()
                user = User(org_id=org.id, email="t@acme.example", role="technician")
                site = Site(org_id=org.id, name="Plant")
                s.add_all([user, site])
                s.flush()
                system = BatterySystem(org_id=org.id, site_id=site.id, name="UPS 1")
                s.add(system)
                s.flush()
                string = BatteryString(org_id=org.id, system_id=system.id, name="A", blocks=2)
                s.add(string)
                s.flush()
                # tests gained a column in 0005 (end_voltage): insert only the columns of 0003
                test_id = s.execute(CapacityTest.__table__.insert().values(
                    org_id=org.id, string_id=string.id, load="50A", blocks=2)).inserted_primary_key[0]
                # loggers and logfiles gained columns in 0006 (custody): only the columns of 0003, and
                # no column defaults of today's models (lightweight tables)
                from sqlalchemy import JSON, column, table

                loggers_0003 = table("loggers", *(column(c) for c in (
                    "id", "org_id", "serial", "generation", "firmware", "simulated", "created_at")))
                logfiles_0003 = table("logfiles", *(column(c) for c in (
                    "id", "org_id", "sha256", "size", "logger_id", "test_id", "block_position", "format_version",
                    "verification_status", "uploaded_by", "uploaded_at", "receipt_signature")),
                    column("verification", JSON()), column("receipt", JSON()))
                logger_id = s.execute(loggers_0003.insert().returning(loggers_0003.c.id).values(
                    org_id=org.id, serial="SIM-0001", generation=2, firmware="", simulated=True,
                    created_at=user.created_at)).scalar_one()
                lf_id = s.execute(logfiles_0003.insert().returning(logfiles_0003.c.id).values(
                    org_id=org.id, sha256="ab" * 32, size=10, logger_id=logger_id, test_id=test_id,
                    block_position=0, format_version="", verification_status="verified", verification={},
                    uploaded_by=user.id, uploaded_at=user.created_at, receipt={},
                    receipt_signature="")).scalar_one()
                # jobs gained lease_until in 0007: only the columns of 0003
                jobs_0003 = table("jobs", *(column(c) for c in (
                    "org_id", "key", "kind", "logfile_id", "status", "error", "attempts", "created_at")))
                s.execute(jobs_0003.insert().values(org_id=org.id, key="k" * 64, kind="check", logfile_id=lf_id,
                                                    status="queued", error="", attempts=0,
                                                    created_at=user.created_at))
                s.add_all([AuditEvent(org_id=org.id, user_id=user.id, action="upload", object_type="logfile",
                                      object_id=lf_id)])
                s.commit()
                ids = (test_id, logger_id, user.id)
                before = {m.__tablename__: s.scalar(select(func.count()).select_from(m))
                          for m in (Organisation, User, Site, BatterySystem, BatteryString, CapacityTest, Logger,
                                    Logfile, Job, AuditEvent)}
            upgrade(engine)
            assert current_revision(engine) == "0008"
            with Session(engine) as s:
                after = {m.__tablename__: s.scalar(select(func.count()).select_from(m))
                         for m in (Organisation, User, Site, BatterySystem, BatteryString, CapacityTest, Logger,
                                   Logfile, Job, AuditEvent)}
                assert after == before and set(after.values()) == {1}
                row = s.scalars(select(Logfile)).one()
                assert (row.test_id, row.logger_id, row.uploaded_by) == ids
                assert s.scalars(select(Job)).one().logfile_id == row.id
            if kind == "sqlite":
                with engine.connect() as conn:
                    sql = dict(conn.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'table'")).all())
                    assert all("AUTOINCREMENT" in sql[t] for t in after), sql
                    assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1  # on again
        finally:
            engine.dispose()


@pytest.mark.parametrize("kind", backends())
def test_a_deleted_logfiles_id_is_never_given_to_another(kind: str, tmp_path: Path) -> None:
    from smartlogger.testing.api import api_env, simulated_logfiles

    with api_env(kind, tmp_path) as env:
        c, h = env.client, {**env.a.headers("admin"), "Content-Type": "application/octet-stream"}
        first, second = simulated_logfiles(2)
        newest = c.post("/api/logfiles", data=first, headers=h).get_json()["id"]
        env.wait_jobs()
        assert c.delete(f"/api/logfiles/{newest}", headers=h).status_code == 204
        again = c.post("/api/logfiles", data=second, headers=h).get_json()["id"]
        assert again > newest
        assert c.get(f"/api/logfiles/{newest}", headers=h).status_code == 404


def test_a_sqlite_migration_that_fails_its_reference_check_is_rolled_back_entirely(tmp_path: Path) -> None:
    """One transaction covers the rebuilds (DDL too): a dangling reference found before the commit
    leaves the database exactly as it was (revision, tables, rows)."""
    import sqlite3

    from sqlalchemy import text

    path = tmp_path / "api.db"
    engine = make_engine(f"sqlite:///{path}")
    try:
        upgrade(engine, "0003")
        raw = sqlite3.connect(path)  # foreign keys off: as a careless tool could leave a database
        raw.execute("INSERT INTO organisations (id, name, created_at) VALUES (1, 'Acme', '2026-01-01')")
        raw.execute("INSERT INTO loggers (id, org_id, serial, generation, firmware, simulated, created_at) "
                    "VALUES (1, 1, 'SIM-0001', 2, '', 0, '2026-01-01')")
        raw.execute("INSERT INTO logfiles (id, org_id, sha256, size, logger_id, block_position, format_version, "
                    "verification_status, verification, uploaded_at, receipt, receipt_signature) "
                    "VALUES (1, 1, :sha, 1, 99, 0, '', 'verified', '{}', '2026-01-01', '{}', '')",
                    {"sha": "ab" * 32})  # logger 99 does not exist
        raw.commit()
        before = raw.execute("SELECT name, sql FROM sqlite_master ORDER BY name").fetchall()
        raw.close()
        with pytest.raises(StoreError, match="broken references"):
            upgrade(engine)
        assert current_revision(engine) == "0003"
        with engine.connect() as conn:
            assert conn.execute(text("SELECT name, sql FROM sqlite_master ORDER BY name")).all() == before
            assert conn.execute(text("SELECT count(*) FROM logfiles")).scalar() == 1
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
    finally:
        engine.dispose()
