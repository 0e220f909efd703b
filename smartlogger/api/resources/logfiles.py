"""``/api/logfiles``: upload (content-addressed, validated), list, download, verify, receipt.

Upload is the raw file as the request body (``Content-Type:
application/octet-stream`` or ``application/vnd.smartlogger.slog``), at most
``MAX_CONTENT_LENGTH`` bytes. The same bytes again answer 200 with the existing
logfile (201 the first time). A body that is not a logfile, or that the decoder
rejects, is answered 422 with the decoder's message and nothing is stored. The
sample payloads are decoded after the response by the logfile's "check" job,
which marks a file whose payloads do not decode ``unreadable`` (docs/API.md).
"""

# mypy: disable-error-code="untyped-decorator"
# (flask-smorest ships no type hints; its decorators keep our signatures at run time.)

from __future__ import annotations

from typing import Any

from flask import Response, current_app, request
from marshmallow import fields

from smartlogger.api.auth import current, require
from smartlogger.api.db import database
from smartlogger.api.errors import ApiError
from smartlogger.api.hygiene import Blueprint
from smartlogger.api.models import CapacityTest, Logfile, Logger
from smartlogger.api.queue import submit_check
from smartlogger.api.resources.common import (
    after_commit,
    files,
    get,
    logfile_out,
    org_id,
    page,
    scoped,
    server_key,
    session,
    trust,
    uploader,
)
from smartlogger.api.resources.tests import schedule_if_complete
from smartlogger.api.schemas import (
    AttachSchema,
    Id,
    LogfileSchema,
    PageArgs,
    ReceiptSchema,
    SeriesArgs,
    SeriesSchema,
    UploadArgs,
    VerificationSchema,
)
from smartlogger.api.services import audit, ingest_logfile
from smartlogger.errors import LogfileError
from smartlogger.export.chart_series import chart_series

blp = Blueprint("logfiles", __name__, url_prefix="/api/logfiles",
                description="Logfiles: immutable, content-addressed by SHA-256.")

UPLOAD_TYPES = ("application/octet-stream", "application/vnd.smartlogger.slog")
SLOG_TYPE = "application/vnd.smartlogger.slog"


class LogfileFilter(PageArgs):
    test_id = Id()
    sha256 = fields.String()
    serial = fields.String()


@blp.route("", methods=["GET"])
@require("viewer")
@blp.arguments(LogfileFilter, location="query")
@blp.response(200, LogfileSchema(many=True))
def list_logfiles(args: dict[str, Any]) -> list[dict[str, Any]]:
    q = scoped(Logfile)
    if "test_id" in args:
        q = q.where(Logfile.test_id == args["test_id"])
    if "sha256" in args:
        q = q.where(Logfile.sha256 == args["sha256"].lower())
    if "serial" in args:
        q = q.join(Logger, Logger.id == Logfile.logger_id).where(Logger.serial == args["serial"])
    return [logfile_out(lf) for lf in page(q, args, Logfile.id)]


def upload_engine(app: Any) -> Any:
    """The autocommit engine for the one-statement upload on PostgreSQL; None elsewhere (SQLite)."""
    engine = database(app).autocommit
    return engine if engine is not None and engine.dialect.name == "postgresql" else None


@blp.route("", methods=["POST"])
@require("technician")
@blp.arguments(UploadArgs(), location="query")  # an instance: webargs builds a class anew per request
@blp.doc(requestBody={"required": True, "content": {
    t: {"schema": {"type": "string", "format": "binary"}} for t in UPLOAD_TYPES}})
@blp.response(201, LogfileSchema)
@blp.alt_response(200, schema=LogfileSchema, description="these bytes were already uploaded")
def upload(args: dict[str, Any]) -> Any:
    """Upload one logfile (raw body). Returns the existing logfile for bytes already uploaded."""
    ctype = (request.mimetype or "").lower()
    if ctype not in UPLOAD_TYPES:
        raise ApiError(415, "unsupported_media_type",
                       f"Content-Type must be one of {', '.join(UPLOAD_TYPES)}, not {ctype or 'missing'}",
                       field="Content-Type")
    data = request.get_data(cache=False)
    if not data:
        raise ApiError(422, "invalid_logfile", "empty body: not a logfile", field="body")
    app = current_app._get_current_object()  # type: ignore[attr-defined]  # the real app, for after the request
    row, created = ingest_logfile(session(), files(), server_key(), uploader(), data,
                                  test_id=args["test_id"], logger_ids=app.extensions["smartlogger_logger_ids"],
                                  on_check_job=lambda job_id: submit_check(app, job_id),
                                  autocommit=upload_engine(app), trust=trust(),
                                  max_samples=int(app.config["MAX_UPLOAD_SAMPLES"]))
    if row.test_id is not None:
        test_id = row.test_id

        def schedule() -> None:
            t = session().get(CapacityTest, test_id)
            if t is not None:
                schedule_if_complete(t)

        after_commit(f"upload {row.sha256[:12]}: schedule test {test_id}", schedule)
    return logfile_out(row, created), 201 if created else 200


