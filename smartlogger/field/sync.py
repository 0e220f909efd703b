"""Sync client: upload a work folder's logfiles and tests to an API server, and remember, per
server, what that server has confirmed.

The work folder holds ``*.slog`` files (any depth); a ``test.json`` in a folder describes the
capacity test whose logfiles are in that folder (``smartlogger.testinfo``: site, system, string,
battery, load, rated time or datasheet, ...).

**The queue is per server.** A server is its API URL and the organisation the token belongs to
(``GET /api/me``): the same folder synced to the company's new server, or by a colleague
to another organisation's, uploads everything there, whatever an earlier run sent elsewhere. The
queue is a SQLite file in the work folder (``.smartlogger-sync.sqlite``) with one row per
(server, file) and per (server, test folder); it survives a phone without network and any number
of runs. A file counts as on a server only once that server answered with the file's SHA-256
(201 new, 200 already there); ``sync_status`` shows, per server, what is where.

Logfiles are keyed by SHA-256: a file is uploaded exactly once per server however often it is
copied or renamed, and the server answers bytes it already has with the existing logfile.
Transient failures (no network, 5xx, 429) are retried with exponential backoff and jitter, within
a run and across runs (per server); a logfile the server rejects (422) is marked rejected with
the server's message and not retried. Each test folder becomes a test on the server: its site,
system and string are found by name or created, the test is created (matched by the client key
``test.json`` carries, so every laptop that syncs the folder meets the same test) and sent again
as a PATCH whenever ``test.json`` is edited; while the server refuses a test, that folder's
logfiles wait (they go up, attached to the test, once the file is fixed).

A test the technician analysed here (its folder keeps ``result.json``) with fewer logfiles than
the string has blocks (a logger missing, a damaged file left out) would wait on the server for
files that never come: once every file of its folder is on the server, the sync asks the server
to analyse it with what it has, as it was analysed here (``POST /api/tests/{id}/analyse``; again
whenever a run uploads more of its files), and says so.

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
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smartlogger.errors import SmartLoggerError, TransportError
from smartlogger.testinfo import RESULT_FILE, TEST_FILE, TestInfo

QUEUE_FILE = ".smartlogger-sync.sqlite"
#: Version of the queue's tables; a queue from before servers were told apart is migrated.
QUEUE_VERSION = 2
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
    pending: int = 0  # still queued for this server (network or server trouble); retried next run
    errors: list[str] = field(default_factory=list)
    server: str = ""  # the API URL
    organisation: str = ""  # the token's organisation on that server ('' while it could not be asked)
    test_links: list[str] = field(default_factory=list)  # the web app's page of each test synced
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"uploaded": self.uploaded, "duplicates": self.duplicates, "tests": self.tests,
                "rejected": self.rejected, "pending": self.pending, "errors": self.errors,
                "server": self.server, "organisation": self.organisation, "test_links": self.test_links,
                "notes": self.notes}


def backoff_s(attempts: int, rng: random.Random | None = None) -> float:
    """Delay before retry number ``attempts`` (1-based), with jitter."""
    base = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2.0 ** max(0, attempts - 1))
    r = float((rng or random.Random()).uniform(-BACKOFF_JITTER, BACKOFF_JITTER))
    return max(0.0, base * (1 + r))


def normalise_api(api: str) -> str:
    """The API base URL as the queue keys it: no trailing slash, ending in ``/api``."""
    out = api.strip().rstrip("/")
    return out if out.endswith("/api") else out + "/api"


class ApiRefused(Exception):
    """The API answered with an error status: its ``code``, the error's ``message`` and the
    ``Retry-After`` it gave (s), if any."""

    def __init__(self, code: int, message: str, retry_after: float | None) -> None:
        super().__init__(f"HTTP {code}: {message}")
        self.code, self.message, self.retry_after = code, message, retry_after


class ApiUnreachable(Exception):
    """No answer from the API (refused, timed out, no route): ``reason``."""

    def __init__(self, reason: object) -> None:
        super().__init__(str(reason))
        self.reason = reason


def api_call(api: str, token: str, method: str, path: str, *, body: bytes | None = None,
             content_type: str | None = None, timeout_s: float = 30.0) -> tuple[int, Any]:
    """One request to the API at ``api`` (normalised) with bearer ``token``: (status, parsed JSON
    answer). An error status is ``ApiRefused``, no answer ``ApiUnreachable``; an answer that is not
    JSON raises ``ValueError``. Used by the sync client and the live watch's poster."""
    req = urllib.request.Request(api + path, data=body, method=method)
    req.add_header("Authorization", f"Bearer {token}")
    req.add_header("Accept", "application/json")
    if content_type:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        try:
            message = str(json.loads(err.read() or b"null")["error"]["message"])
        except (ValueError, KeyError, TypeError):
            message = str(err.reason)
        retry = err.headers.get("Retry-After") if err.headers is not None else None
        raise ApiRefused(err.code, message, float(retry) if retry and retry.isdigit() else None) from None
    except (TimeoutError, urllib.error.URLError, OSError) as err:
        raise ApiUnreachable(getattr(err, "reason", err)) from None


