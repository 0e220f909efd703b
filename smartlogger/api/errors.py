"""One JSON error shape for every failure the API returns.

Owns ``ApiError`` (raised by views and services) and the translation of every
other failure (werkzeug HTTP errors incl. 404/405/413, webargs validation,
library errors, unexpected exceptions) into::

    {"error": {"code": "<snake_case>", "message": "<one line>", "field": "<dotted path>"?}}

``field`` is present when one input field is at fault (e.g. ``json.load`` or
``body``). Unexpected exceptions are logged with their traceback on the server
and answered with a generic 500: no stack trace ever leaves the process.

Honest status codes for faults of the machinery (docs/API.md, "Status codes"):

- the database connection lost before anything of the request was committed: 503
  ``unavailable`` with ``Retry-After`` (nothing was written, retry);
- lost while committing, or after a commit of this request: 500 ``outcome_unknown`` (some of
  it may have been written; the request's own idempotency, e.g. an upload's SHA-256, makes a
  retry safe) - never a 503, whose promise is that nothing was written;
- the database's or the file store's disk full: 507 ``insufficient_storage`` (nothing written);
- the file store failing or unreachable: 503 ``store_unavailable`` with ``Retry-After``;
- a stored blob missing or damaged: 500 ``blob_missing`` / ``blob_damaged`` (never served).

Which of the first two applies is known from ``db.write_state()``: the database extension
notes when a request's transaction starts to commit and when it has committed.
"""

from __future__ import annotations

import logging
from typing import Any

import marshmallow as ma
from flask import Flask, Response, current_app, jsonify, request
from sqlalchemy import exc
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from smartlogger.api.db import write_state
from smartlogger.api.filestore import (
    BlobDamaged,
    BlobMissing,
    FileStoreError,
    StoreFull,
    StoreUnavailable,
)
from smartlogger.errors import AnalysisError, ConfigError, LogfileError, SmartLoggerError

log = logging.getLogger("smartlogger.api")

#: werkzeug status -> our code
_CODES: dict[int, str] = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 409: "conflict", 413: "payload_too_large",
    415: "unsupported_media_type", 422: "validation", 429: "rate_limited", 500: "internal",
    503: "unavailable", 507: "insufficient_storage",
}
#: Seconds a client should wait before retrying after a 503 / 507.
RETRY_AFTER_UNAVAILABLE = "1"
RETRY_AFTER_STORE = "5"
RETRY_AFTER_FULL = "60"


