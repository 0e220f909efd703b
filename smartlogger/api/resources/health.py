"""``/api/health``: health probe for load balancers (public, no data).

200 ``{"status": "ok"}`` when this host can serve requests; 503 ``{"status": "degraded"}`` with
Retry-After when the file store it needs is unavailable, refuses our credentials or bucket, or
is full (``api.health.StoreHealth``: checked at most every 2 s). The database is not probed here:
its failures are answered per request (503, ``api.errors``).
"""

# mypy: disable-error-code="untyped-decorator"
# (flask-smorest ships no type hints; its decorators keep our signatures at run time.)

from __future__ import annotations

from typing import Any

from flask import current_app, jsonify
from flask_smorest import Blueprint

from smartlogger import __version__
from smartlogger.api.health import StoreHealth
from smartlogger.api.schemas import HealthSchema

blp = Blueprint("health", __name__, url_prefix="/api", description="Health probe.")


@blp.route("/health", methods=["GET"])
@blp.response(200, HealthSchema)
@blp.alt_response(503, schema=HealthSchema, description="degraded: the file store cannot serve requests")
@blp.doc(security=[])
def health() -> Any:
    """Health: the process answers and its file store can take and serve blobs (no authentication)."""
    store: StoreHealth = current_app.extensions["smartlogger_store_health"]
    state = store.state()
    body = {"status": "ok" if state.status == "ok" else "degraded", "version": __version__,
            "store": state.to_dict()}
    if state.status == "ok":
        return body
    resp = jsonify(body)
    resp.status_code = 503
    resp.headers["Retry-After"] = str(state.retry_after_s)
    return resp
