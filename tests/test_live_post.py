"""Posting the live state (``smartlogger test watch --post``): the poster drops what a slow server
cannot take and never blocks; a watch of a virtual site posts to a live API server, keeps
watching (and alarms) while that server is down, and posts again when it is back."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from site_support import SMARTLOGGER, cleanup, cli, wait_for
from test_live_watch import _lines, _next_json
from werkzeug.serving import make_server

from smartlogger.field.livepost import MAX_POST_BLOCKS, LivePoster, PostError, live_body
from smartlogger.testing.api import api_env


def test_the_poster_never_blocks_drops_intermediate_states_and_recovers() -> None:
    gate = threading.Event()
    calls: list[tuple[str, str, Any]] = []
    fail = [True]

    def request(method: str, path: str, body: Any) -> Any:
        calls.append((method, path, body))
        if fail[0]:
            raise PostError("no connection: refused")
        gate.wait(10)  # a slow server
        return {}

    p = LivePoster("http://127.0.0.1:9/api", "tok", test_id=7, interval_s=0.05)
    p.request = request  # type: ignore[method-assign]
    p.offer({"now_ms": 0})
    wait_for(lambda: p.status()["failed"] >= 1, 10, "the first failure")
    assert p.status()["ok"] is False and "refused" in p.status()["error"]
    assert "FAILING" in p.status_line()
    fail[0] = False
    wait_for(lambda: len(calls) >= 2, 10, "the retry")  # the failed state is retried, now blocked in the server
    t0 = time.monotonic()
    for k in range(1, 50):
        p.offer({"now_ms": k})
    assert time.monotonic() - t0 < 0.5  # offering never waits for the server
    gate.set()
    wait_for(lambda: p.status()["sent"] >= 2, 10, "the newest state")
    sent = [c[2]["now_ms"] for c in calls]
    assert set(sent[:-1]) == {0} and sent[-1] == 49  # the failed one retried, the ones in between dropped
    assert p.dropped == 48 and p.status()["ok"] is True and calls[-1][1] == "/tests/7/live"
    p.close(final={"now_ms": 50})
    assert calls[-1][2] == {"now_ms": 50}


def test_the_body_keeps_the_lowest_blocks_of_a_long_string() -> None:
    rows = [{"position": p, "v": 12.0 + (p % 7) / 100, "c": 20.0, "state": "discharge", "warning": False,
             "stale": False, "min_v": 12.0, "age_s": 1.0, "to_end_s": None, "seq": p, "serial": None}
            for p in range(1, MAX_POST_BLOCKS + 201)]
    body = live_body({"now_ms": 1, "blocks": rows, "alarm": None, "rejected": {}}, started_ms=0,
                     blocks_expected=len(rows))
    assert len(body["blocks"]) == MAX_POST_BLOCKS and "seq" not in body["blocks"][0]
    kept = {b["position"] for b in body["blocks"]}
    assert max(b["v"] for b in body["blocks"]) <= min(r["v"] for r in rows if r["position"] not in kept)


def test_the_test_on_the_server_is_found_in_the_sync_queue(tmp_path: Path) -> None:
    from smartlogger.field.livepost import queued_test_id
    from smartlogger.field.sync import SyncQueue, normalise_api

    (tmp_path / "ups-a").mkdir()
    q = SyncQueue(tmp_path)
    server = q.server_id(normalise_api("http://h:1/api"), 3)
    for folder, remote in (("ups-a", 42), (".", 41)):
        q.db.execute("INSERT INTO tests(server, folder, meta_sha256, client_key, remote_id) VALUES (?,?,?,?,?)",
                     (server, folder, "x", f"key-{folder}", remote))
    q.db.commit()
    q.close()
    assert queued_test_id(tmp_path / "ups-a", "http://h:1") == (42, "key-ups-a")
    assert queued_test_id(tmp_path, "http://h:1/api/") == (41, "key-.")
    assert queued_test_id(tmp_path / "ups-a", "http://other/api") == (None, None)


@pytest.mark.slow
def test_a_watch_posts_to_the_api_and_survives_the_server_going_down(tmp_path: Path) -> None:
    site, folder, kit = tmp_path / "site", tmp_path / "test", tmp_path / "kit.key"
    with api_env("sqlite", tmp_path / "api") as env, cleanup(site):
        c, tech = env.client, env.a.headers("technician")
        test = c.post("/api/tests", headers=tech, json={"load": "80A", "blocks": 2,
                                                        "client_key": "kit7/ups-a"}).get_json()
        folder.mkdir()
        (folder / "test.json").write_text(json.dumps({"test_id": "UPS-A", "client_key": "kit7/ups-a",
                                                      "load": "80A", "string": {"blocks": 2}}))
        srv = make_server("127.0.0.1", 0, env.app, threaded=True)
        port = srv.server_port
        threading.Thread(target=srv.serve_forever, daemon=True).start()

        def live() -> dict[str, Any]:
            return dict(c.get(f"/api/tests/{test['id']}/live", headers=env.a.headers("viewer")).get_json())

        cli("sim", "site", "start", str(site), "--blocks", "2", "--weak", "0", "--speed", "30")
        cli("nfc", "program", "--site", str(site), "--count", "2", "--test-id", "UPS-A", "--kit-key", str(kit),
            "--json")
        watcher = subprocess.Popen(
            [SMARTLOGGER, "test", "watch", "--site", str(site), "--kit-key", str(kit), "--folder", str(folder),
             "--end-voltage", "12.9V/block", "--json", "--stop-after-alarm", "--duration", "120", "--post",
             "--api", f"http://127.0.0.1:{port}/api", "--token", env.a.tokens["technician"]],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert watcher.stdout is not None
            q = _lines(watcher.stdout)
            deadline = time.monotonic() + 60
            while True:  # found its test by test.json's client key, posting
                msg = _next_json(q, deadline, "a posted update")
                if msg["post"]["sent"] >= 1 and msg["blocks_seen"] == 2:
                    break
            assert msg["post"]["test_id"] == test["id"] and msg["post"]["ok"]
            wait_for(lambda: live()["snapshot"] is not None and len(live()["snapshot"]["blocks"]) == 2, 20,
                     "both blocks on the server")
            before = live()["received_at"]
            srv.shutdown()
            srv.server_close()
            while not (msg := _next_json(q, deadline, "the posting failing"))["post"]["error"]:
                pass
            assert "no connection" in msg["post"]["error"] and not msg["post"]["ok"]
            for _ in range(4):  # the watch goes on without its server
                assert _next_json(q, deadline, "updates while the server is down")["type"] == "update"
            srv = make_server("127.0.0.1", port, env.app, threaded=True)
            threading.Thread(target=srv.serve_forever, daemon=True).start()
            while not (msg := _next_json(q, time.monotonic() + 40, "posting again"))["post"]["ok"]:
                pass
            assert live()["received_at"] > before
            srv.shutdown()
            srv.server_close()
            cli("sim", "site", "load", str(site), "80A")  # the alarm fires while the server is down
            alarm = None
            deadline = time.monotonic() + 60
            while alarm is None:
                msg = _next_json(q, deadline, "the alarm")
                alarm = msg if msg["type"] == "alarm" else None
            assert watcher.wait(timeout=30) == 10, watcher.stderr.read() if watcher.stderr else ""
        finally:
            if watcher.poll() is None:
                watcher.kill()
                watcher.wait()
            srv.shutdown()
    record = json.loads((folder / "watch.json").read_text())
    assert record["alarm"]["position"] == alarm["position"]
    assert record["started_ms"] <= record["alarm"]["fired_ms"] <= record["ended_ms"]