class ApiError(SmartLoggerError):
    """An error with an HTTP status, a code, a message and optionally the field at fault."""

    def __init__(self, status: int, code: str, message: str, *, field: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers or {}
        super().__init__(message)


class NotFound(ApiError):
    def __init__(self, what: str) -> None:
        super().__init__(404, "not_found", f"{what} not found")


class Forbidden(ApiError):
    def __init__(self, message: str) -> None:
        super().__init__(403, "forbidden", message)


class ErrorBodySchema(ma.Schema):
    code = ma.fields.String(required=True, metadata={"description": "machine-readable error code"})
    message = ma.fields.String(required=True, metadata={"description": "one-line explanation"})
    field = ma.fields.String(metadata={"description": "dotted path of the input field at fault"})


class ErrorSchema(ma.Schema):
    """The one error shape (documented in OpenAPI as the default error response)."""

    error = ma.fields.Nested(ErrorBodySchema, required=True)


def error_response(status: int, code: str, message: str, field: str | None = None,
                   headers: dict[str, str] | None = None) -> Response:
    body: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        body["field"] = field
    resp = jsonify({"error": body})
    resp.status_code = status
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


def _first_field(messages: Any, prefix: str = "") -> tuple[str, str]:
    """The first (dotted field path, message) in a marshmallow/webargs messages tree."""
    if isinstance(messages, dict) and messages:
        key, val = next(iter(messages.items()))
        return _first_field(val, f"{prefix}.{key}" if prefix else str(key))
    if isinstance(messages, list) and messages:
        return _first_field(messages[0], prefix)
    return prefix, str(messages)


def http_exception_payload(error: HTTPException) -> Response:
    if isinstance(error.response, Response) and (error.code or 500) < 500:
        return error.response  # an answer built for it already (Flask-Limiter's on_breach, say)
    status = error.code or 500
    code = _CODES.get(status, "error")
    data = getattr(error, "data", None) or {}
    headers = dict(data.get("headers") or {})
    messages = data.get("messages") or data.get("errors")
    if messages:
        field, msg = _first_field(messages)
        # webargs nests by location ("json", "query"); keep it, it tells the client where to look.
        return error_response(status, "validation" if status == 422 else code,
                              f"{field}: {msg}" if field else msg, field or None, headers)
    message = data.get("message") or error.description or error.name
    if status == 405:
        message = "method not allowed on this resource"
        if isinstance(error, MethodNotAllowed) and error.valid_methods:
            # RFC 9110 15.5.6: a 405 lists the methods the resource supports.
            headers.setdefault("Allow", ", ".join(sorted(set(error.valid_methods))))
    elif status == 404:
        message = "not found"
    elif status == 413:
        message = "request body too large"
    elif status >= 500:
        message = "internal server error"
    return error_response(status, code, str(message), None, headers)


def database_full(err: BaseException) -> bool:
    """The database cannot write for lack of disk space (PostgreSQL SQLSTATE 53100 ``disk_full``,
    53400 ``configuration_limit_exceeded`` aside; SQLite ``SQLITE_FULL``)."""
    if not isinstance(err, exc.DBAPIError):
        return False
    orig = err.orig
    if getattr(orig, "pgcode", None) == "53100":
        return True
    return getattr(orig, "sqlite_errorcode", None) == 13  # SQLITE_FULL


def database_unreachable(err: BaseException) -> bool:
    """A lost or refused database connection (not a bad statement, not a full disk)."""
    if database_full(err):
        return False
    return isinstance(err, exc.DisconnectionError) or (
        isinstance(err, exc.DBAPIError) and (err.connection_invalidated or isinstance(err, exc.OperationalError)))


def outcome_unknown(message: str = "the database connection was lost while this request was being "
                                  "saved; it may or may not have been written: read it back, or retry "
                                  "(uploads and creates with a client_key are idempotent)") -> Response:
    return error_response(500, "outcome_unknown", message, headers={"Retry-After": RETRY_AFTER_UNAVAILABLE})


def store_error_response(err: FileStoreError) -> Response:
    """The answer to a file store failure. The client learns what to do; where the store is and
    what it said (bucket, endpoint, path) go to the server log only.

    Unavailable (unreachable, slow, refusing our bucket or credentials): 503 with Retry-After.
    Full: 507 with Retry-After. Either way the request changed nothing in the database (every
    upload writes its blob before its row). A blob the database names but the store cannot give
    back (missing, or bytes that do not match their SHA-256): 500 with its own code; retrying does
    not help, an administrator must restore it (``smartlogger admin store check`` lists them).
    """
    health = current_app.extensions.get("smartlogger_store_health")
    nothing = "" if request.method in ("GET", "HEAD") else "; nothing was stored"
    if isinstance(err, StoreFull):
        log.error("file store full: %s", err.message)
        if health is not None:
            health.note_failure(err)
        return error_response(507, "insufficient_storage", f"the file store is full{nothing}; retry later", headers={"Retry-After": str(err.retry_after_s)})
    if isinstance(err, StoreUnavailable):
        log.warning("file store unavailable: %s", err.message)
        if health is not None:
            health.note_failure(err)
        return error_response(503, "store_unavailable", f"the file store is unavailable{nothing}; "
                              f"retry in {err.retry_after_s} s", headers={"Retry-After": str(err.retry_after_s)})
    if isinstance(err, BlobMissing | BlobDamaged):
        log.error("file store: %s", err.message)
        what = "missing from" if isinstance(err, BlobMissing) else "damaged in"
        return error_response(500, "blob_missing" if isinstance(err, BlobMissing) else "blob_damaged",
                              f"the stored bytes {err.sha256} are {what} the file store and are not served; "
                              "the record is kept; an administrator must restore them from a backup")
    log.error("file store: %s", err.message)
    return error_response(500, "internal", "internal server error")


def register(app: Flask) -> None:
    """Install the handlers for non-HTTP exceptions (HTTP ones go through ``Api``)."""

    @app.errorhandler(FileStoreError)
    def _store_error(err: FileStoreError) -> Response:
        if write_state() is not None and not isinstance(err, BlobMissing | BlobDamaged):
            return outcome_unknown("the file store failed after part of this request was saved; "
                                   "read it back, or retry")
        return store_error_response(err)

    @app.errorhandler(ApiError)
    def _api_error(err: ApiError) -> Response:
        return error_response(err.status, err.code, err.message, err.field, err.headers)

    @app.errorhandler(LogfileError)
    def _logfile_error(err: LogfileError) -> Response:
        return error_response(422, "invalid_logfile", str(err), "body")

    @app.errorhandler(ConfigError)
    def _config_error(err: ConfigError) -> Response:
        return error_response(422, "validation", str(err), err.field)

    @app.errorhandler(AnalysisError)
    def _analysis_error(err: AnalysisError) -> Response:
        # Bad test metadata (MetadataError carries ``field``) is an input validation error.
        field = getattr(err, "field", None)
        return error_response(422, "validation" if field else "analysis", str(err), field)

    @app.errorhandler(Exception)
    def _unexpected(err: Exception) -> Response:
        if isinstance(err, HTTPException):
            return http_exception_payload(err)
        state = write_state()
        if database_full(err) and state != "committed":
            log.error("database disk full: %s", err)
            return error_response(507, "insufficient_storage", "the server's database is out of disk "
                                  "space; nothing was written, retry later",
                                  headers={"Retry-After": RETRY_AFTER_FULL})
        if database_unreachable(err):
            # The pool replaces broken connections (db._ping_when_idle); the client retries.
            log.warning("database unavailable (%s): %s", state or "nothing written", err)
            if state is not None:  # committing or committed: a 503 would claim nothing was written
                return outcome_unknown()
            return error_response(503, "unavailable", "the database is unavailable; nothing was "
                                  "written, retry shortly", headers={"Retry-After": RETRY_AFTER_UNAVAILABLE})
        log.exception("unhandled error")
        return error_response(500, "internal", "internal server error")
