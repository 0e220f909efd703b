"""Sites -> battery systems -> strings -> block positions (one blueprint per resource).

A string is created with its number of blocks; its positions 1..N are created
with it (the label defaults to ``B<n>``) and carry the logger clipped onto each.
Parents are looked up in the caller's organisation, so a child can never be
hung under another tenant's parent.
"""

# mypy: disable-error-code="untyped-decorator"
# (flask-smorest ships no type hints; its decorators keep our signatures at run time.)

from __future__ import annotations

from typing import Any

from smartlogger.api.auth import current, require
from smartlogger.api.hygiene import Blueprint
from smartlogger.api.models import BatteryString, BatterySystem, BlockPosition, Logger, Site
from smartlogger.api.resources.common import get, org_id, page, scoped, session
from smartlogger.api.schemas import (
    Id,
    PageArgs,
    PositionPatchSchema,
    PositionSchema,
    SitePatchSchema,
    SiteSchema,
    StringSchema,
    SystemSchema,
)
from smartlogger.api.services import audit

sites = Blueprint("sites", __name__, url_prefix="/api/sites", description="Sites (battery rooms).")
systems = Blueprint("systems", __name__, url_prefix="/api/systems", description="Battery systems (UPS, ...).")
strings = Blueprint("strings", __name__, url_prefix="/api/strings", description="Battery strings.")
positions = Blueprint("positions", __name__, url_prefix="/api/positions", description="Block positions.")


class SiteFilter(PageArgs):
    pass


class SystemFilter(PageArgs):
    site_id = Id()


class StringFilter(PageArgs):
    system_id = Id()


def _delete(row: Any, kind: str) -> None:
    s = session()
    audit(s, org_id(), current().user_id, "delete", kind, row.id, detail=getattr(row, "name", ""))
    s.delete(row)
    s.commit()


# ----------------------------------------------------------------------------- sites


@sites.route("", methods=["GET"])
@require("viewer")
@sites.arguments(SiteFilter, location="query")
@sites.response(200, SiteSchema(many=True))
def list_sites(args: dict[str, Any]) -> list[Site]:
    return page(scoped(Site), args, Site.id)


@sites.route("", methods=["POST"])
@require("technician")
@sites.arguments(SiteSchema)
@sites.response(201, SiteSchema)
def create_site(data: dict[str, Any]) -> Site:
    row = Site(org_id=org_id(), **data)
    session().add(row)
    session().commit()
    return row


@sites.route("/<int:site_id>", methods=["GET"])
@require("viewer")
@sites.response(200, SiteSchema)
def get_site(site_id: int) -> Site:
    return get(Site, site_id, "site")


@sites.route("/<int:site_id>", methods=["PATCH"])
@require("technician")
@sites.arguments(SitePatchSchema)
@sites.response(200, SiteSchema)
def patch_site(data: dict[str, Any], site_id: int) -> Site:
    row = get(Site, site_id, "site")
    for k, v in data.items():
        setattr(row, k, v)
    session().commit()
    return row


@sites.route("/<int:site_id>", methods=["DELETE"])
@require("admin")
@sites.response(204)
def delete_site(site_id: int) -> None:
    """Delete a site with its systems, strings and positions (admin; tests keep their logfiles)."""
    _delete(get(Site, site_id, "site"), "site")


# ----------------------------------------------------------------------------- systems


@systems.route("", methods=["GET"])
@require("viewer")
@systems.arguments(SystemFilter, location="query")
@systems.response(200, SystemSchema(many=True))
def list_systems(args: dict[str, Any]) -> list[BatterySystem]:
    q = scoped(BatterySystem)
    if "site_id" in args:
        q = q.where(BatterySystem.site_id == args["site_id"])
    return page(q, args, BatterySystem.id)


@systems.route("", methods=["POST"])
@require("technician")
@systems.arguments(SystemSchema)
@systems.response(201, SystemSchema)
def create_system(data: dict[str, Any]) -> BatterySystem:
    get(Site, data["site_id"], "site")
    row = BatterySystem(org_id=org_id(), **data)
    session().add(row)
    session().commit()
    return row


@systems.route("/<int:system_id>", methods=["GET"])
@require("viewer")
@systems.response(200, SystemSchema)
def get_system(system_id: int) -> BatterySystem:
    return get(BatterySystem, system_id, "battery system")


@systems.route("/<int:system_id>", methods=["DELETE"])
@require("admin")
@systems.response(204)
def delete_system(system_id: int) -> None:
    _delete(get(BatterySystem, system_id, "battery system"), "system")


# ----------------------------------------------------------------------------- strings


@strings.route("", methods=["GET"])
@require("viewer")
@strings.arguments(StringFilter, location="query")
@strings.response(200, StringSchema(many=True))
def list_strings(args: dict[str, Any]) -> list[BatteryString]:
    q = scoped(BatteryString)
    if "system_id" in args:
        q = q.where(BatteryString.system_id == args["system_id"])
    return page(q, args, BatteryString.id)


@strings.route("", methods=["POST"])
@require("technician")
@strings.arguments(StringSchema)
@strings.response(201, StringSchema)
def create_string(data: dict[str, Any]) -> BatteryString:
    """Create a string and its block positions 1..blocks."""
    get(BatterySystem, data["system_id"], "battery system")
    s = session()
    row = BatteryString(org_id=org_id(), **data)
    s.add(row)
    s.flush()
    s.add_all(BlockPosition(org_id=org_id(), string_id=row.id, position=i, label=f"B{i}")
              for i in range(1, row.blocks + 1))
    s.commit()
    return row


@strings.route("/<int:string_id>", methods=["GET"])
@require("viewer")
@strings.response(200, StringSchema)
def get_string(string_id: int) -> BatteryString:
    return get(BatteryString, string_id, "string")


@strings.route("/<int:string_id>", methods=["DELETE"])
@require("admin")
@strings.response(204)
def delete_string(string_id: int) -> None:
    _delete(get(BatteryString, string_id, "string"), "string")


@strings.route("/<int:string_id>/positions", methods=["GET"])
@require("viewer")
@strings.response(200, PositionSchema(many=True))
def list_positions(string_id: int) -> list[BlockPosition]:
    get(BatteryString, string_id, "string")
    return list(session().scalars(scoped(BlockPosition).where(BlockPosition.string_id == string_id)
                                  .order_by(BlockPosition.position)))


# ----------------------------------------------------------------------------- positions


@positions.route("/<int:position_id>", methods=["GET"])
@require("viewer")
@positions.response(200, PositionSchema)
def get_position(position_id: int) -> BlockPosition:
    return get(BlockPosition, position_id, "block position")


@positions.route("/<int:position_id>", methods=["PATCH"])
@require("technician")
@positions.arguments(PositionPatchSchema)
@positions.response(200, PositionSchema)
def patch_position(data: dict[str, Any], position_id: int) -> BlockPosition:
    """Label a position or record which logger is clipped onto it."""
    row = get(BlockPosition, position_id, "block position")
    if data.get("logger_id") is not None:
        get(Logger, data["logger_id"], "logger")
    for k, v in data.items():
        setattr(row, k, v)
    session().commit()
    return row
