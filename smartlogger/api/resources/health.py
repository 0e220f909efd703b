"""``/api/health``: liveness probe for load balancers (public, no data)."""

# mypy: disable-error-code="untyped-decorator"
# (flask-smorest ships no type hints; its decorators keep our signatures at run time.)

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint

from smartlogger import __version__
from smartlogger.api.schemas import HealthSchema

blp = Blueprint("health", __name__, url_prefix="/api", description="Liveness probe.")


@blp.route("/health", methods=["GET"])
@blp.response(200, HealthSchema)
@blp.doc(security=[])
def health() -> dict[str, Any]:
    """Liveness: the process answers (no database access, no authentication)."""
    return {"status": "ok", "version": __version__}
