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
    blob = tmp_path / "blobs" / digest[:2] / digest[2:4] / digest
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
