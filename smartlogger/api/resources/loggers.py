"""``/api/loggers``: the organisation's loggers (created on first upload, or registered by hand)."""

# mypy: disable-error-code="untyped-decorator"
# (flask-smorest ships no type hints; its decorators keep our signatures at run time.)

from __future__ import annotations

from typing import Any

from flask import request
from sqlalchemy.exc import IntegrityError

from smartlogger.api.auth import current, require
from smartlogger.api.errors import ApiError
from smartlogger.api.hygiene import Blueprint
from smartlogger.api.models import Logger
from smartlogger.api.resources.common import get, org_id, page, scoped, session
from smartlogger.api.schemas import LoggerKindSchema, LoggerSchema, PageArgs
from smartlogger.api.services import audit, holds_logfiles

blp = Blueprint("loggers", __name__, url_prefix="/api/loggers", description="Loggers (serial, generation).")


@blp.route("", methods=["GET"])
@require("viewer")
@blp.arguments(PageArgs, location="query")
@blp.response(200, LoggerSchema(many=True))
def list_loggers(args: dict[str, Any]) -> list[Logger]:
    return page(scoped(Logger), args, Logger.id)


@blp.route("", methods=["POST"])
@require("technician")
@blp.arguments(LoggerSchema)
@blp.response(201, LoggerSchema)
def create_logger(data: dict[str, Any]) -> Logger:
    simulated = data.pop("simulated", None)
    row = Logger(org_id=org_id(), simulated=data["serial"].startswith("SIM-") if simulated is None else simulated,
                 **data)
    session().add(row)
    try:
        session().commit()
    except IntegrityError:
        session().rollback()
        raise ApiError(409, "conflict", f"logger {data['serial']} is already registered",
                       field="serial") from None
    return row


@blp.route("/<int:logger_id>", methods=["GET"])
@require("viewer")
@blp.response(200, LoggerSchema)
def get_logger(logger_id: int) -> Logger:
    return get(Logger, logger_id, "logger")


@blp.route("/<int:logger_id>", methods=["PATCH"])
@require("admin")
@blp.arguments(LoggerKindSchema)
@blp.response(200, LoggerSchema)
def set_logger_kind(data: dict[str, Any], logger_id: int) -> Logger:
    """Correct a logger's registered kind (hardware or SIMULATED/REPLAYED): only while the organisation
    keeps none of its logfiles (delete a mistaken upload first); its custody starts afresh. Audited."""
    row = get(Logger, logger_id, "logger")
    if data["simulated"] == row.simulated:
        return row
    s = session()
    if holds_logfiles(s, row.id):
        raise ApiError(409, "conflict", f"{row.serial} has logfiles of its registered kind: its kind cannot "
                                        "change while they are kept", field="simulated")
    row.simulated = data["simulated"]
    row.device_key, row.max_pull_counter = None, None
    kind = "SIMULATED/REPLAYED" if row.simulated else "hardware"
    audit(s, org_id(), current().user_id, "logger_kind_changed", "logger", row.id,
          remote_addr=request.remote_addr or "", detail=f"{row.serial} registered again as a {kind} logger")
    s.commit()
    return row
