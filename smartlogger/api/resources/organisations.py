"""``/api/organisations`` and ``/api/me``: the caller's own organisation and identity.

Organisations are created from the CLI (``smartlogger admin create-org``); over
the API a user only ever sees the organisation they belong to.
"""

# mypy: disable-error-code="untyped-decorator"
# (flask-smorest ships no type hints; its decorators keep our signatures at run time.)

from __future__ import annotations

from typing import Any

from smartlogger.api.auth import current, require
from smartlogger.api.errors import NotFound
from smartlogger.api.hygiene import Blueprint
from smartlogger.api.models import Organisation, User
from smartlogger.api.resources.common import session
from smartlogger.api.schemas import MeSchema, OrganisationPatchSchema, OrganisationSchema

blp = Blueprint("organisations", __name__, url_prefix="/api", description="Organisations (tenants).")


def _own(org_id: int) -> Organisation:
    if org_id != current().org_id:
        raise NotFound("organisation")
    org = session().get(Organisation, org_id)
    if org is None:
        raise NotFound("organisation")
    return org


@blp.route("/me", methods=["GET"])
@require("viewer")
@blp.response(200, MeSchema)
def me() -> dict[str, Any]:
    """The calling user and their organisation."""
    p = current()
    return {"user": session().get(User, p.user_id), "organisation": session().get(Organisation, p.org_id)}


@blp.route("/organisations", methods=["GET"])
@require("viewer")
@blp.response(200, OrganisationSchema(many=True))
def list_organisations() -> list[Organisation]:
    """The organisations visible to the caller (their own)."""
    return [_own(current().org_id)]


@blp.route("/organisations/<int:org_id>", methods=["GET"])
@require("viewer")
@blp.response(200, OrganisationSchema)
def get_organisation(org_id: int) -> Organisation:
    return _own(org_id)


@blp.route("/organisations/<int:org_id>", methods=["PATCH"])
@require("admin")
@blp.arguments(OrganisationPatchSchema)
@blp.response(200, OrganisationSchema)
def patch_organisation(data: dict[str, Any], org_id: int) -> Organisation:
    """Rename the organisation (admin)."""
    org = _own(org_id)
    org.name = data["name"]
    session().commit()
    return org
