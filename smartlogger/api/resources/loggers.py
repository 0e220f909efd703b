"""``/api/loggers``: the organisation's loggers (created on first upload, or registered by hand)."""

# mypy: disable-error-code="untyped-decorator"
# (flask-smorest ships no type hints; its decorators keep our signatures at run time.)

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint
from sqlalchemy.exc import IntegrityError

from smartlogger.api.auth import require
from smartlogger.api.errors import ApiError
from smartlogger.api.models import Logger
from smartlogger.api.resources.common import get, org_id, page, scoped, session
from smartlogger.api.schemas import LoggerSchema, PageArgs

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
