"""The sync client against a real API server on loopback: queue, backoff, exactly once, CLI."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from werkzeug.serving import make_server

from smartlogger.cli import main
from smartlogger.field.sync import QUEUE_FILE, SyncClient, backoff_s
from smartlogger.testing.api import ApiEnv, api_env, simulated_logfiles


@pytest.fixture(scope="module")
def logfiles() -> list[bytes]:
    return simulated_logfiles(2)


class FlakyMiddleware:
    """Answers the next ``fail`` requests with 503 (a fault the real server cannot make on demand)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.fail = 0
        self.seen = 0

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        self.seen += 1
        if self.fail > 0:
            self.fail -= 1
            start_response("503 Service Unavailable", [("Content-Type", "application/json")])
            return [b'{"error": {"code": "unavailable", "message": "try later"}}']
        return self.app(environ, start_response)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[ApiEnv, str, FlakyMiddleware]]:
    with api_env("sqlite", tmp_path / "server") as env:
        flaky = FlakyMiddleware(env.app)
        srv = make_server("127.0.0.1", 0, flaky, threaded=True)
        thread = threading.Thread(target=srv.serve_forever, daemon=True)
        thread.start()
        try:
            yield env, f"http://127.0.0.1:{srv.server_port}/api", flaky
        finally:
            srv.shutdown()
            thread.join()


def _work_folder(root: Path, logfiles: list[bytes], blocks: int = 3) -> Path:
    """A work folder with a test of ``blocks`` blocks (3: incomplete, so no analysis job runs)."""
    test_dir = root / "work" / "2026-11-21 UPS A string 1"
    test_dir.mkdir(parents=True)
    (test_dir / "test.json").write_text(json.dumps({"load": "50A", "rated_time": "2h", "blocks": blocks,
                                                    "name": "UPS A string 1", "metadata": {"site": "DC-1"}}))
    for i, data in enumerate(logfiles):
        (test_dir / f"SIM-000{i + 1}.slog").write_bytes(data)
    (root / "work" / "copy-of-first.slog").write_bytes(logfiles[0])  # same content, other name
    return root / "work"


def _closed_port() -> str:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}/api"


def test_sync_uploads_once_then_nothing(server: tuple[ApiEnv, str, FlakyMiddleware], tmp_path: Path,
                                       logfiles: list[bytes]) -> None:
    env, url, _ = server
    work = _work_folder(tmp_path, logfiles, blocks=2)
    token = env.a.tokens["technician"]
    first = SyncClient(url, token, work).run()
    assert (first.uploaded, first.duplicates, first.tests, first.pending) == (2, 0, 1, 0), first
    env.wait_jobs()
    c, h = env.client, env.a.headers("viewer")
    tests = c.get("/api/tests", headers=h).get_json()
    assert len(tests) == 1 and tests[0]["logfiles"] == 2 and tests[0]["metadata"] == {"site": "DC-1", "test_name": "UPS A string 1",
                                                                               "rating": "rated time 2h"}
    assert tests[0]["status"] == "analysed"
    again = SyncClient(url, token, work).run()
    assert (again.uploaded, again.duplicates, again.tests, again.pending) == (0, 0, 0, 0)
    # The queue is gone (phone reset): the server still keeps exactly one copy of each file.
    (work / QUEUE_FILE).unlink()
    lost = SyncClient(url, token, work).run()
    assert (lost.uploaded, lost.duplicates) == (0, 2)
    assert len(c.get("/api/logfiles", headers=h).get_json()) == 2
    assert len(c.get("/api/tests", headers=h).get_json()) == 1  # the test matched by its client key