class SyncQueue:
    """The persistent queue in the work folder (see module docstring)."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / QUEUE_FILE
        self.db = sqlite3.connect(self.path)
        self.notes: list[str] = []
        self._migrate()
        self.db.executescript("""
            CREATE TABLE IF NOT EXISTS queue_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS servers (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                api TEXT NOT NULL,              -- normalised API base URL
                org_id INTEGER,                 -- the token's organisation; NULL until it could be asked
                org_name TEXT NOT NULL DEFAULT '',
                last_sync REAL,                 -- unix time of the last run that reached the server
                UNIQUE (api, org_id)
            );
            CREATE TABLE IF NOT EXISTS tests (
                server INTEGER NOT NULL REFERENCES servers(id),
                folder TEXT NOT NULL,           -- relative to the work folder
                meta_sha256 TEXT NOT NULL,      -- of test.json as last sent, to notice edits
                client_key TEXT NOT NULL,
                remote_id INTEGER,              -- the server's test id once created
                string_id INTEGER,              -- the server's string the test hangs on
                dirty INTEGER NOT NULL DEFAULT 1,   -- 1: create (no remote_id) or PATCH the edit
                error TEXT NOT NULL DEFAULT '', -- the server's refusal of this test.json
                PRIMARY KEY (server, folder)
            );
            CREATE TABLE IF NOT EXISTS logfiles (
                server INTEGER NOT NULL REFERENCES servers(id),
                sha256 TEXT NOT NULL,           -- hex, of the file bytes
                path TEXT NOT NULL,             -- relative path where it was first seen
                folder TEXT NOT NULL,
                status TEXT NOT NULL,           -- pending | uploaded | duplicate | rejected
                attempts INTEGER NOT NULL DEFAULT 0,
                next_attempt REAL NOT NULL DEFAULT 0,   -- unix time, s
                last_error TEXT NOT NULL DEFAULT '',
                remote_id INTEGER,
                PRIMARY KEY (server, sha256)
            );
        """)
        self.db.execute("INSERT OR REPLACE INTO queue_meta(key, value) VALUES ('version', ?)", (str(QUEUE_VERSION),))
        self.db.commit()

    def _migrate(self) -> None:
        """A queue written before servers were told apart remembers uploads without saying where:
        its rows are set aside (kept, for inspection) and every file is offered to each server
        again; a server answers bytes it has with 'already there'."""
        cols = [r[1] for r in self.db.execute("PRAGMA table_info(logfiles)").fetchall()]
        if cols and "server" not in cols:
            self.db.execute("ALTER TABLE logfiles RENAME TO legacy_logfiles")
            tcols = [r[1] for r in self.db.execute("PRAGMA table_info(tests)").fetchall()]
            if tcols and "server" not in tcols:
                self.db.execute("ALTER TABLE tests RENAME TO legacy_tests")
            self.db.commit()
            self.notes.append("the queue of an earlier version did not record which server had each file: "
                              "every file is offered again (a server answers 'already there' for what it has)")

    def server_id(self, api: str, org_id: int | None, org_name: str = "") -> int:
        """The queue's id for the server (``api``, ``org_id``); ``org_id`` None: not known yet (no
        connection), then the one known server of that URL, if any."""
        if org_id is None:
            rows = self.db.execute("SELECT id FROM servers WHERE api=? ORDER BY last_sync DESC NULLS LAST, id",
                                   (api,)).fetchall()
            if rows:
                return int(rows[0][0])
            cur = self.db.execute("INSERT INTO servers(api, org_id) VALUES (?, NULL)", (api,))
            self.db.commit()
            return int(cur.lastrowid or 0)
        row = self.db.execute("SELECT id FROM servers WHERE api=? AND org_id=?", (api, org_id)).fetchone()
        if row is not None:
            sid = int(row[0])
        else:
            # A server first met offline (organisation unknown) is this one: keep what was queued.
            unknown = self.db.execute("SELECT id FROM servers WHERE api=? AND org_id IS NULL", (api,)).fetchone()
            if unknown is not None:
                sid = int(unknown[0])
                self.db.execute("UPDATE servers SET org_id=? WHERE id=?", (org_id, sid))
            else:
                cur = self.db.execute("INSERT INTO servers(api, org_id) VALUES (?, ?)", (api, org_id))
                sid = int(cur.lastrowid or 0)
        self.db.execute("UPDATE servers SET org_name=? WHERE id=?", (org_name, sid))
        self.db.commit()
        return sid

    def close(self) -> None:
        self.db.close()


@contextmanager
def _queue(folder: Path) -> Iterator[SyncQueue]:
    q = SyncQueue(folder)
    try:
        yield q
    finally:
        q.close()


class SyncClient:
    """Uploads a work folder to the API at ``api`` with bearer ``token``.

    ``sleep`` and ``clock`` are injectable so tests can drive the backoff without waiting.
    """

    def __init__(self, api: str, token: str, folder: str | Path, *, timeout_s: float = 30.0,
                 max_tries_per_run: int = 4, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.time, rng: random.Random | None = None) -> None:
        self.api = normalise_api(api)
        self.token = token
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise SyncError(f"{self.folder}: not a directory")
        self.timeout_s = timeout_s
        self.max_tries_per_run = max_tries_per_run
        self.sleep = sleep
        self.clock = clock
        self.rng = rng or random.Random()
        self.server = 0  # the queue's id of this server, set by run()
        self._sent_now: set[str] = set()  # folders of the logfiles this run uploaded

    # ------------------------------------------------------------------ HTTP

    def _request(self, method: str, path: str, *, body: bytes | None = None,
                 content_type: str | None = None) -> tuple[int, Any]:
        try:
            return api_call(self.api, self.token, method, path, body=body, content_type=content_type,
                            timeout_s=self.timeout_s)
        except ApiRefused as err:
            if err.code == 429 or err.code >= 500:
                raise _Transient(f"HTTP {err.code}: {err.message}", err.retry_after) from None
            if err.code in (401, 403):
                raise SyncError(f"the API refused the token: {err.message}") from None
            raise _Rejected(f"HTTP {err.code}: {err.message}") from None
        except ApiUnreachable as err:
            raise _Transient(f"no connection to {self.api}: {err.reason}") from None

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

    def _json(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        payload = None if body is None else json.dumps(body).encode()
        return self._with_retries(lambda: self._request(
            method, path, body=payload, content_type="application/json" if body is not None else None))[1]

    # ------------------------------------------------------------------ scanning

    def scan(self, q: SyncQueue) -> None:
        """Queue, for this server, every logfile it has not confirmed and every test.json (new or edited)."""
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
            row = q.db.execute("SELECT meta_sha256 FROM tests WHERE server=? AND folder=?",
                               (self.server, rel)).fetchone()
            if row is None:
                q.db.execute("INSERT INTO tests(server, folder, meta_sha256, client_key) VALUES (?,?,?,?)",
                             (self.server, rel, digest, key))
            elif row[0] != digest:  # edited: sent again (PATCH once it exists), a refusal forgotten
                q.db.execute("UPDATE tests SET meta_sha256=?, dirty=1, error='' WHERE server=? AND folder=?",
                             (digest, self.server, rel))
                if explicit:
                    q.db.execute("UPDATE tests SET client_key=? WHERE server=? AND folder=? AND remote_id IS NULL",
                                 (key, self.server, rel))
        for path in sorted(self.folder.rglob("*.slog")):
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            q.db.execute("INSERT OR IGNORE INTO logfiles(server, sha256, path, folder, status) "
                         "VALUES (?,?,?,?, 'pending')",
                         (self.server, digest, path.relative_to(self.folder).as_posix(),
                          path.parent.relative_to(self.folder).as_posix()))
        q.db.commit()

    # ------------------------------------------------------------------ tests, sites, strings

    def _find_or_create(self, kind: str, name: str, body: dict[str, Any], query: str = "") -> int:
        """The id of the ``kind`` (sites, systems, strings) called ``name`` (under the parent in
        ``query``), created with ``body`` if the server has none."""
        offset = 0
        while True:
            sep = "&" if query else ""
            page = self._json("GET", f"/{kind}?{query}{sep}limit=1000&offset={offset}")
            for item in page or []:
                if item.get("name") == name:
                    return int(item["id"])
            if not page or len(page) < 1000:
                break
            offset += 1000
        return int(self._json("POST", f"/{kind}", {**body, "name": name})["id"])

    def _string_of(self, info: TestInfo, folder: str) -> int | None:
        """The server's string of the test (site, system and string found by name or created);
        None when ``test.json`` names none (the test then stands alone on the server)."""
        if info.string_id is not None:
            return info.string_id
        if not (info.site.name or info.system.name or info.string.name):
            return None
        blocks = self._blocks(info, folder)
        if blocks is None:
            raise _Rejected(f"{folder}/{TEST_FILE}: the string's number of blocks is needed to create it on the "
                            f"server: smartlogger test set {folder or '.'} --blocks N")
        site_name = info.site.name or "Unnamed site"
        site = self._find_or_create("sites", site_name, {"customer": info.site.customer,
                                                         "address": info.site.address})
        system = self._find_or_create("systems", info.system.name or "Battery system",
                                      {"site_id": site, "kind": info.system.kind or "UPS"},
                                      query=f"site_id={site}")
        body: dict[str, Any] = {"system_id": system, "blocks": blocks}
        b = info.battery
        if b.chemistry:
            body["chemistry"] = b.chemistry
        if b.block_voltage_v is not None:
            body["block_voltage_v"] = b.block_voltage_v
        if b.rated_ah is not None:
            body["rated_ah"] = b.rated_ah
        return self._find_or_create("strings", info.string.name or "String 1", body, query=f"system_id={system}")

    def _blocks(self, info: TestInfo, folder: str) -> int | None:
        blocks = info.string_blocks
        result = self.folder / folder / RESULT_FILE
        if blocks is None and result.exists():
            # Not stated, but analysed here: the string size the local analysis used.
            try:
                blocks = int(json.loads(result.read_text(encoding="utf-8"))["string_blocks"])
            except (ValueError, KeyError, TypeError):
                blocks = None
        return blocks

    def _test_body(self, folder: str) -> tuple[dict[str, Any], TestInfo]:
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
        blocks = self._blocks(info, folder)
        if blocks is not None:
            body["blocks"] = blocks
        if info.datasheet:
            p = d / info.datasheet
            if not p.exists():
                raise _Rejected(f"{folder}/{TEST_FILE}: its datasheet {info.datasheet} is not in the folder")
            body["datasheet_csv"] = p.read_text(encoding="utf-8")
        elif info.datasheet_csv:
            body["datasheet_csv"] = info.datasheet_csv
        return {k: v for k, v in body.items() if v is not None}, info

    def _sync_test(self, q: SyncQueue, folder: str, key: str, remote: int | None, report: SyncReport) -> None:
        """Create the test (POST, matched by client key) on its string, or send its edited
        metadata (PATCH)."""
        where = (self.server, folder)
        try:
            body, info = self._test_body(folder)
            string_id = self._string_of(info, folder)
            if string_id is not None:
                body["string_id"] = string_id
            if remote is None:
                out = self._json("POST", "/tests", {**body, "client_key": key})
                remote = int(out["id"])
                report.tests += 1
            else:
                self._json("PATCH", f"/tests/{remote}", body)
        except _Rejected as err:
            q.db.execute("UPDATE tests SET error=?, dirty=0 WHERE server=? AND folder=?", (str(err), *where))
            q.db.commit()
            report.rejected.append({"path": f"{folder}/{TEST_FILE}".lstrip("/"), "sha256": "",
                                    "message": str(err)})
            return
        q.db.execute("UPDATE tests SET remote_id=?, string_id=?, dirty=0, error='' WHERE server=? AND folder=?",
                     (remote, string_id, *where))
        q.db.commit()

    def _test_id(self, q: SyncQueue, folder: str) -> int | None:
        """The server's id of the folder's test; ``_Held`` while its test.json is refused or unsent."""
        row = q.db.execute("SELECT remote_id, error FROM tests WHERE server=? AND folder=?",
                           (self.server, folder)).fetchone()
        if row is None:
            return None
        if row[1] or row[0] is None:
            raise _Held(f"waiting for {folder}/{TEST_FILE}: {row[1] or 'not sent yet'}")
        return int(row[0])

    # ------------------------------------------------------------------ run

    def _whoami(self) -> tuple[int | None, str]:
        """The token's organisation on this server (None while there is no connection)."""
        try:
            me = self._json("GET", "/me")
        except _Transient:
            return None, ""
        except _Rejected as err:
            raise SyncError(f"{self.api} is not a smartlogger API: {err}") from None
        org = (me or {}).get("organisation") or {}
        return (int(org["id"]) if "id" in org else None), str(org.get("name", ""))

    def run(self) -> SyncReport:
        """Scan, then upload everything due to this server. Never raises for network trouble:
        it stays queued (per server)."""
        report = SyncReport(server=self.api)
        org_id, org_name = self._whoami()
        with _queue(self.folder) as q:
            report.notes.extend(q.notes)
            self.server = q.server_id(self.api, org_id, org_name)
            report.organisation = org_name
            self.scan(q)
            if org_id is None:
                report.errors.append(f"no connection to {self.api}: nothing was sent")
                self._back_off(q, "no connection", report)
            else:
                self._push(q, report)
                q.db.execute("UPDATE servers SET last_sync=? WHERE id=?", (self.clock(), self.server))
                q.db.commit()
            report.pending = int(q.db.execute(
                "SELECT count(*) FROM logfiles WHERE server=? AND status='pending'", (self.server,)).fetchone()[0])
            base = self.api[: -len("/api")]
            report.test_links = [f"{base}/app/#/tests/{r[0]}" for r in q.db.execute(
                "SELECT remote_id FROM tests WHERE server=? AND remote_id IS NOT NULL ORDER BY folder",
                (self.server,)).fetchall()]
        return report

    def _back_off(self, q: SyncQueue, why: str, report: SyncReport) -> None:
        """No network: every pending file of this server waits for the same backoff."""
        row = q.db.execute("SELECT max(attempts) FROM logfiles WHERE server=? AND status='pending'",
                           (self.server,)).fetchone()
        n = int(row[0] or 0) + 1
        q.db.execute("UPDATE logfiles SET attempts=attempts+1, next_attempt=?, last_error=? "
                     "WHERE server=? AND status='pending'",
                     (self.clock() + backoff_s(n, self.rng), why, self.server))
        q.db.commit()

    def _push(self, q: SyncQueue, report: SyncReport) -> None:
        for folder, key, remote in q.db.execute(
                "SELECT folder, client_key, remote_id FROM tests WHERE server=? AND dirty=1 ORDER BY folder",
                (self.server,)).fetchall():
            try:
                self._sync_test(q, folder, key, remote, report)
            except _Transient as err:
                report.errors.append(f"{folder}/{TEST_FILE}: {err}")
                if "no connection" in str(err):
                    self._back_off(q, str(err), report)
                    return
        self._push_files(q, report)
        self._analyse_partial(q, report)

    def _push_files(self, q: SyncQueue, report: SyncReport) -> None:
        now = self.clock()
        due = q.db.execute("SELECT sha256, path, folder, attempts FROM logfiles "
                           "WHERE server=? AND status='pending' AND next_attempt<=? ORDER BY path",
                           (self.server, now)).fetchall()
        for sha, rel, folder, attempts in due:
            try:
                self._upload_one(q, sha, rel, folder, report)
            except _Held as err:
                report.errors.append(f"{rel}: {err}")
            except _Transient as err:
                report.errors.append(f"{rel}: {err}")
                if "no connection" in str(err):
                    self._back_off(q, str(err), report)
                    return
                q.db.execute("UPDATE logfiles SET attempts=attempts+1, next_attempt=?, last_error=? "
                             "WHERE server=? AND sha256=?",
                             (self.clock() + backoff_s(attempts + 1, self.rng), str(err), self.server, sha))
                q.db.commit()

    def _analyse_partial(self, q: SyncQueue, report: SyncReport) -> None:
        """Ask the server to analyse each test analysed here that it holds with fewer logfiles than
        blocks (see the module docstring): when it was never analysed there, or this run uploaded
        more of its files."""
        rows = q.db.execute("SELECT folder, remote_id FROM tests WHERE server=? AND remote_id IS NOT NULL "
                            "AND error=''", (self.server,)).fetchall()
        for folder, remote in rows:
            if not (self.folder / folder / RESULT_FILE).exists():
                continue

            def inside(f: str, test_folder: str = folder) -> bool:
                return test_folder == "." or f == test_folder or f.startswith(test_folder + "/")

            pending = [f for (f,) in q.db.execute("SELECT folder FROM logfiles WHERE server=? AND status='pending'",
                                                  (self.server,)).fetchall() if inside(f)]
            if pending:
                continue
            sent_now = any(inside(f) for f in self._sent_now)
            try:
                test = self._json("GET", f"/tests/{remote}")
                if not isinstance(test, dict) or not 0 < int(test.get("logfiles") or 0) < int(test.get("blocks") or 0):
                    continue
                if not (test.get("status") == "collecting" or (sent_now and test.get("status") == "analysed")):
                    continue
                self._json("POST", f"/tests/{remote}/analyse")
            except (_Transient, _Rejected) as err:
                report.errors.append(f"{folder}/{TEST_FILE}: the server was not asked to analyse it: {err}")
                continue
            report.notes.append(f"test {remote} ({folder}): {test['logfiles']} logfile(s) for {test['blocks']} "
                                "blocks; the server analyses it with them, as it was analysed here")

    def _upload_one(self, q: SyncQueue, sha: str, rel: str, folder: str, report: SyncReport) -> None:
        path = self.folder / rel
        if not path.exists():  # moved since it was queued: find it again by content
            path = next((p for p in self.folder.rglob("*.slog")
                         if hashlib.sha256(p.read_bytes()).hexdigest() == sha), path)
        where = (self.server, sha)
        if not path.exists():
            q.db.execute("UPDATE logfiles SET status='gone', last_error=? WHERE server=? AND sha256=?",
                         ("the file is no longer in the folder", *where))
            q.db.commit()
            return
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != sha:
            q.db.execute("UPDATE logfiles SET status='rejected', last_error=? WHERE server=? AND sha256=?",
                         ("the file changed after it was queued", *where))
            q.db.commit()
            report.rejected.append({"path": rel, "sha256": sha, "message": "file changed after queueing"})
            return
        test_id = self._test_id(q, folder)
        try:
            query = f"?test_id={test_id}" if test_id is not None else ""
            status, out = self._with_retries(lambda: self._request(
                "POST", "/logfiles" + query, body=data, content_type="application/vnd.smartlogger.slog"))
        except _Rejected as err:
            q.db.execute("UPDATE logfiles SET status='rejected', last_error=? WHERE server=? AND sha256=?",
                         (str(err), *where))
            q.db.commit()
            report.rejected.append({"path": rel, "sha256": sha, "message": str(err)})
            return
        # On the server only when the server says so, for exactly these bytes.
        if not isinstance(out, dict) or out.get("sha256") != sha:
            raise _Transient(f"the server acknowledged {out.get('sha256') if isinstance(out, dict) else out} "
                             f"for {sha}")
        state = "uploaded" if status == 201 else "duplicate"
        q.db.execute("UPDATE logfiles SET status=?, remote_id=?, last_error='' WHERE server=? AND sha256=?",
                     (state, out["id"], *where))
        q.db.commit()
        if status == 201:
            report.uploaded += 1
            self._sent_now.add(folder)
        else:
            report.duplicates += 1


