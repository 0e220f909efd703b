"""``/api/jobs/<id>``: status of a background job; ``/api/audit``: the audit log; ``/api/server-key``."""

# mypy: disable-error-code="untyped-decorator"
# (flask-smorest ships no type hints; its decorators keep our signatures at run time.)

from __future__ import annotations

from typing import Any

from marshmallow import fields

from smartlogger.api.auth import require
from smartlogger.api.hygiene import Blueprint
from smartlogger.api.models import AuditEvent, Job
from smartlogger.api.resources.common import get, page, scoped, server_key
from smartlogger.api.schemas import AuditSchema, JobSchema, PageArgs, ServerKeySchema

jobs = Blueprint("jobs", __name__, url_prefix="/api/jobs", description="Background job status.")
audit_blp = Blueprint("audit", __name__, url_prefix="/api/audit", description="Audit log (admin).")
keys = Blueprint("server_key", __name__, url_prefix="/api/server-key",
                 description="The server's receipt-signing public key.")


class AuditFilter(PageArgs):
    action = fields.String()


@jobs.route("/<int:job_id>", methods=["GET"])
@require("viewer")
@jobs.response(200, JobSchema)
def get_job(job_id: int) -> Job:
    return get(Job, job_id, "job")


@audit_blp.route("", methods=["GET"])
@require("admin")
@audit_blp.arguments(AuditFilter, location="query")
@audit_blp.response(200, AuditSchema(many=True))
def list_audit(args: dict[str, Any]) -> list[AuditEvent]:
    """Uploads, downloads, deletions and account changes, newest first."""
    q = scoped(AuditEvent)
    if "action" in args:
        q = q.where(AuditEvent.action == args["action"])
    return page(q, args, AuditEvent.id.desc())


@keys.route("", methods=["GET"])
@require("viewer")
@keys.response(200, ServerKeySchema)
def get_server_key() -> dict[str, Any]:
    k = server_key()
    return {"algorithm": "Ed25519", "public_key_pem": k.public_pem(), "fingerprint": k.fingerprint}