def test_no_network_keeps_the_queue_and_backs_off(tmp_path: Path, logfiles: list[bytes]) -> None:
    """The server's address does not answer (basement, no network); later it does: the same
    server (URL and organisation), so the backoff of the queue applies, then everything goes up."""
    with api_env("sqlite", tmp_path / "server") as env:
        port = int(_closed_port().split(":")[2].split("/")[0])
        url = f"http://127.0.0.1:{port}/api"
        work = _work_folder(tmp_path, logfiles)
        token = env.a.tokens["technician"]
        waits: list[float] = []
        now = [1_000_000.0]
        offline = SyncClient(url, token, work, sleep=waits.append, clock=lambda: now[0]).run()
        assert offline.uploaded == 0 and offline.pending == 2 and "no connection" in offline.errors[0]
        assert offline.organisation == ""  # not known without a connection
        assert len(waits) == 3 and waits[0] < waits[1] < waits[2]  # exponential backoff within the run
        srv = make_server("127.0.0.1", port, env.app, threaded=True)  # the server comes up
        thread = threading.Thread(target=srv.serve_forever, daemon=True)
        thread.start()
        try:
            # Back online, but before the backoff expired: nothing is due yet.
            early = SyncClient(url, token, work, sleep=waits.append, clock=lambda: now[0]).run()
            assert early.uploaded == 0 and early.pending == 2 and early.organisation == "Acme Service"
            now[0] += 3600
            online = SyncClient(url, token, work, sleep=waits.append, clock=lambda: now[0]).run()
            assert online.uploaded == 2 and online.pending == 0
        finally:
            srv.shutdown()
            thread.join()


def test_transient_server_errors_are_retried(server: tuple[ApiEnv, str, FlakyMiddleware], tmp_path: Path,
                                             logfiles: list[bytes]) -> None:
    env, url, flaky = server
    work = _work_folder(tmp_path, logfiles)
    waits: list[float] = []
    flaky.fail = 2
    r = SyncClient(url, env.a.tokens["technician"], work, sleep=waits.append).run()
    assert r.uploaded == 2 and r.pending == 0 and len(waits) == 2 and flaky.fail == 0


def test_rejected_file_is_reported_and_not_retried(server: tuple[ApiEnv, str, FlakyMiddleware], tmp_path: Path,
                                                   logfiles: list[bytes]) -> None:
    env, url, flaky = server
    work = tmp_path / "work"
    work.mkdir()
    (work / "broken.slog").write_bytes(logfiles[0][:1000])
    r = SyncClient(url, env.a.tokens["technician"], work).run()
    assert r.uploaded == 0 and len(r.rejected) == 1 and "truncated" in r.rejected[0]["message"]
    seen = flaky.seen
    r2 = SyncClient(url, env.a.tokens["technician"], work).run()
    assert r2.rejected == [] and flaky.seen == seen + 1  # only 'who am I here' (GET /api/me), no upload


def test_viewer_token_is_refused_and_queue_kept(server: tuple[ApiEnv, str, FlakyMiddleware], tmp_path: Path,
                                                logfiles: list[bytes]) -> None:
    from smartlogger.field.sync import SyncError

    env, url, _ = server
    work = _work_folder(tmp_path, logfiles)
    with pytest.raises(SyncError, match="refused the token"):
        SyncClient(url, env.a.tokens["viewer"], work).run()
    assert SyncClient(url, env.a.tokens["technician"], work).run().uploaded == 2


def test_backoff_grows_and_is_capped() -> None:
    import random

    rng = random.Random(1)
    delays = [backoff_s(n, rng) for n in range(1, 15)]
    assert delays[0] < 1.3 and delays[3] > 6 and max(delays) <= 300 * 1.2


