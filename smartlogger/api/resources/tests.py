"""``/api/tests``: capacity tests, their logfiles, results and the report workbook.

A test is complete when it has ``blocks`` logfiles; then its analysis is
enqueued (and, when that finishes, its report). ``POST .../analyse`` and
``POST .../report`` enqueue on demand; both are idempotent (same inputs, same job).
"""

# mypy: disable-error-code="untyped-decorator"
# (flask-smorest ships no type hints; its decorators keep our signatures at run time.)

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from typing import Any, cast

from flask import Response, current_app, request, url_for
from marshmallow.fields import String
from marshmallow.validate import Length
from sqlalchemy import Table, bindparam, select
from sqlalchemy.exc import IntegrityError

from smartlogger.api import queue as jobq
from smartlogger.api.auth import current, require
from smartlogger.api.db import database
from smartlogger.api.errors import ApiError, NotFound
from smartlogger.api.hygiene import Blueprint
from smartlogger.api.models import (
    BatteryString,
    CapacityTest,
    Job,
    LiveSnapshot,
    Report,
    Result,
    utcnow,
)
from smartlogger.api.resources.common import (
    files,
    get,
    logfile_out,
    org_id,
    page,
    scoped,
    session,
    uploader,
)
from smartlogger.api.schemas import (
    Id,
    JobSchema,
    LiveInSchema,
    LiveSchema,
    LogfileSchema,
    PageArgs,
    ReportSchema,
    ResultSchema,
    TestInSchema,
    TestPatchSchema,
    TestSchema,
)
from smartlogger.api.services import (
    ANALYSIS_MAX_SAMPLES,
    audit,
    build_pdf_report,
    inputs_digest,
    logfile_count,
    logfiles_of,
    report_key,
    shas_of,
    status_of,
    validate_test_metadata,
)

blp = Blueprint("tests", __name__, url_prefix="/api/tests", description="Capacity tests, results, reports.")

_PATCHABLE = ("name", "load", "rated_time", "end_v_per_cell", "end_voltage", "reference_temperature_c", "blocks",
              "datasheet_csv", "string_id")


def test_out(t: CapacityTest) -> dict[str, Any]:
    n = logfile_count(session(), t)
    out = {c: getattr(t, c) for c in ("id", "string_id", "name", "client_key", "load", "rated_time",
                                      "end_v_per_cell", "end_voltage", "reference_temperature_c", "blocks", "meta",
                                      "created_at")}
    out["logfiles"] = n
    out["status"] = status_of(session(), t, n)
    return out


def schedule_if_complete(t: CapacityTest) -> Job | None:
    """Enqueue the analysis when the test has all its logfiles (idempotent by input digest)."""
    if logfile_count(session(), t) < t.blocks:
        return None
    shas = shas_of(session(), t)
    return jobq.enqueue(current_app._get_current_object(), t.org_id, "analyse", t.id,  # type: ignore[attr-defined]
                        inputs_digest(t, shas))


class TestFilter(PageArgs):
    __test__ = False
    string_id = Id()
    client_key = String(validate=Length(min=1, max=100),
                        metadata={"description": "the test with this client key (test.json's)"})


@blp.route("", methods=["GET"])
@require("viewer")
@blp.arguments(TestFilter, location="query")
@blp.response(200, TestSchema(many=True))
def list_tests(args: dict[str, Any]) -> list[dict[str, Any]]:
    q = scoped(CapacityTest)
    if "string_id" in args:
        q = q.where(CapacityTest.string_id == args["string_id"])
    if "client_key" in args:
        q = q.where(CapacityTest.client_key == args["client_key"])
    return [test_out(t) for t in page(q, args, CapacityTest.id)]


