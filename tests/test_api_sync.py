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
    assert len(tests) == 1 and tests[0]["logfiles"] == 2 and tests[0]["metadata"] == {"site": "DC-1"}
    assert tests[0]["status"] == "analysed"
    again = SyncClient(url, token, work).run()
    assert (again.uploaded, again.duplicates, again.tests, again.pending) == (0, 0, 0, 0)
    # The queue is gone (phone reset): the server still keeps exactly one copy of each file.
    (work / QUEUE_FILE).unlink()
    lost = SyncClient(url, token, work).run()
    assert (lost.uploaded, lost.duplicates) == (0, 2)
    assert len(c.get("/api/logfiles", headers=h).get_json()) == 2
    assert len(c.get("/api/tests", headers=h).get_json()) == 1  # the test matched by its client key


def test_no_network_keeps_the_queue_and_backs_off(server: tuple[ApiEnv, str, FlakyMiddleware], tmp_path: Path,
                                                  logfiles: list[bytes]) -> None:
    env, url, _ = server
    work = _work_folder(tmp_path, logfiles)
    token = env.a.tokens["technician"]
    waits: list[float] = []
    now = [1_000_000.0]
    offline = SyncClient(_closed_port(), token, work, sleep=waits.append, clock=lambda: now[0]).run()
    assert offline.uploaded == 0 and offline.pending == 2 and "no connection" in offline.errors[0]
    assert len(waits) == 3 and waits[0] < waits[1] < waits[2]  # exponential backoff within the run
    # Back online, but before the backoff expired: nothing is due yet.
    early = SyncClient(url, token, work, sleep=waits.append, clock=lambda: now[0]).run()
    assert early.uploaded == 0 and early.pending == 2
    now[0] += 3600
    online = SyncClient(url, token, work, sleep=waits.append, clock=lambda: now[0]).run()
    assert online.uploaded == 2 and online.pending == 0


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
    assert r2.rejected == [] and flaky.seen == seen  # no request at all


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
    assert len(tests) == 1 and tests[0]["rated_time"] == "3h" and tests[0]["metadata"] == {"site": "DC-2"}
    assert tests[0]["logfiles"] == 2