def test_cli_admin_then_sync(server: tuple[ApiEnv, str, FlakyMiddleware], tmp_path: Path,
                             logfiles: list[bytes]) -> None:
    env, url, _ = server
    runner = CliRunner()
    db = ["admin", "--database-url", env.url]
    out = runner.invoke(main, [*db, "create-org", "Field Co", "--json"])
    assert out.exit_code == 0, out.output
    assert runner.invoke(main, [*db, "create-org", "Field Co"]).exit_code == 2  # exists: one-line error
    out = runner.invoke(main, [*db, "create-user", "--org", "Field Co", "--email", "tech@field.example",
                               "--role", "technician", "--json"])
    assert out.exit_code == 0 and json.loads(out.output)["role"] == "technician"
    out = runner.invoke(main, [*db, "issue-token", "--email", "tech@field.example", "--json"])
    token = json.loads(out.output)["token"]
    work = _work_folder(tmp_path, logfiles)
    out = runner.invoke(main, ["sync", "--api", url, "--token", token, "--dir", str(work), "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["uploaded"] == 2
    tid = json.loads(runner.invoke(main, [*db, "issue-token", "--email", "tech@field.example", "--json"]
                                   ).output)["id"]
    assert runner.invoke(main, [*db, "revoke-token", str(tid)]).exit_code == 0
    (work / "broken.slog").write_bytes(b"\x89SLOG\r\n\x1a\x02\x00")
    out = runner.invoke(main, ["sync", "--api", url, "--token", token, "--dir", str(work)])
    assert out.exit_code == 4 and "rejected" in out.output


def test_test_metadata_edits_are_sent_and_a_refused_test_holds_its_logfiles(
        server: tuple[ApiEnv, str, FlakyMiddleware], tmp_path: Path, logfiles: list[bytes]) -> None:
    env, url, _ = server
    token = env.a.tokens["technician"]
    work = _work_folder(tmp_path, logfiles)
    meta_file = next(work.rglob("test.json"))
    meta = json.loads(meta_file.read_text())
    meta_file.write_text(json.dumps({**meta, "load": "lots of amps"}))
    refused = SyncClient(url, token, work).run()
    assert refused.rejected and "load" in refused.rejected[0]["message"]
    assert refused.uploaded == 0 and refused.pending == 2  # the test's files wait for it
    c, h = env.client, env.a.headers("viewer")
    assert c.get("/api/tests", headers=h).get_json() == []
    meta_file.write_text(json.dumps(meta))  # fixed on the phone
    fixed = SyncClient(url, token, work).run()
    assert (fixed.tests, fixed.uploaded, fixed.pending, fixed.rejected) == (1, 2, 0, [])
    # A later edit of the test's metadata is sent as a PATCH of the same test.
    meta_file.write_text(json.dumps({**meta, "rated_time": "3h", "metadata": {"site": "DC-2"}}))
    edited = SyncClient(url, token, work).run()
    assert (edited.tests, edited.uploaded, edited.rejected) == (0, 0, [])
    tests = c.get("/api/tests", headers=h).get_json()
    assert len(tests) == 1 and tests[0]["rated_time"] == "3h" and tests[0]["metadata"] == {"site": "DC-2", "test_name": "UPS A string 1",
                                                                                  "rating": "rated time 3h"}
    assert tests[0]["logfiles"] == 2


@pytest.fixture
def two_servers(tmp_path: Path) -> Iterator[list[tuple[ApiEnv, str]]]:
    """The company's old server and its new one: separate databases, separate organisations."""
    from contextlib import ExitStack

    with ExitStack() as stack:
        out = []
        for name in ("old", "new"):
            env = stack.enter_context(api_env("sqlite", tmp_path / name))
            srv = make_server("127.0.0.1", 0, env.app, threaded=True)
            thread = threading.Thread(target=srv.serve_forever, daemon=True)
            thread.start()
            stack.callback(thread.join)
            stack.callback(srv.shutdown)
            out.append((env, f"http://127.0.0.1:{srv.server_port}/api"))
        yield out


def test_a_new_server_gets_everything_and_status_says_what_is_where(
        two_servers: list[tuple[ApiEnv, str]], tmp_path: Path, logfiles: list[bytes]) -> None:
    (old, old_url), (new, new_url) = two_servers
    work = _work_folder(tmp_path, logfiles, blocks=2)
    first = SyncClient(old_url, old.a.tokens["technician"], work).run()
    assert (first.uploaded, first.tests, first.pending) == (2, 1, 0)
    # The case: the queue remembered the uploads without remembering where to.
    second = SyncClient(new_url, new.a.tokens["technician"], work).run()
    assert (second.uploaded, second.duplicates, second.tests, second.pending) == (2, 0, 1, 0), second
    assert len(new.client.get("/api/logfiles", headers=new.a.headers("viewer")).get_json()) == 2
    # Again to the old one: nothing new there.
    again = SyncClient(old_url, old.a.tokens["technician"], work).run()
    assert (again.uploaded, again.duplicates, again.tests) == (0, 0, 0)
    res = CliRunner().invoke(main, ["sync", "--status", "--dir", str(work), "--json"])
    assert res.exit_code == 0, res.output
    st = json.loads(res.output)
    assert st["logfiles"] == 2 and st["tests"] == 1
    assert [(s["api"], s["on_server"], s["waiting"]) for s in st["servers"]] == [(old_url, 2, 0), (new_url, 2, 0)]
    assert all(s["organisation"] == "Acme Service" and s["tests"][0]["test_id"] == 1 for s in st["servers"])
    # A pull added to the folder: waiting for both, until each has it.
    (work / "late.slog").write_bytes(simulated_logfiles(3)[2])
    res = CliRunner().invoke(main, ["sync", "--status", "--dir", str(work)])
    assert res.output.count("1 waiting") == 2, res.output


def test_sync_creates_site_system_and_string_so_the_test_is_in_the_app(
        server: tuple[ApiEnv, str, FlakyMiddleware], tmp_path: Path, logfiles: list[bytes]) -> None:
    env, url, _ = server
    folder = tmp_path / "work" / "ups-a"
    res = CliRunner().invoke(main, ["test", "new", str(folder), "--site", "Data centre North", "--customer", "Bank",
                                    "--system", "UPS A", "--string", "String 1", "--blocks", "2",
                                    "--load", "50A", "--rated-time", "2h", "--make", "CSB",
                                    "--rated-ah", "100", "--tz", "Europe/Berlin"])
    assert res.exit_code == 0, res.output
    for i, data in enumerate(logfiles):
        (folder / f"SIM-000{i + 1}.slog").write_bytes(data)
    res = CliRunner().invoke(main, ["sync", "--api", url, "--token", env.a.tokens["technician"],
                                    "--dir", str(tmp_path / "work")])
    assert res.exit_code == 0, res.output
    assert "in the app: " in res.output and "/app/#/tests/1" in res.output
    c, h = env.client, env.a.headers("viewer")
    (site,) = c.get("/api/sites", headers=h).get_json()
    assert (site["name"], site["customer"]) == ("Data centre North", "Bank")
    (system,) = c.get(f"/api/systems?site_id={site['id']}", headers=h).get_json()
    (string,) = c.get(f"/api/strings?system_id={system['id']}", headers=h).get_json()
    assert (system["name"], string["name"], string["blocks"]) == ("UPS A", "String 1", 2)
    (test,) = c.get(f"/api/tests?string_id={string['id']}", headers=h).get_json()
    assert test["logfiles"] == 2 and test["metadata"]["battery.make"] == "CSB"
    assert test["metadata"]["tz"] == "Europe/Berlin"
    # A colleague syncs a copy of the folder from another laptop: the same site, string and test.
    other = tmp_path / "laptop2"
    import shutil

    shutil.copytree(folder, other / "ups-a")
    (other / "ups-a" / ".smartlogger-sync.sqlite").unlink(missing_ok=True)
    again = SyncClient(url, env.a.tokens["technician"], other).run()
    assert (again.uploaded, again.duplicates, again.rejected) == (0, 2, [])
    assert len(c.get("/api/sites", headers=h).get_json()) == 1
    assert len(c.get("/api/tests", headers=h).get_json()) == 1


def test_a_queue_from_before_servers_were_told_apart_is_migrated(
        server: tuple[ApiEnv, str, FlakyMiddleware], tmp_path: Path, logfiles: list[bytes]) -> None:
    import sqlite3

    env, url, _ = server
    work = _work_folder(tmp_path, logfiles, blocks=2)
    db = sqlite3.connect(work / QUEUE_FILE)  # the old layout, every file marked uploaded (somewhere)
    db.executescript("""
        CREATE TABLE tests (folder TEXT PRIMARY KEY, meta_sha256 TEXT NOT NULL, client_key TEXT NOT NULL,
                            remote_id INTEGER, dirty INTEGER NOT NULL DEFAULT 1, error TEXT NOT NULL DEFAULT '');
        CREATE TABLE logfiles (sha256 TEXT PRIMARY KEY, path TEXT NOT NULL, folder TEXT NOT NULL,
                               status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
                               next_attempt REAL NOT NULL DEFAULT 0, last_error TEXT NOT NULL DEFAULT '',
                               remote_id INTEGER);
        INSERT INTO logfiles VALUES ('x', 'a.slog', '', 'uploaded', 0, 0, '', 1);
    """)
    db.commit()
    db.close()
    r = SyncClient(url, env.a.tokens["technician"], work).run()
    assert r.uploaded == 2 and r.pending == 0
    assert any("did not record which server" in n for n in r.notes)
