"""Blobs against rows: orphaned objects, missing blobs, damaged blobs; copying a store.

Owns ``check_store`` (``smartlogger admin store-check``) and ``copy_store``
(``smartlogger admin store-copy``). An upload writes its blob first and its row second, so a
failure between the two (the database down, the process killed) leaves an *orphan*: a blob no
logfile or report names. That is harmless (the client's retry finds the blob there and writes
the row; the same bytes are never stored twice) and it is never deleted silently: this module
finds and reports orphans, with their age (a young orphan may be an upload whose row is being
written right now). The reverse, a row whose blob is missing (or, with ``verify``, damaged), is
data loss and is reported row by row so it can be restored from a backup.

Both sides are walked in name order and merged, so memory stays constant however many blobs
there are (a store of a million batteries' monthly blackbox pulls holds tens of millions).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, String, literal, select, union_all

from smartlogger.api.filestore import BlobDamaged, BlobMissing, FileStore, StoredBlob
from smartlogger.api.models import Logfile, Report

#: An orphan younger than this may belong to an upload whose row is being written right now.
RECENT_S = 3600.0
#: How many orphans / missing blobs a report lists one by one (all are counted).
LISTED = 1000


@dataclass
class StoreReport:
    """What ``check_store`` found. ``orphans``/``missing``/``damaged`` list at most ``LISTED`` each."""

    location: str
    blobs: int = 0
    blob_bytes: int = 0
    referenced: int = 0  # distinct names the database refers to
    orphan_count: int = 0
    orphan_bytes: int = 0
    orphans: list[dict[str, Any]] = field(default_factory=list)  # sha256, size, modified, recent
    missing_count: int = 0
    missing: list[dict[str, Any]] = field(default_factory=list)  # sha256, rows: ["logfile 12", ...]
    damaged_count: int = 0
    damaged: list[dict[str, Any]] = field(default_factory=list)
    verified: bool = False

    @property
    def clean(self) -> bool:
        return not (self.orphan_count or self.missing_count or self.damaged_count)

    def to_dict(self) -> dict[str, Any]:
        return {"location": self.location, "blobs": self.blobs, "blob_bytes": self.blob_bytes,
                "referenced": self.referenced, "verified": self.verified,
                "orphan_count": self.orphan_count, "orphan_bytes": self.orphan_bytes, "orphans": self.orphans,
                "missing_count": self.missing_count, "missing": self.missing,
                "damaged_count": self.damaged_count, "damaged": self.damaged}


def _referenced(engine: Engine) -> Iterator[tuple[str, list[str]]]:
    """(name, ["logfile 12", "report 3", ...]) for every name the database refers to, in name order."""
    lf = select(Logfile.sha256.label("sha256"), literal("logfile", String).label("kind"),
                Logfile.id.label("id"))
    rp = select(Report.sha256.label("sha256"), literal("report", String).label("kind"), Report.id.label("id"))
    u = union_all(lf, rp).subquery()
    # Byte order, as the stores list their names (a locale's collation need not be).
    order = u.c.sha256.collate("C") if engine.dialect.name == "postgresql" else u.c.sha256
    q = select(u.c.sha256, u.c.kind, u.c.id).order_by(order, u.c.kind, u.c.id)
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=2000).execute(q)
        name: str | None = None
        rows: list[str] = []
        for sha, kind, row_id in result:
            if sha != name:
                if name is not None:
                    yield name, rows
                name, rows = sha, []
            rows.append(f"{kind} {row_id}")
        if name is not None:
            yield name, rows


def check_store(engine: Engine, store: FileStore, *, verify: bool = False, recent_s: float = RECENT_S,
                now: datetime | None = None, progress: Callable[[int], None] | None = None) -> StoreReport:
    """Merge the store's blobs with the database's names (see the module docstring).

    ``verify`` also reads every referenced blob back and checks its SHA-256 (reads the whole
    store). ``progress(n)`` is called with the number of blobs walked so far, every 1,000.
    """
    now = now or datetime.now(UTC)
    report = StoreReport(store.location, verified=verify)
    blobs = iter(store.blobs())
    refs = iter(_referenced(engine))
    blob = next(blobs, None)
    ref = next(refs, None)
    while blob is not None or ref is not None:
        if ref is None or (blob is not None and blob.sha256 < ref[0]):
            assert blob is not None
            _orphan(report, blob, now, recent_s)
            blob = _next_blob(blob, blobs, report, progress)
        elif blob is None or ref[0] < blob.sha256:
            report.referenced += 1
            report.missing_count += 1
            if len(report.missing) < LISTED:
                report.missing.append({"sha256": ref[0], "rows": ref[1]})
            ref = next(refs, None)
        else:
            report.referenced += 1
            if verify:
                _verify(report, store, ref)
            blob = _next_blob(blob, blobs, report, progress)
            ref = next(refs, None)
    return report


def _next_blob(done: StoredBlob, blobs: Iterator[StoredBlob], report: StoreReport,
               progress: Callable[[int], None] | None) -> StoredBlob | None:
    """Count ``done`` and return the blob after it."""
    report.blobs += 1
    report.blob_bytes += done.size
    if progress is not None and report.blobs % 1000 == 0:
        progress(report.blobs)
    return next(blobs, None)


def _orphan(report: StoreReport, blob: StoredBlob, now: datetime, recent_s: float) -> None:
    report.orphan_count += 1
    report.orphan_bytes += blob.size
    if len(report.orphans) < LISTED:
        age = (now - blob.modified).total_seconds() if blob.modified is not None else None
        report.orphans.append({"sha256": blob.sha256, "size": blob.size,
                               "modified": blob.modified.isoformat() if blob.modified else None,
                               "recent": age is not None and age < recent_s})


def _verify(report: StoreReport, store: FileStore, ref: tuple[str, list[str]]) -> None:
    try:
        store.get(ref[0])
    except BlobDamaged:
        report.damaged_count += 1
        if len(report.damaged) < LISTED:
            report.damaged.append({"sha256": ref[0], "rows": ref[1]})
    except BlobMissing:  # deleted between the listing and the read
        report.missing_count += 1
        if len(report.missing) < LISTED:
            report.missing.append({"sha256": ref[0], "rows": ref[1]})


@dataclass
class CopyReport:
    source: str
    target: str
    copied: int = 0
    present: int = 0  # already in the target (a copy can be resumed)
    bytes: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "target": self.target, "copied": self.copied, "present": self.present,
                "bytes": self.bytes, "failed": self.failed}


def copy_store(source: FileStore, target: FileStore,
               progress: Callable[[int], None] | None = None) -> CopyReport:
    """Copy every blob of ``source`` into ``target`` (e.g. a folder store into an object store
    before a deployment grows to several hosts). Each blob is read back through ``get`` (its
    SHA-256 checked) and written through ``put`` (written once; present blobs are skipped), so a
    copy that stopped half-way is resumed by running it again. A damaged or missing source blob
    is listed in ``failed`` and the copy goes on."""
    report = CopyReport(source.location, target.location)
    for i, blob in enumerate(source.blobs(), 1):
        if target.exists(blob.sha256):
            report.present += 1
        else:
            try:
                data = source.get(blob.sha256)
            except (BlobDamaged, BlobMissing) as err:
                report.failed.append({"sha256": blob.sha256, "message": str(err)})
                continue
            target.put(data)
            report.copied += 1
            report.bytes += len(data)
        if progress is not None:
            progress(i)
    return report
