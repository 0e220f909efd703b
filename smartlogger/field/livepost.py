"""Posting a watch's live state to the API (``smartlogger test watch --post``), off the watch's loop.

Owns ``LivePoster``: the watcher hands it every snapshot (``offer``, which never blocks); a
background thread sends the newest one to ``PUT /api/tests/{id}/live`` at most every
``interval_s`` and drops the ones in between, so a slow or absent server costs the watch
nothing: a failure is remembered (``status``) and retried with backoff, never raised. The
server's test is given (``test_id``) or found on first use (``find_test``: the sync queue of
the work folder, else ``test.json``'s client key through ``GET /api/tests?client_key=``).
``live_body`` turns a ``LiveWatch.snapshot`` into the API's bounded ``LiveInSchema`` body.

Same server and token as ``smartlogger sync`` (``--api``/``SMARTLOGGER_API``,
``--token``/``SMARTLOGGER_TOKEN``). No import of the API package: HTTP only (``field.sync.api_call``).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from smartlogger.field.sync import QUEUE_FILE, ApiRefused, ApiUnreachable, api_call, normalise_api

#: Seconds between two posts (at most); snapshots offered in between are dropped.
POST_INTERVAL_S = 2.0
#: Seconds one request may take before it counts as failed.
POST_TIMEOUT_S = 5.0
#: Backoff after failures: the interval doubled per failure in a row, up to this (s).
POST_BACKOFF_MAX_S = 30.0
#: Most blocks in one post (the API's ``MAX_LIVE_BLOCKS``): a longer string sends its lowest.
MAX_POST_BLOCKS = 1000

_BLOCK_KEYS = ("position", "v", "c", "state", "warning", "stale", "min_v", "age_s", "to_end_s")
_ALARM_KEYS = ("position", "v", "alarm_v", "sample_ms", "fired_ms", "elapsed_s")
_TOP_KEYS = ("now_ms", "string_v", "blocks_seen", "discharge_start_ms", "elapsed_s", "delivered_ah",
             "predicted_end_ms", "predicted_first_block", "warning_blocks", "alarm_blocks", "stale",
             "missing", "accepted")


class PostError(Exception):
    """One post (or the test's lookup) failed; ``final`` when retrying cannot help soon."""

    def __init__(self, message: str, final: bool = False) -> None:
        super().__init__(message)
        self.final = final


def live_body(snap: dict[str, Any], *, started_ms: int | None, blocks_expected: int | None) -> dict[str, Any]:
    """The API body (``LiveInSchema``) of a ``LiveWatch.snapshot``."""
    body: dict[str, Any] = {k: snap.get(k) for k in _TOP_KEYS}
    body["started_ms"] = started_ms
    body["blocks_expected"] = blocks_expected
    rows = snap.get("blocks") or []
    if len(rows) > MAX_POST_BLOCKS:
        rows = sorted(sorted(rows, key=lambda r: r["v"])[:MAX_POST_BLOCKS], key=lambda r: r["position"])
    body["blocks"] = [{k: r.get(k) for k in _BLOCK_KEYS} for r in rows]
    alarm = snap.get("alarm")
    body["alarm"] = None if alarm is None else {k: alarm.get(k) for k in _ALARM_KEYS}
    body["rejected"] = dict(sorted((snap.get("rejected") or {}).items())[:16])
    return body


def queued_test_id(folder: Path, api: str) -> tuple[int | None, str | None]:
    """(server test id, client key) the sync queue of a work folder above ``folder`` (or in it)
    remembers for that test folder on the server ``api``; (None, None) when none does."""
    folder = folder.resolve()
    for root in (folder, *folder.parents):
        path = root / QUEUE_FILE
        if not path.is_file():
            continue
        rel = folder.relative_to(root).as_posix()  # "." for the work folder itself, as the sync keys it
        try:
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                row = db.execute("SELECT t.remote_id, t.client_key FROM tests t JOIN servers s ON t.server = s.id "
                                 "WHERE s.api = ? AND t.folder = ? ORDER BY t.remote_id IS NULL, "
                                 "s.last_sync DESC LIMIT 1", (normalise_api(api), rel)).fetchone()
            finally:
                db.close()
        except sqlite3.Error:
            return None, None
        if row is not None:
            return (None if row[0] is None else int(row[0])), row[1]
        return None, None
    return None, None


class LivePoster:
    """Sends the newest offered snapshot to the API in a background thread (module docstring).

    ``find_test`` is called (in the thread) until it gives the server's test id; ``request`` is
    injectable for tests (method, url, body) -> parsed JSON, raising ``PostError``.
    """

    def __init__(self, api: str, token: str, *, test_id: int | None = None,
                 client_key: str | None = None, interval_s: float = POST_INTERVAL_S,
                 timeout_s: float = POST_TIMEOUT_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.api = normalise_api(api)
        self.token = token
        self.test_id = test_id
        self.client_key = client_key
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.clock = clock
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self.last_ok: float | None = None
        self.last_error: str | None = None
        self._pending: dict[str, Any] | None = None
        self._fails_in_row = 0
        self._next_at = 0.0
        self._cv = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._loop, name="live-post", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ the watch's side

    def offer(self, body: dict[str, Any]) -> None:
        """The newest state to post (never blocks; replaces one not yet sent)."""
        with self._cv:
            if self._pending is not None:
                self.dropped += 1
            self._pending = body
            self._cv.notify()

    def status(self) -> dict[str, Any]:
        """For the status line and ``--json``: ``ok`` (the last attempt worked), counts, the error."""
        with self._cv:
            age = None if self.last_ok is None else round(self.clock() - self.last_ok, 1)
            return {"ok": self.last_error is None and self.sent > 0, "test_id": self.test_id, "sent": self.sent,
                    "failed": self.failed, "last_ok_age_s": age, "error": self.last_error}

    def status_line(self) -> str:
        st = self.status()
        where = f"{self.api} test {st['test_id']}" if st["test_id"] is not None else self.api
        if st["error"] is not None:
            since = "" if st["last_ok_age_s"] is None else f"; last ok {st['last_ok_age_s']:.0f} s ago"
            return f"posting to {where}: FAILING ({st['error']}){since}, retrying"
        if st["sent"] == 0:
            return f"posting to {where}: starting"
        return f"posting to {where}: ok ({st['sent']} sent, last {st['last_ok_age_s']:.0f} s ago)"

    def close(self, final: dict[str, Any] | None = None, timeout_s: float = 3.0) -> None:
        """Stop the thread; ``final`` (the watch's last state) is sent once more if the server
        answers within ``timeout_s`` (never longer: the watch ends regardless)."""
        with self._cv:
            if final is not None:
                self._pending = final
                self._next_at = 0.0
            self._closing = True
            self._cv.notify()
        self._thread.join(timeout_s)

    # ------------------------------------------------------------------ the thread

    def _loop(self) -> None:
        while True:
            with self._cv:
                while True:
                    now = self.clock()
                    if self._pending is not None and (now >= self._next_at or self._closing):
                        break
                    if self._closing:
                        return
                    wait = None if self._pending is None else max(0.0, self._next_at - now)
                    self._cv.wait(wait)
                body, self._pending = self._pending, None
                closing = self._closing
            self._send(body)
            if closing:
                return  # the final state is tried once: the watch is ending

    def _send(self, body: dict[str, Any]) -> None:
        started = self.clock()
        try:
            if self.test_id is None:
                self.test_id = self._find_test()
            self.request("PUT", f"/tests/{self.test_id}/live", body)
        except PostError as err:
            with self._cv:
                self.failed += 1
                self._fails_in_row += 1
                self.last_error = str(err)
                back = min(POST_BACKOFF_MAX_S, self.interval_s * 2.0 ** self._fails_in_row)
                self._next_at = started + (POST_BACKOFF_MAX_S if err.final else back)
                if self._pending is None:
                    self._pending = body  # the newest state stays due until it is sent
            return
        with self._cv:
            self.sent += 1
            self._fails_in_row = 0
            self.last_error = None
            self.last_ok = self.clock()
            self._next_at = started + self.interval_s

    def _find_test(self) -> int:
        if self.client_key:
            q = urllib.parse.urlencode({"client_key": self.client_key})
            found = self.request("GET", f"/tests?{q}", None)
            if isinstance(found, list) and found:
                return int(found[0]["id"])
        raise PostError("the test is not on the server yet: run smartlogger sync on the work folder, "
                        "or give --server-test ID", final=True)

    def request(self, method: str, path: str, body: dict[str, Any] | None) -> Any:
        try:
            data = None if body is None else json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
        except ValueError as err:
            raise PostError(f"the state cannot be sent: {err}") from None
        try:
            return api_call(self.api, self.token, method, path, body=data,
                            content_type=None if data is None else "application/json", timeout_s=self.timeout_s)[1]
        except ApiRefused as err:
            raise PostError(f"HTTP {err.code}: {err.message}", final=err.code in (401, 403, 404)) from None
        except ApiUnreachable as err:
            raise PostError(f"no connection: {err.reason}") from None
        except ValueError as err:  # an answer that is not JSON
            raise PostError(f"no connection: {err}") from None