@blp.route("", methods=["POST"])
@require("technician")
@blp.arguments(TestInSchema)
@blp.response(201, TestSchema)
@blp.alt_response(200, schema=TestSchema, description="a test with this client_key already exists")
def create_test(data: dict[str, Any]) -> Any:
    """Create a test (load, rated time or datasheet, metadata). Same ``client_key`` -> existing test."""
    s = session()
    if data["client_key"] is not None:
        existing = s.scalar(scoped(CapacityTest).where(CapacityTest.client_key == data["client_key"]))
        if existing is not None:
            return test_out(existing), 200
    string = get(BatteryString, data["string_id"], "string") if data["string_id"] is not None else None
    blocks = data["blocks"] or (string.blocks if string is not None else None)
    if blocks is None:
        raise ApiError(422, "validation", "blocks: give the number of logfiles expected, or a string_id",
                       field="blocks")
    meta = data.pop("metadata")
    data["blocks"] = blocks
    t = CapacityTest(org_id=org_id(), created_by=current().user_id, meta=meta, **data)
    validate_test_metadata(t)  # MetadataError -> 422 naming the field
    s.add(t)
    try:
        s.commit()
    except IntegrityError:
        s.rollback()
        existing = s.scalar(scoped(CapacityTest).where(CapacityTest.client_key == data["client_key"]))
        if existing is None:
            raise
        return test_out(existing), 200
    return test_out(t), 201


@blp.route("/<int:test_id>", methods=["GET"])
@require("viewer")
@blp.response(200, TestSchema)
def get_test(test_id: int) -> dict[str, Any]:
    return test_out(get(CapacityTest, test_id, "test"))


@blp.route("/<int:test_id>", methods=["PATCH"])
@require("technician")
@blp.arguments(TestPatchSchema(partial=True))
@blp.response(200, TestSchema)
def patch_test(data: dict[str, Any], test_id: int) -> dict[str, Any]:
    """Correct the test metadata; a complete test is re-analysed with it."""
    t = get(CapacityTest, test_id, "test")
    if data.get("string_id") is not None:
        get(BatteryString, data["string_id"], "string")
    for k in _PATCHABLE:
        if k in data and (k != "blocks" or data[k] is not None):
            setattr(t, k, data[k])
    if "metadata" in data:
        t.meta = data["metadata"]
    validate_test_metadata(t)
    session().commit()
    schedule_if_complete(t)
    return test_out(t)


@blp.route("/<int:test_id>", methods=["DELETE"])
@require("admin")
@blp.response(204)
def delete_test(test_id: int) -> None:
    """Delete a test with its result and reports (its logfiles stay, detached)."""
    t = get(CapacityTest, test_id, "test")
    s = session()
    for lf in logfiles_of(s, t):
        lf.test_id = None
    audit(s, org_id(), current().user_id, "delete", "test", t.id, detail=t.name)
    s.delete(t)
    s.commit()


@blp.route("/<int:test_id>/logfiles", methods=["GET"])
@require("viewer")
@blp.response(200, LogfileSchema(many=True))
def list_test_logfiles(test_id: int) -> list[dict[str, Any]]:
    t = get(CapacityTest, test_id, "test")
    return [logfile_out(lf) for lf in logfiles_of(session(), t)]


@blp.route("/<int:test_id>/analyse", methods=["POST"])
@require("technician")
@blp.response(202, JobSchema)
def analyse(test_id: int) -> Job:
    """(Re-)analyse the test now with the logfiles it has (idempotent for the same inputs)."""
    t = get(CapacityTest, test_id, "test")
    shas = shas_of(session(), t)
    if not shas:
        raise ApiError(409, "conflict", "the test has no logfiles yet")
    return jobq.enqueue(current_app._get_current_object(), t.org_id, "analyse", t.id,  # type: ignore[attr-defined]
                        inputs_digest(t, shas))