def sync_folder(api: str, token: str, folder: str | Path, **kwargs: Any) -> SyncReport:
    """One sync run of ``folder`` to the server at ``api`` (see ``SyncClient``)."""
    return SyncClient(api, token, folder, **kwargs).run()


# --------------------------------------------------------------------------- status


@dataclass
class ServerStatus:
    """What one server has of the folder, as far as the queue knows (no network needed)."""

    api: str
    organisation: str
    last_sync: float | None
    on_server: int  # confirmed by the server (uploaded now or already there)
    uploaded: int
    already_there: int
    waiting: int  # not confirmed yet: never sent, or sent without an answer
    rejected: list[dict[str, str]]
    tests: list[dict[str, Any]]  # folder, remote id, string id, error

    def to_dict(self) -> dict[str, Any]:
        return {"api": self.api, "organisation": self.organisation, "last_sync": self.last_sync,
                "on_server": self.on_server, "uploaded": self.uploaded, "already_there": self.already_there,
                "waiting": self.waiting, "rejected": self.rejected, "tests": self.tests}


@dataclass
class FolderStatus:
    folder: str
    logfiles: int  # distinct logfile contents in the folder now
    tests: int  # test.json files
    servers: list[ServerStatus]
    notes: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"folder": self.folder, "logfiles": self.logfiles, "tests": self.tests,
                "servers": [s.to_dict() for s in self.servers], "notes": self.notes}


