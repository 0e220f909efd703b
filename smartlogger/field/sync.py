"""Sync client: upload new logfiles and test metadata from the field tool's work folder.

Owns the persistent upload queue and its HTTP conversation with the API. The
work folder holds ``*.slog`` files (any depth); a ``test.json`` in a folder
describes the capacity test whose logfiles are in that folder::

    {"load": "50A", "rated_time": "3h", "blocks": 24, "name": "...", "metadata": {...},
     "client_key": "optional, stable id of the test"}

The queue is a SQLite file in the work folder (``.smartlogger-sync.sqlite``), so
it survives a phone without network and any number of runs. Logfiles are keyed
by SHA-256: a file is uploaded exactly once however often it is copied or
renamed, and the server returns the existing resource for bytes it already has.
Transient failures (no network, 5xx, 429) are retried with exponential backoff
and jitter, within a run and across runs; a logfile the server rejects (422) is
marked rejected with the server's message and not retried. Each test.json is
sent once (POST, matched by its client key) and again as a PATCH whenever it is
edited; while the server refuses a test.json, that folder's logfiles wait (they
go up, attached to the test, once the file is fixed).

No import of the API package: the client talks HTTP only (stdlib ``urllib``).
"""

from __future__ import annotations

import hashlib
import json
import random
import socket
import sqlite3
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smartlogger.errors import SmartLoggerError, TransportError
from smartlogger.testinfo import RESULT_FILE, TEST_FILE, TestInfo

QUEUE_FILE = ".smartlogger-sync.sqlite"
#: Backoff: first retry after BASE_S, doubling up to MAX_S, +-JITTER (fraction).
BACKOFF_BASE_S = 1.0
BACKOFF_MAX_S = 300.0
BACKOFF_JITTER = 0.2


class SyncError(TransportError):
    """The sync cannot go on (bad token, server refuses the client); the queue is kept."""


class _Transient(Exception):
    """A failure worth retrying (network down, 5xx, 429)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class _Rejected(Exception):
    """The server refused this item for good (e.g. 422 invalid logfile)."""


class _Held(Exception):
    """The item waits for something else (its test.json refused or not yet on the server)."""


@dataclass
class SyncReport:
    uploaded: int = 0  # new on the server
    duplicates: int = 0  # the server had the bytes already
    tests: int = 0  # tests created or matched
    rejected: list[dict[str, str]] = field(default_factory=list)  # path, sha256, message
    pending: int = 0  # still queued (network or server trouble); retried next run
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"uploaded": self.uploaded, "duplicates": self.duplicates, "tests": self.tests,
                "rejected": self.rejected, "pending": self.pending, "errors": self.errors}


def backoff_s(attempts: int, rng: random.Random | None = None) -> float:
    """Delay before retry number ``attempts`` (1-based), with jitter."""
    base = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2.0 ** max(0, attempts - 1))
    r = float((rng or random.Random()).uniform(-BACKOFF_JITTER, BACKOFF_JITTER))
    return max(0.0, base * (1 + r))


class SyncQueue:
    """The persistent queue in the work folder."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / QUEUE_FILE
        self.db = sqlite3.connect(self.path)
        self.db.executescript("""
            CREATE TABLE IF NOT EXISTS tests (
                folder TEXT PRIMARY KEY,        -- relative to the work folder
                meta_sha256 TEXT NOT NULL,      -- of test.json, to notice edits
                client_key TEXT NOT NULL,
                remote_id INTEGER,              -- the API's test id once created
                dirty INTEGER NOT NULL DEFAULT 1,   -- 1: create (no remote_id) or PATCH the edit
                error TEXT NOT NULL DEFAULT ''      -- the server's refusal of this test.json
            );
            CREATE TABLE IF NOT EXISTS logfiles (
                sha256 TEXT PRIMARY KEY,        -- hex, of the file bytes
                path TEXT NOT NULL,             -- relative path where it was first seen
                folder TEXT NOT NULL,
                status TEXT NOT NULL,           -- pending | uploaded | duplicate | rejected
                attempts INTEGER NOT NULL DEFAULT 0,
                next_attempt REAL NOT NULL DEFAULT 0,   -- unix time, s
                last_error TEXT NOT NULL DEFAULT '',
                remote_id INTEGER
            );
        """)
        self.db.commit()

    def close(self) -> None:
        self.db.close()