class _BodyCache:
    """Serialized result bodies by (result id, inputs digest): a result never changes in place.

    A hit still needs the tenant-filtered query for the id and digest, so the cache can only
    answer a caller who may see the row. Bounded by entries and bytes (a 240-block result is
    ~200 kB of JSON).
    """

    def __init__(self, max_entries: int = 64, max_bytes: int = 64 * 1024 * 1024) -> None:
        self._items: OrderedDict[tuple[int, str], bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.max_entries, self.max_bytes = max_entries, max_bytes

    def get(self, key: tuple[int, str]) -> bytes | None:
        with self._lock:
            body = self._items.get(key)
            if body is not None:
                self._items.move_to_end(key)
            return body

    def put(self, key: tuple[int, str], body: bytes) -> None:
        with self._lock:
            if key in self._items:
                return
            self._items[key] = body
            self._bytes += len(body)
            while self._items and (len(self._items) > self.max_entries or self._bytes > self.max_bytes):
                _, old = self._items.popitem(last=False)
                self._bytes -= len(old)


_RESULT_BODIES = _BodyCache()
# (id, inputs digest) of a test's result. Core on the session's connection, built once: the ORM
# path (statement build, cache key, tenant-filter options) was a large part of a cached read's CPU.
# It bypasses the session's tenant filter, so it names the organisation itself.
_RESULTS = cast(Table, Result.__table__)
_RESULT_META = select(_RESULTS.c.id, _RESULTS.c.inputs_sha256).where(
    _RESULTS.c.org_id == bindparam("org_id"), _RESULTS.c.test_id == bindparam("test_id"))


@blp.route("/<int:test_id>/results", methods=["GET"])
@require("viewer")
@blp.response(200, ResultSchema)
@blp.alt_response(304, description="not modified (If-None-Match matched the ETag)")
def get_results(test_id: int) -> Any:
    """The analysis result (per-block capacity, SOH, exceedances; ``smartlogger test schema``).

    The hot path reads only the row's id and digest; the serialized body is cached per result.
    The ETag is the analysed inputs' digest, so a client polling with ``If-None-Match`` gets
    304 until the test is re-analysed.
    """
    s = session()
    if "customer" in s.info:  # a customer's viewer: the ORM query, so the session's customer filter applies
        meta = s.execute(select(Result.id, Result.inputs_sha256).where(
            Result.org_id == org_id(), Result.test_id == test_id)).first()
    else:  # the hot path: one prebuilt Core statement naming the organisation itself
        meta = database(current_app).read_row(_RESULT_META, {"org_id": org_id(), "test_id": test_id})
    if meta is None:
        get(CapacityTest, test_id, "test")  # 404 for a test that is not there (or not ours)
        raise NotFound("result (the test is not analysed yet)")
    etag = f'"{meta.inputs_sha256}"'
    if etag in request.headers.get("If-None-Match", ""):
        return Response(status=304, headers={"ETag": etag})
    key = (meta.id, meta.inputs_sha256)
    body = _RESULT_BODIES.get(key)
    if body is None:
        row = s.get(Result, meta.id)
        body = json.dumps(ResultSchema().dump(row), separators=(",", ":")).encode()
        _RESULT_BODIES.put(key, body)
    return Response(body, mimetype="application/json", headers={"ETag": etag})


def _report_state(t: CapacityTest) -> dict[str, Any]:
    s = session()
    result = s.scalar(select(Result).where(Result.org_id == t.org_id, Result.test_id == t.id))
    if result is None:
        raise ApiError(409, "conflict", "the test has no result yet; the report follows the analysis")
    key = report_key(result)
    rep = s.scalar(select(Report).where(Report.org_id == t.org_id, Report.test_id == t.id, Report.key == key))
    job = s.scalar(select(Job).where(Job.key == jobq.job_key(t.org_id, "report", key)))
    if rep is not None:
        status = "ready"
    elif job is None:
        status = "not_requested"
    else:
        status = {"finished": "ready"}.get(job.status, job.status)
    return {"id": rep.id if rep else None, "test_id": t.id, "status": status, "job": job,
            "size": rep.size if rep else None, "sha256": rep.sha256 if rep else None,
            "download": url_for("tests.download_report", test_id=t.id) if rep else None}


@blp.route("/<int:test_id>/report", methods=["POST"])
@require("viewer")
@blp.response(202, ReportSchema)
def request_report(test_id: int) -> dict[str, Any]:
    """Generate the string report workbook in the background (cached: ready at once if made)."""
    t = get(CapacityTest, test_id, "test")
    state = _report_state(t)
    if state["status"] in ("ready", "queued", "running"):
        return state
    result = session().scalar(select(Result).where(Result.org_id == t.org_id, Result.test_id == t.id))
    assert result is not None
    jobq.enqueue(current_app._get_current_object(), t.org_id, "report", t.id,  # type: ignore[attr-defined]
                 report_key(result))
    return _report_state(t)


@blp.route("/<int:test_id>/report", methods=["GET"])
@require("viewer")
@blp.response(200, ReportSchema)
def get_report(test_id: int) -> dict[str, Any]:
    return _report_state(get(CapacityTest, test_id, "test"))


@blp.route("/<int:test_id>/report.pdf", methods=["GET"])
@require("viewer")
@blp.response(200, {"type": "string", "format": "binary"}, content_type="application/pdf")
def download_pdf_report(test_id: int) -> Response:
    """The customer report as PDF (verdict first; the workbook Summary's content), built from the stored
    result and logfiles on request (audited as a report download)."""
    t = get(CapacityTest, test_id, "test")
    budget = int(current_app.config.get("ANALYSIS_MAX_SAMPLES") or ANALYSIS_MAX_SAMPLES)
    data = build_pdf_report(session(), files(), t, max_samples=budget)
    who = uploader()
    audit(session(), who.org_id, who.user_id, "download", "report_pdf", t.id,
          sha256=hashlib.sha256(data).hexdigest(), remote_addr=who.remote_addr)
    session().commit()
    return Response(data, mimetype="application/pdf",
                    headers={"Content-Disposition": f'attachment; filename="test-{t.id}-report.pdf"'})


@blp.route("/<int:test_id>/report.xlsx", methods=["GET"])
@require("viewer")
@blp.response(200, {"type": "string", "format": "binary"},
              content_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
def download_report(test_id: int) -> Response:
    t = get(CapacityTest, test_id, "test")
    state = _report_state(t)
    if state["status"] != "ready":
        raise NotFound("report (request it with POST .../report)")
    data = files().get(state["sha256"])
    who = uploader()
    audit(session(), who.org_id, who.user_id, "download", "report", state["id"], sha256=state["sha256"],
          remote_addr=who.remote_addr)
    session().commit()
    name = f"test-{t.id}-report.xlsx"
    return Response(data, mimetype="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})




def _live_out(t: CapacityTest, row: LiveSnapshot | None) -> dict[str, Any]:
    if row is None:
        return {"test_id": t.id, "received_at": None, "age_s": None, "snapshot": None}
    age = max(0.0, (utcnow() - row.received_at).total_seconds())
    return {"test_id": t.id, "received_at": row.received_at, "age_s": round(age, 1), "snapshot": row.snapshot}


@blp.route("/<int:test_id>/live", methods=["PUT"])
@require("technician")
@blp.arguments(LiveInSchema)
@blp.response(200, LiveSchema)
def put_live(data: dict[str, Any], test_id: int) -> dict[str, Any]:
    """The watcher's newest live state of the test (``smartlogger test watch --post``); replaces
    the one before (the server keeps only the newest)."""
    t = get(CapacityTest, test_id, "test")
    s = session()
    user = current().user_id
    row = s.scalar(select(LiveSnapshot).where(LiveSnapshot.test_id == t.id))
    if row is None:
        row = LiveSnapshot(org_id=t.org_id, test_id=t.id, snapshot=data, received_at=utcnow(), posted_by=user)
        s.add(row)
        try:
            s.commit()
            return _live_out(t, row)
        except IntegrityError:  # another post made the row first: replace it as below
            s.rollback()
            row = s.scalar(select(LiveSnapshot).where(LiveSnapshot.test_id == t.id))
            if row is None:
                raise
    row.snapshot, row.received_at, row.posted_by = data, utcnow(), user
    s.commit()
    return _live_out(t, row)


@blp.route("/<int:test_id>/live", methods=["GET"])
@require("viewer")
@blp.response(200, LiveSchema)
def get_live(test_id: int) -> dict[str, Any]:
    """The newest live state posted for the test, with its age (``snapshot`` null: none yet)."""
    t = get(CapacityTest, test_id, "test")
    return _live_out(t, session().scalar(select(LiveSnapshot).where(LiveSnapshot.test_id == t.id)))