def sync_status(folder: str | Path, *, api: str | None = None) -> FolderStatus:
    """Per server (``api``: only that URL): which of the folder's logfiles it has confirmed, which
    wait, which it refused, and its tests. Reads the queue only; nothing is sent."""
    d = Path(folder)
    if not d.is_dir():
        raise SyncError(f"{d}: not a directory")
    shas = {hashlib.sha256(p.read_bytes()).hexdigest() for p in d.rglob("*.slog")}
    n_tests = sum(1 for _ in d.rglob(TEST_FILE))
    with _queue(d) as q:
        rows = q.db.execute("SELECT id, api, org_name, last_sync FROM servers ORDER BY id").fetchall()
        servers = []
        for sid, url, org, last in rows:
            if api is not None and url != normalise_api(api):
                continue
            seen = {sha: (status, path, err) for sha, status, path, err in q.db.execute(
                "SELECT sha256, status, path, last_error FROM logfiles WHERE server=?", (sid,)).fetchall()}
            here = [seen.get(sha, ("pending", "", "")) for sha in shas]
            tests = [{"folder": f or ".", "test_id": rid, "string_id": strid, "error": err}
                     for f, rid, strid, err in q.db.execute(
                         "SELECT folder, remote_id, string_id, error FROM tests WHERE server=? ORDER BY folder",
                         (sid,)).fetchall()]
            servers.append(ServerStatus(
                url, org, last,
                on_server=sum(1 for s, _, _ in here if s in ("uploaded", "duplicate")),
                uploaded=sum(1 for s, _, _ in here if s == "uploaded"),
                already_there=sum(1 for s, _, _ in here if s == "duplicate"),
                waiting=sum(1 for s, _, _ in here if s == "pending"),
                rejected=[{"path": p, "message": e} for s, p, e in here if s == "rejected"],
                tests=tests))
        return FolderStatus(str(d), len(shas), n_tests, servers, list(q.notes))