class SyncClient:
    """Uploads a work folder to the API at ``api`` with bearer ``token``.

    ``sleep`` and ``clock`` are injectable so tests can drive the backoff without waiting.
    """

    def __init__(self, api: str, token: str, folder: str | Path, *, timeout_s: float = 30.0,
                 max_tries_per_run: int = 4, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.time, rng: random.Random | None = None) -> None:
        self.api = api.rstrip("/")
        if not self.api.endswith("/api"):
            self.api += "/api"
        self.token = token
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise SyncError(f"{self.folder}: not a directory")
        self.timeout_s = timeout_s
        self.max_tries_per_run = max_tries_per_run
        self.sleep = sleep
        self.clock = clock
        self.rng = rng or random.Random()

    # ------------------------------------------------------------------ HTTP

    def _request(self, method: str, path: str, *, body: bytes | None = None,
                 content_type: str | None = None) -> tuple[int, Any]:
        req = urllib.request.Request(self.api + path, data=body, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        req.add_header("Accept", "application/json")
        if content_type:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as err:
            try:
                payload = json.loads(err.read() or b"null")
                message = payload["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = err.reason
            if err.code == 429 or err.code >= 500:
                retry = err.headers.get("Retry-After")
                raise _Transient(f"HTTP {err.code}: {message}",
                                 float(retry) if retry and retry.isdigit() else None) from None
            if err.code in (401, 403):
                raise SyncError(f"the API refused the token: {message}") from None
            raise _Rejected(f"HTTP {err.code}: {message}") from None
        except (TimeoutError, urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise _Transient(f"no connection to {self.api}: {reason}") from None

    def _with_retries(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn``; on a transient failure wait (backoff) and try again, up to the per-run limit."""
        for attempt in range(1, self.max_tries_per_run + 1):
            try:
                return fn()
            except _Transient as err:
                if attempt == self.max_tries_per_run:
                    raise
                self.sleep(err.retry_after if err.retry_after is not None else backoff_s(attempt, self.rng))
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------ scanning

    def scan(self, q: SyncQueue) -> None:
        """Queue every logfile not seen before (by content) and every test.json (new or edited)."""
        for meta_path in sorted(self.folder.rglob(TEST_FILE)):
            rel = meta_path.parent.relative_to(self.folder).as_posix()
            raw = meta_path.read_bytes()
            digest = hashlib.sha256(raw).hexdigest()
            try:
                meta = json.loads(raw)
            except ValueError as err:
                raise SyncError(f"{meta_path}: not JSON ({err})") from None
            explicit = meta.get("client_key") if isinstance(meta, dict) else None
            key = str(explicit or "sync-" + hashlib.sha256(
                f"{socket.gethostname()}:{self.folder.resolve()}:{rel}".encode()).hexdigest()[:40])
            row = q.db.execute("SELECT meta_sha256 FROM tests WHERE folder=?", (rel,)).fetchone()
            if row is None:
                q.db.execute("INSERT INTO tests(folder, meta_sha256, client_key) VALUES (?,?,?)",
                             (rel, digest, key))
            elif row[0] != digest:  # edited: sent again (PATCH once it exists), a refusal forgotten
                q.db.execute("UPDATE tests SET meta_sha256=?, dirty=1, error='' WHERE folder=?", (digest, rel))
                if explicit:
                    q.db.execute("UPDATE tests SET client_key=? WHERE folder=? AND remote_id IS NULL",
                                 (key, rel))
        for path in sorted(self.folder.rglob("*.slog")):
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            q.db.execute("INSERT OR IGNORE INTO logfiles(sha256, path, folder, status) VALUES (?,?,?, 'pending')",
                         (digest, path.relative_to(self.folder).as_posix(),
                          path.parent.relative_to(self.folder).as_posix()))
        q.db.commit()

    # ------------------------------------------------------------------ run

    def _test_body(self, folder: str) -> dict[str, Any]:
        """The API's test fields from the folder's ``test.json`` (``smartlogger.testinfo``)."""
        d = self.folder / folder
        try:
            info = TestInfo.read(d)
        except SmartLoggerError as err:
            raise _Rejected(str(err)) from None
        if info is None:
            raise _Rejected(f"{folder}/{TEST_FILE}: gone")
        body: dict[str, Any] = {"load": info.load or None, "rated_time": info.rated_time or None,
                                "name": info.name or info.test_id or "", "metadata": info.server_metadata()}
        if info.end_voltage:
            body["end_voltage"] = info.end_voltage
        elif info.end_v_per_cell is not None:
            body["end_v_per_cell"] = info.end_v_per_cell
        if info.reference_temperature_c is not None:
            body["reference_temperature_c"] = info.reference_temperature_c
        if info.string_id is not None:
            body["string_id"] = info.string_id
        blocks = info.string_blocks
        if blocks is None and (d / RESULT_FILE).exists():
            # Not stated, but analysed here: the string size the local analysis used.
            try:
                blocks = int(json.loads((d / RESULT_FILE).read_text(encoding="utf-8"))["string_blocks"])
            except (ValueError, KeyError, TypeError):
                blocks = None
        if blocks is not None:
            body["blocks"] = blocks
        if info.datasheet:
            p = d / info.datasheet
            if not p.exists():
                raise _Rejected(f"{folder}/{TEST_FILE}: its datasheet {info.datasheet} is not in the folder")
            body["datasheet_csv"] = p.read_text(encoding="utf-8")
        elif info.datasheet_csv:
            body["datasheet_csv"] = info.datasheet_csv
        return {k: v for k, v in body.items() if v is not None}

    def _sync_test(self, q: SyncQueue, folder: str, key: str, remote: int | None, report: SyncReport) -> None:
        """Create the test (POST, matched by client key) or send its edited metadata (PATCH)."""
        try:
            body = self._test_body(folder)
            if remote is None:
                payload = json.dumps({**body, "client_key": key}).encode()
                _, out = self._with_retries(lambda: self._request(
                    "POST", "/tests", body=payload, content_type="application/json"))
                remote = int(out["id"])
                report.tests += 1
            else:
                payload = json.dumps(body).encode()
                rid = remote
                self._with_retries(lambda: self._request(
                    "PATCH", f"/tests/{rid}", body=payload, content_type="application/json"))
        except _Rejected as err:
            q.db.execute("UPDATE tests SET error=?, dirty=0 WHERE folder=?", (str(err), folder))
            q.db.commit()
            report.rejected.append({"path": f"{folder}/{TEST_FILE}".lstrip("/"), "sha256": "",
                                    "message": str(err)})
            return
        q.db.execute("UPDATE tests SET remote_id=?, dirty=0, error='' WHERE folder=?", (remote, folder))
        q.db.commit()

    def _test_id(self, q: SyncQueue, folder: str) -> int | None:
        """The API's id of the folder's test; ``_Held`` while its test.json is refused or unsent."""
        row = q.db.execute("SELECT remote_id, error FROM tests WHERE folder=?", (folder,)).fetchone()
        if row is None:
            return None
        if row[1] or row[0] is None:
            raise _Held(f"waiting for {folder}/{TEST_FILE}: {row[1] or 'not sent yet'}")
        return int(row[0])

    def run(self) -> SyncReport:
        """Scan, then upload everything due. Never raises for network trouble: it stays queued."""
        report = SyncReport()
        q = SyncQueue(self.folder)
        try:
            self.scan(q)
            for folder, key, remote in q.db.execute(
                    "SELECT folder, client_key, remote_id FROM tests WHERE dirty=1 ORDER BY folder").fetchall():
                try:
                    self._sync_test(q, folder, key, remote, report)
                except _Transient as err:
                    report.errors.append(f"{folder}/{TEST_FILE}: {err}")
                    if "no connection" in str(err):
                        # Network down: nothing else is tried now; every pending file backs off.
                        q.db.execute("UPDATE logfiles SET attempts=attempts+1, next_attempt=?, last_error=? "
                                     "WHERE status='pending'", (self.clock() + backoff_s(1, self.rng), str(err)))
                        q.db.commit()
                        break
            now = self.clock()
            due = q.db.execute("SELECT sha256, path, folder, attempts FROM logfiles "
                               "WHERE status='pending' AND next_attempt<=? ORDER BY path", (now,)).fetchall()
            for sha, rel, folder, attempts in due:
                try:
                    self._upload_one(q, sha, rel, folder, report)
                except _Held as err:
                    report.errors.append(f"{rel}: {err}")
                except _Transient as err:
                    n = attempts + 1
                    retry_at = self.clock() + backoff_s(n, self.rng)
                    offline = "no connection" in str(err)
                    # Network down: everything still pending waits for the same backoff.
                    where = "status='pending'" if offline else "sha256=?"
                    q.db.execute(f"UPDATE logfiles SET attempts=attempts+1, next_attempt=?, last_error=? "
                                 f"WHERE {where}", (retry_at, str(err)) + (() if offline else (sha,)))
                    q.db.commit()
                    report.errors.append(f"{rel}: {err}")
                    if offline:
                        break
            report.pending = int(q.db.execute("SELECT count(*) FROM logfiles WHERE status='pending'").fetchone()[0])
        finally:
            q.close()
        return report

    def _upload_one(self, q: SyncQueue, sha: str, rel: str, folder: str, report: SyncReport) -> None:
        path = self.folder / rel
        if not path.exists():  # moved since it was queued: find it again by content
            path = next((p for p in self.folder.rglob("*.slog")
                         if hashlib.sha256(p.read_bytes()).hexdigest() == sha), path)
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != sha:
            q.db.execute("UPDATE logfiles SET status='rejected', last_error=? WHERE sha256=?",
                         ("the file changed after it was queued", sha))
            q.db.commit()
            report.rejected.append({"path": rel, "sha256": sha, "message": "file changed after queueing"})
            return
        test_id = self._test_id(q, folder)
        try:
            query = f"?test_id={test_id}" if test_id is not None else ""
            status, out = self._with_retries(lambda: self._request(
                "POST", "/logfiles" + query, body=data, content_type="application/vnd.smartlogger.slog"))
        except _Rejected as err:
            q.db.execute("UPDATE logfiles SET status='rejected', last_error=? WHERE sha256=?", (str(err), sha))
            q.db.commit()
            report.rejected.append({"path": rel, "sha256": sha, "message": str(err)})
            return
        if out.get("sha256") != sha:
            raise _Transient(f"the server acknowledged {out.get('sha256')} for {sha}")
        state = "uploaded" if status == 201 else "duplicate"
        q.db.execute("UPDATE logfiles SET status=?, remote_id=?, last_error='' WHERE sha256=?",
                     (state, out["id"], sha))
        q.db.commit()
        if status == 201:
            report.uploaded += 1
        else:
            report.duplicates += 1


def sync_folder(api: str, token: str, folder: str | Path, **kwargs: Any) -> SyncReport:
    """One sync run of ``folder`` (see ``SyncClient``)."""
    return SyncClient(api, token, folder, **kwargs).run()
