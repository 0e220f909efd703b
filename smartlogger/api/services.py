"""What the API does with uploads, tests, results and reports, in terms of library calls.

Owns persistence and orchestration only: accepting a logfile (magic, structure with
``smartlogger.logfile.read_logfile(decode=False)`` and ``check_sample_heads``, verify
with ``verify_logfile``, store by SHA-256, receipt, audit, and a "check" job that runs
``check_sample_payloads`` off the request path), deciding when a test is complete, and
running the analysis (``analysis.analyze.analyze_test`` on the stored logfiles' bytes,
with ``analysis.inputs.metadata_from_values``) and the string report
(``export.adapters.report_inputs_from_logfiles`` and ``export.string_report.string_report_bytes``)
exactly as the CLI does. Everything is passed as data: no file is written but the file
store's own (content-addressed, atomic). No battery or format logic lives here.

Why the split: decoding the samples of a 40 kB logfile costs ~4x more CPU than
reading its structure and verifying CRCs, footer hash, hash chains and
signatures, and it decides nothing the uploader can act on at once. A file whose
structure, lengths or footer hash fail is still rejected (422, the decoder's
message, nothing stored); a file that passes but whose sample payloads do not
decode is stored and then marked ``unreadable`` by its check job (never dropped).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Engine, Table, bindparam, func, insert, literal_column, or_, select, update
from sqlalchemy import cast as sa_cast
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import DBAPIError, DisconnectionError, IntegrityError
from sqlalchemy.orm import Session

from smartlogger.analysis.inputs import TestMetadata, TooManySamples, metadata_from_values
from smartlogger.analysis.loading import analyze_files
from smartlogger.analysis.results import TestResult
from smartlogger.api.db import forget_committing, note_write
from smartlogger.api.errors import ApiError, NotFound, database_unreachable
from smartlogger.api.filestore import FileStore
from smartlogger.api.hygiene import check_logfile_text, storable
from smartlogger.api.models import (
    AuditEvent,
    CapacityTest,
    Job,
    Logfile,
    Logger,
    Report,
    Result,
    utcnow,
)
from smartlogger.api.queue import job_key
from smartlogger.api.receipts import RECEIPT_TYPE, ServerKey
from smartlogger.errors import InputFileError, LogfileError
from smartlogger.export.adapters import report_inputs_from_logfiles
from smartlogger.export.pdf import pdf_report_bytes
from smartlogger.export.report import report_content
from smartlogger.export.string_report import string_report_bytes
from smartlogger.logfile import (
    Authority,
    check_sample_heads,
    check_sample_payloads,
    default_trust,
    read_logfile,
    verify_logfile,
)
from smartlogger.logfile.custody import (
    LoggerCustody,
    ProvenanceConflict,
    check_provenance,
    custody_flags,
)
from smartlogger.logfile.custody import after as custody_after

log = logging.getLogger("smartlogger.api")
#: How long an upload whose one-statement INSERT lost its connection looks for its own row
#: before it gives up (then: 500 outcome_unknown; a retry of the same bytes is answered 200).
SETTLE_S = 3.0
#: First bytes of every logfile we accept (2.x container, generation-1 file).
LOGFILE_MAGICS: tuple[bytes, ...] = (b"\x89SLOG\r\n\x1a", b"SLG1")
REPORT_KIND = "xlsx"
#: Most samples one uploaded logfile may declare (``MAX_UPLOAD_SAMPLES``; 413 above it). Every
#: path that decodes samples does it in batches (``logfile.format.BATCH_SAMPLES``), whatever a file
#: declares; the analysis and the report hold a test's logs (~23 bytes per sample with their true
#: times), so this bounds what one file adds to them: ~200 MB at the limit (docs/PERFORMANCE.md).
#: 2**23 = 8.4 M: 16 years of 1-minute samples (a 10-year log is 5.3 M).
MAX_UPLOAD_SAMPLES = 1 << 23
#: Most samples the logs of one test may hold for its analysis (``ANALYSIS_MAX_SAMPLES``): each
#: logger's log without its float history far from every candidate test
#: (``analysis.loading.window_history``), counted as they are loaded; the report loads and counts
#: them the same way (its charts show the test, ``export.adapters.REPORT_*``). These hold about
#: 23 bytes per sample (measured: docs/PERFORMANCE.md) besides the test window's work (bounded by
#: ``analysis.analyze.MAX_WINDOW_SAMPLES`` and ``MAX_GRID_POINTS``) and the files' records.
#: 2**24 = 16.8 M: a 240-block 10 h test at 1 Hz holds ~8.8 M (~320-340 MB with its window, ~35 B
#: per sample held for many files), a 240-block 20 h test ~17 M; the job of a test at the budget
#: may take ~590 MB: the one bound over 256 MB, because refusing a full-size string's test is no
#: option (2**23 refused 240 x 10 h). ~7 M keeps every test's job under 256 MB (strings up to ~190
#: blocks at 10 h): a server with small workers sets that (docs/API.md).
ANALYSIS_MAX_SAMPLES = 1 << 24


def _audit_values(org_id: int, user_id: int | None, action: str, object_type: str, object_id: int | None, *,
                  sha256: str | None = None, remote_addr: str = "", detail: str = "") -> dict[str, Any]:
    return {"org_id": org_id, "user_id": user_id, "action": action, "object_type": object_type,
            "object_id": object_id, "sha256": sha256, "remote_addr": storable(remote_addr, 64),
            "detail": storable(detail)}


def audit(session: Session, org_id: int, user_id: int | None, action: str, object_type: str,
          object_id: int | None, *, sha256: str | None = None, remote_addr: str = "",
          detail: str = "") -> None:
    session.add(AuditEvent(**_audit_values(org_id, user_id, action, object_type, object_id, sha256=sha256,
                                           remote_addr=remote_addr, detail=detail)))


def get_in_org(session: Session, model: type[Any], obj_id: int, org_id: int, what: str) -> Any:
    """The row ``obj_id`` of ``model`` if it belongs to ``org_id``; else 404 (never 403: no leaks)."""
    row = session.scalar(select(model).where(model.id == obj_id, model.org_id == org_id))
    if row is None:
        raise NotFound(what)
    return row


@dataclass(frozen=True)
class Uploader:
    user_id: int
    org_id: int
    email: str
    remote_addr: str = ""


# The upload path's statements, built once (see ingest_logfile). Core, on the session's connection:
# these bypass the ORM tenant filter, so each names the organisation itself.
_LOGFILES = cast(Table, Logfile.__table__)
_INSERT_LOGFILE = insert(_LOGFILES).returning(_LOGFILES.c.id)
_INSERT_AUDIT = insert(cast(Table, AuditEvent.__table__))
_INSERT_JOB = insert(cast(Table, Job.__table__)).returning(cast(Table, Job.__table__).c.id)
_EXISTING_ID = select(_LOGFILES.c.id).where(_LOGFILES.c.org_id == bindparam("org_id"),
                                            _LOGFILES.c.sha256 == bindparam("sha256"))


#: Process-wide cache (organisation id, serial) -> logger id. Loggers are never deleted (logfiles
#: reference them ON DELETE RESTRICT), so an id seen committed stays valid; saves a query per upload.
LoggerIds = dict[tuple[int, str], int]


def ingest_logfile(session: Session, store: FileStore, key: ServerKey, who: Uploader, data: bytes, *,
                   test_id: int | None = None, logger_ids: LoggerIds | None = None,
                   on_check_job: Callable[[int], None] | None = None,
                   autocommit: Engine | None = None,
                   trust: Sequence[Any] | None = None,
                   max_samples: int = MAX_UPLOAD_SAMPLES) -> tuple[Logfile, bool]:
    """Accept logfile bytes; returns (row, created). Same bytes again -> (existing row, False).

    A file whose structure, declared lengths or footer hash fail raises ``LogfileError``
    (the decoder's message) before anything is stored. The sample payloads are decoded
    later by the "check" job committed with a new row; ``on_check_job(job_id)`` is called
    after the commit to run it (the job runner's ``submit``). ``logger_ids`` caches logger
    ids across requests (see ``LoggerIds``). ``autocommit``: an engine in autocommit mode on
    the same PostgreSQL database; the row, its audit event and its check job are then written
    by one statement in one round trip (``_INSERT_UPLOAD_PG``) instead of a transaction of five.
    A file whose sample blocks declare more than ``max_samples`` samples is refused (413
    ``too_many_samples``, naming the limit) before anything is stored.
    """
    if not data.startswith(LOGFILE_MAGICS):
        raise ApiError(422, "invalid_logfile",
                       "not a smartlogger logfile: the file does not start with the .slog or "
                       "generation-1 magic bytes", field="body")
    digest = hashlib.sha256(data).hexdigest()
    test = get_in_org(session, CapacityTest, test_id, who.org_id, "test") if test_id is not None else None
    # LogfileError -> 422 with the decoder's message, nothing stored. Structure, every length,
    # the footer hash and (below) CRCs, chains and signatures are checked here; the sample
    # payloads by the check job. Bytes already stored are not looked up first: most uploads are
    # new, and the INSERT finds a duplicate by itself (the unique (org_id, sha256)).
    try:
        lf = read_logfile(data, decode=False)
        declared = check_sample_heads(lf)
    except LogfileError:
        # The same bytes, accepted earlier (by a more lenient reader), stay the answer for them.
        existing = _existing(session, who.org_id, digest)
        if existing is None:
            raise
        return _duplicate(session, existing, test, who), False
    if declared > max_samples:
        existing = _existing(session, who.org_id, digest)  # accepted under an earlier, higher limit
        if existing is not None:
            return _duplicate(session, existing, test, who), False
        raise ApiError(413, "too_many_samples",
                       f"the logfile's sample blocks declare {declared} samples, more than the {max_samples} "
                       "this server accepts in one logfile (MAX_UPLOAD_SAMPLES)", field="body")
    bad_text = check_logfile_text(lf)
    if bad_text is not None:
        # The same answer on SQLite and PostgreSQL (which cannot store a NUL), before anything is stored.
        raise ApiError(422, "invalid_logfile", f"logfile header field {bad_text[0]} {bad_text[1]}",
                       field="body")
    report = verify_logfile(lf, trust=trust if trust is not None else _trust())
    ident = lf.identity
    cache_key = (who.org_id, ident.serial)
    logger_id = logger_ids.get(cache_key) if logger_ids is not None else None
    if logger_id is None:
        logger_id = _logger_for(session, who.org_id, ident.serial, int(ident.generation), ident.firmware,
                                ident.simulated or ident.replayed).id
        new_logger = True
    else:
        new_logger = False
    # Custody: the logger's registered kind, key and highest pull counter (one indexed read).
    held = _custody_of(session, logger_id, ident.serial)
    try:
        check_provenance(report, held)
    except ProvenanceConflict as err:
        existing = _existing(session, who.org_id, digest)
        if existing is not None:  # stored before this rule: the same bytes keep their answer
            return _duplicate(session, existing, test, who), False
        audit(session, who.org_id, who.user_id, "upload_refused", "logger", logger_id, sha256=digest,
              remote_addr=who.remote_addr, detail=err.message[:2000])
        session.commit()
        raise ApiError(409, "provenance_conflict", err.message, field="body") from None
    flags = [{"kind": f.kind, "message": f.message} for f in custody_flags(report, held)]
    store.put(data)  # content-addressed: a blob whose row fails to commit is harmless
    now = utcnow()
    latest = report.latest_pull["counter"] if report.latest_pull else None
    # The receipt names the content (SHA-256), not the row: it is built before the INSERT so the
    # row is written once, and it stays meaningful outside this database. It names what the
    # server found: the verification status, who certified the logger and any custody flag.
    receipt = {
        "type": RECEIPT_TYPE, "organisation_id": who.org_id, "sha256": digest, "size": len(data),
        "uploaded_at": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "uploader": {"id": who.user_id, "email": who.email}, "server_key": key.fingerprint,
        "serial": ident.serial, "verification_status": report.status, "authority": report.authority,
        "markers": list(report.markers), "custody": [f["kind"] for f in flags],
    }
    values = {"org_id": who.org_id, "sha256": digest, "size": len(data), "logger_id": logger_id,
              "test_id": test.id if test else None, "block_position": lf.metadata.block_position,
              "format_version": f"{lf.version[0]}.{lf.version[1]}", "verification_status": report.status,
              "verification": _jsonable(report.to_dict()), "uploaded_by": who.user_id, "uploaded_at": now,
              "receipt": receipt, "receipt_signature": key.sign(receipt), "authority": report.authority,
              "markers": list(report.markers), "device_key": report.device_key, "pull_counter": latest,
              "custody": flags}
    flagged = "".join(f", {f['kind']}" for f in flags)
    audit_values = _audit_values(who.org_id, who.user_id, "upload", "logfile", None, sha256=digest,
                                 remote_addr=who.remote_addr,
                                 detail=f"{len(data)} bytes, {ident.serial}, {report.status}{flagged}")
    job_values = {"org_id": who.org_id, "key": job_key(who.org_id, "check", digest), "kind": "check"}
    if autocommit is not None:
        # The logger row (if new) and the test lookup commit first: the statement runs on another
        # connection. It writes all three rows or none (one statement), and nothing for bytes the
        # organisation already has (ON CONFLICT DO NOTHING: the duplicate is answered below).
        if session.in_transaction():
            try:
                session.commit()
            except (DBAPIError, DisconnectionError) as err:
                # Only the logger's row can have been in this commit: an idempotent side record
                # (the retry finds or makes it again), not the upload. The upload is not written.
                session.rollback()
                if database_unreachable(err):
                    forget_committing()
                raise
        ids = _insert_upload(session, autocommit, {
            **_prefixed("lf_", values), **_prefixed("au_", audit_values), **_prefixed("job_", job_values),
            "au_at": now, "job_created_at": now}, who.org_id, digest, now)
        if ids is None:
            return _answer_duplicate(session, digest, test, who), False
        logfile_id, job_id = ids
        # The logfile is stored; its logger's custody follows on the session's connection, which
        # may be the one a database restart just cut: then once more on a new connection.
        for attempt in (1, 2):
            try:
                _keep_custody(session, who, logger_id, held, report, flags, logfile_id, digest)
                session.commit()
                break
            except (DBAPIError, DisconnectionError) as err:
                session.rollback()
                if attempt == 2 or not database_unreachable(err):
                    raise
    else:
        # Three Core INSERTs on the session's connection (same transaction, one commit), statements
        # built once with the values as parameters (no ORM unit of work). Column defaults apply.
        conn = session.connection()
        try:
            logfile_id = conn.execute(_INSERT_LOGFILE, values).scalar_one()
        except IntegrityError:
            # These bytes are already there (or a concurrent upload of them won the race).
            session.rollback()
            return _answer_duplicate(session, digest, test, who), False
        conn.execute(_INSERT_AUDIT, {**audit_values, "object_id": logfile_id})
        # Same transaction as the row: a stored logfile always has its check job (never unchecked).
        job_id = conn.execute(_INSERT_JOB, {**job_values, "logfile_id": logfile_id}).scalar_one()
        _keep_custody(session, who, logger_id, held, report, flags, logfile_id, digest)
        session.commit()
    row = Logfile(id=logfile_id, **values)  # transient: what was inserted, for the response
    if logger_ids is not None and new_logger:
        logger_ids[cache_key] = logger_id  # only once committed: a rolled-back id must not be cached
    if on_check_job is not None:
        on_check_job(job_id)
    return row, True


def _custody_of(session: Session, logger_id: int, serial: str) -> LoggerCustody:
    row = session.connection().execute(
        select(Logger.simulated, Logger.device_key, Logger.max_pull_counter).where(Logger.id == logger_id)).one()
    return LoggerCustody(serial, not row.simulated, row.device_key, row.max_pull_counter)


def holds_logfiles(session: Session, logger_id: int) -> bool:
    """Does the organisation keep any logfile of this logger?"""
    return session.connection().execute(
        select(Logfile.id).where(Logfile.logger_id == logger_id).limit(1)).first() is not None


def _keep_custody(session: Session, who: Uploader, logger_id: int, held: LoggerCustody, report: Any,
                  flags: list[dict[str, str]], logfile_id: int, digest: str) -> None:
    """Record what a new logfile changes in its logger's custody (same transaction as the row).

    Conditional UPDATEs, so two uploads of one logger at once cannot lower the counter or replace
    the first key. Flags go to the logger's custody list and each to the audit log."""
    new = custody_after(report, held)
    conn = session.connection()
    if new.device_key is not None and held.device_key is None:
        conn.execute(update(Logger).where(Logger.id == logger_id, Logger.device_key.is_(None))
                     .values(device_key=new.device_key))
    if new.max_pull_counter is not None and new.max_pull_counter != held.max_pull_counter:
        conn.execute(update(Logger).where(Logger.id == logger_id, or_(
            Logger.max_pull_counter.is_(None), Logger.max_pull_counter < new.max_pull_counter))
            .values(max_pull_counter=new.max_pull_counter))
    if not flags:
        return
    at = utcnow().isoformat(timespec="seconds").replace("+00:00", "Z")
    logger = session.get(Logger, logger_id)
    if logger is not None:
        logger.custody = [*(logger.custody or []), *({**f, "logfile_id": logfile_id, "sha256": digest, "at": at}
                                                     for f in flags)]
    for f in flags:
        audit(session, who.org_id, who.user_id, f"custody_{f['kind']}", "logfile", logfile_id, sha256=digest,
              remote_addr=who.remote_addr, detail=f["message"][:2000])


def _insert_upload(session: Session, autocommit: Engine, params: dict[str, Any], org_id: int, digest: str,
                   now: Any) -> tuple[int, int] | None:
    """Run ``_INSERT_UPLOAD_PG``: (logfile id, check job id), or None if the bytes were there.

    The statement commits by itself. If the connection is lost while it runs, whether it
    committed is found out by looking for the row (for up to ``SETTLE_S``): ours (its
    ``uploaded_at`` is ``now``) is a success, absent means nothing was written (503 stays
    true), and if the database cannot be asked the error stays, as ``outcome_unknown``.
    """
    conn = autocommit.connect()  # a failure here sent nothing: a plain 503
    try:
        note_write("committing")
        row: Any
        try:
            row = conn.execute(_INSERT_UPLOAD_PG, params).first()
        except IntegrityError:  # not a duplicate (that is DO NOTHING): e.g. the test was deleted meanwhile
            forget_committing()
            raise _conflict() from None
        except (DBAPIError, DisconnectionError) as err:
            if not database_unreachable(err):
                forget_committing()
                raise
            settled = _settle_upload(autocommit, org_id, digest, now)
            if settled is None:
                raise
            if settled == (0, 0):
                forget_committing()
                raise
            log.warning("upload %s: connection lost during its INSERT, which had committed", digest[:12])
            row = settled if settled[0] > 0 else None
    finally:
        conn.close()
    note_write("committed")
    return None if row is None else (int(row[0]), int(row[1]))


def _settle_upload(autocommit: Engine, org_id: int, digest: str, now: Any) -> tuple[int, int] | None:
    """After a lost connection: (logfile id, job id) if our INSERT committed, (-1, -1) if another
    upload of these bytes did, (0, 0) if there is no such row, None if the database stays away."""
    job_t = cast(Table, Job.__table__)
    query = (select(_LOGFILES.c.id, _LOGFILES.c.uploaded_at, job_t.c.id)
             .outerjoin(job_t, (job_t.c.logfile_id == _LOGFILES.c.id) & (job_t.c.kind == "check"))
             .where(_LOGFILES.c.org_id == org_id, _LOGFILES.c.sha256 == digest))
    deadline = time.monotonic() + SETTLE_S
    while True:
        try:
            with autocommit.connect() as conn:
                found = conn.execute(query).first()
        except (DBAPIError, DisconnectionError):
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.2)
            continue
        if found is None:
            return 0, 0
        ours = found[1] is not None and abs((found[1] - now).total_seconds()) < 0.001
        return (int(found[0]), int(found[2] or 0)) if ours else (-1, -1)


def _conflict() -> ApiError:
    return ApiError(409, "conflict", "the upload conflicted with a concurrent change (the test or uploader "
                                     "was deleted?); the logfile was not stored, retry")


def _answer_duplicate(session: Session, digest: str, test: CapacityTest | None, who: Uploader) -> Logfile:
    again = _existing(session, who.org_id, digest)
    if again is None:  # the INSERT's conflict was another constraint than these bytes
        raise _conflict()
    return _duplicate(session, again, test, who)


def _prefixed(prefix: str, values: dict[str, Any]) -> dict[str, Any]:
    return {prefix + k: v for k, v in values.items()}


def _insert_upload_pg() -> Any:
    """PostgreSQL: the logfile row, its "upload" audit event and its check job in one statement.

    ``WITH lf AS (INSERT INTO logfiles ... ON CONFLICT (org_id, sha256) DO NOTHING RETURNING id),
    au AS (INSERT INTO audit_events ... SELECT ..., lf.id FROM lf), job AS (INSERT INTO jobs ...
    SELECT ..., lf.id FROM lf RETURNING id) SELECT lf.id, job.id FROM lf, job``: no row when the
    organisation already has these bytes. Parameters are the columns prefixed ``lf_``, ``au_``,
    ``job_``; every column is given (no Python-side defaults run inside INSERT ... SELECT).
    """
    audit_t = cast(Table, AuditEvent.__table__)
    job_t = cast(Table, Job.__table__)

    def params(table: Table, prefix: str, names: list[str]) -> list[Any]:
        return [bindparam(prefix + n, type_=table.c[n].type) for n in names]

    def typed(table: Table, prefix: str, names: list[str]) -> list[Any]:
        # In a SELECT list an untyped literal (a NULL user id, say) would be text: cast each.
        return [sa_cast(p, table.c[n].type) for p, n in zip(params(table, prefix, names), names, strict=True)]

    lf_cols = ["org_id", "sha256", "size", "logger_id", "test_id", "block_position", "format_version",
               "verification_status", "verification", "uploaded_by", "uploaded_at", "receipt",
               "receipt_signature", "authority", "markers", "device_key", "pull_counter", "custody"]
    lf = (pg_insert(_LOGFILES).values(dict(zip(lf_cols, params(_LOGFILES, "lf_", lf_cols), strict=True)))
          .on_conflict_do_nothing(index_elements=["org_id", "sha256"]).returning(_LOGFILES.c.id).cte("lf"))
    au_cols = ["org_id", "user_id", "action", "object_type", "sha256", "remote_addr", "detail", "at"]
    au = insert(audit_t).from_select([*au_cols, "object_id"], select(
        *typed(audit_t, "au_", au_cols), lf.c.id)).cte("au")
    job_cols = ["org_id", "key", "kind", "created_at"]
    job = insert(job_t).from_select(
        [*job_cols, "status", "error", "attempts", "logfile_id"],
        select(*typed(job_t, "job_", job_cols), literal_column("'queued'"), literal_column("''"),
               literal_column("0"), lf.c.id)).returning(job_t.c.id).cte("job")
    return select(lf.c.id, job.c.id).select_from(lf).join(job, literal_column("true")).add_cte(au)


_INSERT_UPLOAD_PG = _insert_upload_pg()


@functools.cache
def _trust() -> tuple[Authority, ...]:
    """The default trust roots, built once (``default_trust()`` derives the test authority's key
    from its seed on every call)."""
    return default_trust()


def logfile_problem(store: FileStore, sha256: str) -> tuple[str, int | None] | None:
    """The check job's work: decode every sample payload of the stored bytes ``sha256``, one
    batch at a time (memory does not grow with the file). None when they decode, else the
    decoder's (message, byte offset). Reads only: the verdict is ``mark_unreadable``'s."""
    try:
        check_sample_payloads(read_logfile(store.get(sha256), decode=False))
    except LogfileError as err:
        return str(err), err.offset
    return None


def mark_unreadable(session: Session, row: Logfile, message: str, offset: int | None) -> None:
    """Mark ``row`` ``unreadable``: the verification report gets an ``unreadable`` problem with
    the decoder's message and offset, and it is audited. Idempotent: a row already marked with
    this problem is left alone (a check that runs again adds nothing). The row and bytes stay."""
    ver = dict(row.verification or {})
    problem = {"kind": "unreadable", "message": message, "stream": None, "seq": None, "offset": offset}
    if row.verification_status == "unreadable" and problem in ver.get("problems", []):
        return
    ver["status"], ver["verified"] = "unreadable", False
    ver["problems"] = [*ver.get("problems", []), problem]
    row.verification, row.verification_status = ver, "unreadable"
    audit(session, row.org_id, None, "logfile_unreadable", "logfile", row.id, sha256=row.sha256,
          detail=message[:2000])


def check_logfile_samples(session: Session, store: FileStore, row: Logfile) -> str | None:
    """``logfile_problem`` then ``mark_unreadable``: None when the samples decode, else the message."""
    found = logfile_problem(store, row.sha256)
    if found is None:
        return None
    mark_unreadable(session, row, *found)
    return found[0]


def _existing(session: Session, org_id: int, digest: str) -> Logfile | None:
    """The organisation's logfile with this SHA-256, if any. One Core query for the id (most uploads
    are new: nothing to load), then the ORM row, tenant-filtered, only for a duplicate."""
    found = session.connection().execute(_EXISTING_ID, {"org_id": org_id, "sha256": digest}).scalar()
    return None if found is None else session.get(Logfile, found)


def _duplicate(session: Session, row: Logfile, test: CapacityTest | None, who: Uploader) -> Logfile:
    if test is not None and row.test_id is None:
        row.test_id = test.id
    audit(session, who.org_id, who.user_id, "upload_duplicate", "logfile", row.id, sha256=row.sha256,
          remote_addr=who.remote_addr)
    session.commit()
    return row


def _logger_for(session: Session, org_id: int, serial: str, generation: int, firmware: str,
                simulated: bool) -> Logger:
    q = select(Logger).where(Logger.org_id == org_id, Logger.serial == serial)
    row = session.scalar(q)
    if row is not None:
        return row
    row = Logger(org_id=org_id, serial=serial, generation=generation, firmware=firmware, simulated=simulated)
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        found = session.scalar(q)
        if found is None:
            raise
        return found
    return row


def _jsonable(obj: Any) -> Any:
    """Round-trip through JSON so bytes/tuples/enums become plain JSON values."""
    return json.loads(json.dumps(obj, default=lambda o: o.hex() if isinstance(o, bytes) else str(o)))


# ----------------------------------------------------------------------------- tests and their state


def logfiles_of(session: Session, test: CapacityTest) -> list[Logfile]:
    return list(session.scalars(select(Logfile).where(Logfile.org_id == test.org_id,
                                                      Logfile.test_id == test.id).order_by(Logfile.id)))


def shas_of(session: Session, test: CapacityTest) -> list[str]:
    """SHA-256 of the test's logfiles (only that column: called on every upload to the test)."""
    return list(session.scalars(select(Logfile.sha256).where(Logfile.org_id == test.org_id,
                                                             Logfile.test_id == test.id)))


def logfile_count(session: Session, test: CapacityTest) -> int:
    """Loggers (not files) with a logfile in the test: a logger pulled twice counts once."""
    return int(session.scalar(select(func.count(func.distinct(Logfile.logger_id))).where(
        Logfile.org_id == test.org_id, Logfile.test_id == test.id)) or 0)


def inputs_digest(test: CapacityTest, shas: list[str]) -> str:
    """Identity of an analysis: the logfile set and every metadata field that changes the result."""
    body = {"test": test.id, "logfiles": sorted(shas), "load": test.load, "rated_time": test.rated_time,
            "end_v_per_cell": test.end_v_per_cell, "end_voltage": test.end_voltage,
            "ref_c": test.reference_temperature_c,
            "blocks": test.blocks, "datasheet": test.datasheet_csv}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def status_of(session: Session, test: CapacityTest, n_logfiles: int | None = None) -> str:
    n = logfile_count(session, test) if n_logfiles is None else n_logfiles
    job = session.scalar(select(Job).where(Job.org_id == test.org_id, Job.test_id == test.id,
                                           Job.kind == "analyse").order_by(Job.id.desc()).limit(1))
    # Only the id: the result JSON of a 240-block test is ~200 kB.
    result = session.scalar(select(Result.id).where(Result.org_id == test.org_id, Result.test_id == test.id))
    if job is not None and job.status in ("queued", "running"):
        return "analysing"
    if job is not None and job.status == "failed":
        return "failed"
    if result is not None:
        return "analysed"
    return "collecting" if n < test.blocks else "complete"


# ----------------------------------------------------------------------------- analysis and report


def metadata_of(test: CapacityTest) -> TestMetadata:
    """The analysis metadata of a stored test (``metadata_from_values``: the same parsers, hence
    the same messages, as the CLI's options). A datasheet that does not parse is a 422 naming
    ``datasheet_csv`` and the line."""
    try:
        return metadata_from_values(load=test.load, rated_time=test.rated_time or None,
                                    datasheet=test.datasheet_csv or None, end_v_per_cell=test.end_v_per_cell,
                                    end_voltage=test.end_voltage or None, string_blocks=test.blocks,
                                    reference_temperature_c=test.reference_temperature_c,
                                    test_id=str(test.id), datasheet_source="datasheet_csv")
    except InputFileError as err:
        where = f"line {err.line}: " if err.line is not None else ""
        raise ApiError(422, "validation", f"datasheet_csv: {where}{err.message}",
                       field="datasheet_csv") from None


def validate_test_metadata(test: CapacityTest) -> None:
    """Raise ``MetadataError`` (-> 422 naming the field) if the analysis could not use it."""
    metadata_of(test)


def registered_keys(session: Session, test: CapacityTest) -> dict[str, str]:
    """serial -> the device key registered for each logger of ``test`` (custody): the analysis
    excludes a file certified under another key (a possible clone)."""
    rows = session.execute(select(Logger.serial, Logger.device_key).join(Logfile, Logfile.logger_id == Logger.id)
                           .where(Logfile.org_id == test.org_id, Logfile.test_id == test.id,
                                  Logger.device_key.is_not(None)).distinct())
    return {serial: key for serial, key in rows if key is not None}


def logfile_name(lf: Logfile) -> str:
    """How the analysis and the report name a stored logfile (exclusions, the Evidence sheet)."""
    return f"logfile {lf.id} ({lf.sha256[:12]}).slog"


def _too_many(files: Sequence[Logfile], err: TooManySamples, max_samples: int) -> ApiError:
    return ApiError(409, "too_many_samples",
                    f"the test's {len(files)} logfiles hold {err.held} samples or more around their tests, more than "
                    f"the {max_samples} this server analyses in one test (ANALYSIS_MAX_SAMPLES)")


def _report_inputs(session: Session, store: FileStore, test: CapacityTest, files: Sequence[Logfile],
                   result: TestResult, trust: Sequence[Any] | None, max_samples: int) -> Any:
    """The report's inputs from the stored logfiles and result: each log around its test only (the
    float history far from it left out, as for the analysis), within the same per-test budget."""
    logfiles = [(logfile_name(lf), store.get(lf.sha256)) for lf in files]
    try:
        return report_inputs_from_logfiles(logfiles, result=result, where=f"test {test.id}",
                                           trust=trust if trust is not None else _trust(),
                                           registered_keys=registered_keys(session, test), max_samples=max_samples)
    except TooManySamples as err:
        raise _too_many(files, err, max_samples) from None


def compute_result(session: Session, store: FileStore, test: CapacityTest, *,
                   trust: Sequence[Any] | None = None, max_samples: int = ANALYSIS_MAX_SAMPLES) -> Result:
    """Analyse ``test`` from its stored logfiles (same library calls as ``smartlogger test analyze``:
    every file verified, tampered/unreadable ones excluded and named, no logger's signed data
    merged with its unsigned or simulated files)."""
    files = logfiles_of(session, test)
    if not files:
        raise ApiError(409, "conflict", "the test has no logfiles yet")
    # A logger pulled more than once has several logfiles: merged into one log per logger. The
    # budget counts the samples the analysis holds: its logs around their tests, the float history
    # far from every test left out (``analysis.loading.analyze_files``), not the files' declared ones.
    keys = registered_keys(session, test)
    try:
        _, result = analyze_files(lambda: ((logfile_name(lf), store.get(lf.sha256)) for lf in files),
                                  metadata_of(test), trust=trust if trust is not None else _trust(),
                                  registered_keys=keys, max_samples=max_samples)
    except TooManySamples as err:
        raise _too_many(files, err, max_samples) from None
    # The customer report's facts (site, technician, battery, ...) as the test's metadata states them.
    result.report_info = {str(k): str(v) for k, v in (test.meta or {}).items()}
    digest = inputs_digest(test, [lf.sha256 for lf in files])
    payload = json.loads(result.to_json(indent=None))
    row = session.scalar(select(Result).where(Result.test_id == test.id))
    if row is None:
        row = Result(org_id=test.org_id, test_id=test.id, inputs_sha256=digest, result=payload)
        session.add(row)
    else:
        row.inputs_sha256, row.result, row.computed_at = digest, payload, utcnow()
    session.flush()
    return row


def build_report(session: Session, store: FileStore, test: CapacityTest, *,
                 trust: Sequence[Any] | None = None, max_samples: int = ANALYSIS_MAX_SAMPLES) -> Report:
    """The string report workbook of ``test`` from its result (as ``smartlogger export xlsx --test``):
    the stored logfiles' bytes and the stored result go in, the workbook's bytes come out."""
    result = session.scalar(select(Result).where(Result.test_id == test.id))
    if result is None:
        raise ApiError(409, "conflict", "the test has no result yet")
    key = report_key(result)
    row = session.scalar(select(Report).where(Report.test_id == test.id, Report.key == key))
    if row is not None and store.exists(row.sha256):
        return row
    files = logfiles_of(session, test)
    inputs = _report_inputs(session, store, test, files, TestResult.from_data(result.result), trust, max_samples)
    data = string_report_bytes(inputs.outcome, inputs.series, exceedances=inputs.exceedances,
                               evidence=inputs.evidence, tz=str(test.meta.get("tz", "UTC")))
    digest = store.put(data)
    if row is None:
        row = Report(org_id=test.org_id, test_id=test.id, key=key, kind=REPORT_KIND, sha256=digest,
                     size=len(data))
        session.add(row)
    else:
        row.sha256, row.size = digest, len(data)
    session.flush()
    return row


def build_pdf_report(session: Session, store: FileStore, test: CapacityTest, *,
                     trust: Sequence[Any] | None = None, max_samples: int = ANALYSIS_MAX_SAMPLES) -> bytes:
    """The customer report of ``test`` as PDF bytes (as ``smartlogger export pdf --test``): the stored
    result and the stored logfiles' bytes (for the charts) go in. Built on request: a 24-block
    report takes about a second (docs/PERFORMANCE.md)."""
    result = session.scalar(select(Result).where(Result.test_id == test.id))
    if result is None:
        raise ApiError(409, "conflict", "the test has no result yet")
    files = logfiles_of(session, test)
    stored = TestResult.from_data(result.result)
    inputs = _report_inputs(session, store, test, files, stored, trust, max_samples)
    # The test's metadata as it stands now (who tested, where): editing it does not re-analyse.
    content = report_content(stored, {str(k): str(v) for k, v in (test.meta or {}).items()})
    return pdf_report_bytes(content, inputs.series)


def report_key(result: Result) -> str:
    return hashlib.sha256(f"{REPORT_KIND}/{result.inputs_sha256}".encode()).hexdigest()