@blp.route("/<int:logfile_id>", methods=["GET"])
@require("viewer")
@blp.response(200, LogfileSchema)
def get_logfile(logfile_id: int) -> dict[str, Any]:
    return logfile_out(get(Logfile, logfile_id, "logfile"))


@blp.route("/<int:logfile_id>/test", methods=["PUT"])
@require("technician")
@blp.arguments(AttachSchema)
@blp.response(200, LogfileSchema)
def attach(data: dict[str, Any], logfile_id: int) -> dict[str, Any]:
    """Attach the logfile to a test (or detach with null). The bytes never change."""
    lf = get(Logfile, logfile_id, "logfile")
    t = get(CapacityTest, data["test_id"], "test") if data["test_id"] is not None else None
    lf.test_id = t.id if t is not None else None
    session().commit()
    if t is not None:
        schedule_if_complete(t)
    return logfile_out(lf)


@blp.route("/<int:logfile_id>/content", methods=["GET"])
@require("viewer")
@blp.response(200, {"type": "string", "format": "binary"}, content_type=SLOG_TYPE)
def download(logfile_id: int) -> Response:
    """The logfile's bytes, exactly as uploaded (SHA-256 in the ``Digest``-style header)."""
    lf = get(Logfile, logfile_id, "logfile")
    data = files().get(lf.sha256)
    who = uploader()
    audit(session(), who.org_id, who.user_id, "download", "logfile", lf.id, sha256=lf.sha256,
          remote_addr=who.remote_addr)
    session().commit()
    return Response(data, mimetype=SLOG_TYPE, headers={
        "Content-Disposition": f'attachment; filename="{lf.sha256[:16]}.slog"',
        "X-Content-SHA256": lf.sha256})


@blp.route("/<int:logfile_id>/series", methods=["GET"])
@require("viewer")
@blp.arguments(SeriesArgs(), location="query")
@blp.response(200, SeriesSchema)
def series(args: dict[str, Any], logfile_id: int) -> dict[str, Any]:
    """Voltage and temperature over a window of device time, reduced to at most ``max_points``
    points per quantity (min and max per time bucket), with the log's configurations: what a
    chart needs, without downloading and decoding the whole logfile (a 10-year log is ~6 MB).
    Audited as a download of the logfile."""
    lf = get(Logfile, logfile_id, "logfile")
    try:
        out = chart_series(files().get(lf.sha256), **args).to_dict()
    except LogfileError as err:
        raise ApiError(409, "conflict", f"the logfile's samples do not decode: {err}") from None
    who = uploader()
    audit(session(), who.org_id, who.user_id, "download", "logfile_series", lf.id, sha256=lf.sha256,
          remote_addr=who.remote_addr)
    session().commit()
    return {"logfile_id": lf.id, **out}


@blp.route("/<int:logfile_id>/verification", methods=["GET"])
@require("viewer")
@blp.response(200, VerificationSchema)
def verification(logfile_id: int) -> dict[str, Any]:
    """The evidence verification of the logfile (signature, chain, gaps, overwritten range, ...)."""
    lf = get(Logfile, logfile_id, "logfile")
    return {"logfile_id": lf.id, "sha256": lf.sha256, "report": lf.verification}


@blp.route("/<int:logfile_id>/receipt", methods=["GET"])
@require("viewer")
@blp.response(200, ReceiptSchema)
def receipt(logfile_id: int) -> dict[str, Any]:
    """The server's signed chain-of-custody receipt (upload time, uploader, SHA-256)."""
    lf = get(Logfile, logfile_id, "logfile")
    return {"receipt": lf.receipt, "signature": lf.receipt_signature, "algorithm": "Ed25519",
            "public_key_pem": server_key().public_pem()}


@blp.route("/<int:logfile_id>", methods=["DELETE"])
@require("admin")
@blp.response(204)
def delete_logfile(logfile_id: int) -> None:
    """Delete a logfile record (admin, audited). The bytes stay in the append-only file store."""
    lf = get(Logfile, logfile_id, "logfile")
    s = session()
    audit(s, org_id(), current().user_id, "delete", "logfile", lf.id, sha256=lf.sha256,
          remote_addr=request.remote_addr or "")
    s.delete(lf)
    s.commit()
    # The blob stays in the file store: another tenant may hold (or be uploading right now) the
    # same bytes, and a deleted record must not be able to take evidence with it.
