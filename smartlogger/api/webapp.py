"""Serving the companion web app (``app_stub/``, static files) at ``/app/``.

Owns only the mapping of URLs to files: no templating, no data. The app talks
to the API over HTTP like any other client (docs/APP.md). ``APP_DIR`` overrides
where the files are; by default the ``app_stub`` folder next to the package
(a source checkout). If there is no such folder, nothing is served.
"""

from __future__ import annotations

from pathlib import Path

from flask import Flask, Response, redirect, send_from_directory
from werkzeug.wrappers import Response as WerkzeugResponse

import smartlogger

DEFAULT_APP_DIR = Path(smartlogger.__file__).resolve().parents[1] / "app_stub"
#: Types the stdlib ``mimetypes`` table may not know on every platform.
_TYPES = {".webmanifest": "application/manifest+json", ".js": "text/javascript; charset=utf-8",
          ".svg": "image/svg+xml", ".css": "text/css; charset=utf-8"}


def register(app: Flask) -> bool:
    """Serve the app at /app/ if its folder exists; returns whether it does."""
    root = Path(app.config.get("APP_DIR") or DEFAULT_APP_DIR)
    if not (root / "index.html").is_file():
        return False

    def _send(filename: str) -> Response:
        resp = send_from_directory(root, filename, max_age=0)  # revalidate: the service worker caches
        ctype = _TYPES.get(Path(filename).suffix.lower())
        if ctype:
            resp.headers["Content-Type"] = ctype
        return resp

    @app.route("/app/", endpoint="app_index")
    def app_index() -> Response:
        return _send("index.html")

    @app.route("/app/<path:filename>", endpoint="app_static")
    def app_static(filename: str) -> Response:
        return _send(filename)

    @app.route("/", endpoint="root")
    @app.route("/app", endpoint="app_redirect")
    def to_app() -> WerkzeugResponse:
        return redirect("/app/", code=302)

    return True
