"""Helpers every resource blueprint uses: the session, the file store, tenant-scoped lookups.

Lookups always name the caller's organisation explicitly (on top of the
session's automatic tenant filter), and a row of another organisation is
reported exactly like a missing one: 404, never 403.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from flask import current_app, request
from sqlalchemy import Select, select

from smartlogger.api.auth import current
from smartlogger.api.db import TenantSession, database
from smartlogger.api.filestore import FileStore
from smartlogger.api.models import Logfile, Logger
from smartlogger.api.receipts import ServerKey
from smartlogger.api.services import Uploader, get_in_org

T = TypeVar("T")
log = logging.getLogger("smartlogger.api")


def session() -> TenantSession:
    return database(current_app).session


def files() -> FileStore:
    store: FileStore = current_app.extensions["smartlogger_files"]
    return store


def server_key() -> ServerKey:
    key: ServerKey = current_app.extensions["smartlogger_key"]
    return key


def trust() -> tuple[Any, ...]:
    """The trust list logfiles are verified against (``TRUST_FILE``)."""
    roots: tuple[Any, ...] = current_app.extensions["smartlogger_trust"]
    return roots


def org_id() -> int:
    return current().org_id


def get(model: type[T], obj_id: int, what: str) -> T:
    row: T = get_in_org(session(), model, obj_id, org_id(), what)
    return row


def scoped(model: Any) -> Select[Any]:
    return select(model).where(model.org_id == org_id())


def page(query: Select[Any], args: dict[str, Any], order: Any) -> list[Any]:
    return list(session().scalars(query.order_by(order).limit(args["limit"]).offset(args["offset"])))


def uploader() -> Uploader:
    p = current()
    return Uploader(p.user_id, p.org_id, p.email, request.remote_addr or "")


def logfile_out(lf: Logfile, created: bool = False) -> dict[str, Any]:
    """A logfile row as the API shows it (``LogfileSchema``)."""
    out = {c: getattr(lf, c) for c in ("id", "sha256", "size", "logger_id", "test_id", "block_position",
                                       "format_version", "verification_status", "authority", "device_key",
                                       "pull_counter", "uploaded_by", "uploaded_at")}
    out["markers"] = list(lf.markers or [])
    out["custody"] = list(lf.custody or [])
    out["serial"] = lf.receipt.get("serial") or (
        session().scalar(scoped(Logger).where(Logger.id == lf.logger_id).with_only_columns(Logger.serial))
        or "")
    out["created"] = created
    return out


def after_commit(what: str, fn: Callable[[], T]) -> T | None:
    """Run follow-up work of a request whose own change is already committed (an upload's
    analysis scheduling, say). If it fails (the database went away meanwhile), that is logged and
    the request still gets its answer: it did what it was asked, and a 5xx would tell the client
    otherwise (a 503 promises that nothing was written). What did not happen is picked up later
    (the next upload to the test, ``POST /api/tests/{id}/analyse``)."""
    try:
        return fn()
    except Exception:
        log.warning("%s: could not run after the commit; left for later", what, exc_info=True)
        try:
            session().rollback()
        except Exception:  # the connection is gone: nothing to roll back
            log.debug("rollback after a failed follow-up failed too", exc_info=True)
        return None
