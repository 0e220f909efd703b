"""``/api/docs``: the interactive API documentation, from assets served by this server.

The docs page lives on the origin where the companion app keeps its bearer token, so it
loads nothing from elsewhere: Swagger UI's ``dist`` files come from the ``flask-swagger-ui``
package (a pinned dependency; only its files are used, not its blueprint, whose page has an
inline script), served under ``/api/docs/assets/``, and the page names each with a
Subresource Integrity hash computed from the bytes served. The start-up code is a small file
of ours (no inline script), so the page's Content-Security-Policy allows scripts from this
origin only.

Owns the page, its assets and its CSP (``DOCS_CSP``). flask-smorest's own Swagger UI route is
switched off (``OPENAPI_SWAGGER_UI_PATH`` None); the OpenAPI document stays its
(``/api/openapi.json``).
"""

from __future__ import annotations

import base64
import hashlib
from importlib import resources
from importlib.metadata import version

from flask import Flask, Response, abort, request

#: What the docs page may load: its own scripts and styles (Swagger UI sets inline style
#: attributes, hence 'unsafe-inline' for styles only), the OpenAPI document, no framing.
DOCS_CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
            "frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
_ASSETS = ("swagger-ui.css", "swagger-ui-bundle.js")
_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}
_INIT_JS = (b'"use strict";\n// Start Swagger UI on this server\'s OpenAPI document (served by /api/docs).\n'
            b'window.ui = SwaggerUIBundle({url: "/api/openapi.json", dom_id: "#swagger-ui", '
            b'deepLinking: true});\n')


def _sri(data: bytes) -> str:
    return "sha384-" + base64.b64encode(hashlib.sha384(data).digest()).decode()


def register(app: Flask) -> None:
    """Serve ``/api/docs`` and its assets (public, like the OpenAPI document)."""
    dist = resources.files("flask_swagger_ui") / "dist"
    assets = {name: (dist / name).read_bytes() for name in _ASSETS}
    assets["init.js"] = _INIT_JS
    etags = {name: hashlib.sha256(data).hexdigest()[:32] for name, data in assets.items()}
    integrity = {name: _sri(data) for name, data in assets.items()}
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>smartlogger API</title>
  <!-- Swagger UI {version("flask-swagger-ui")} (flask-swagger-ui), served by this server -->
  <link rel="stylesheet" href="/api/docs/assets/swagger-ui.css" integrity="{integrity['swagger-ui.css']}">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/api/docs/assets/swagger-ui-bundle.js" integrity="{integrity['swagger-ui-bundle.js']}"></script>
  <script src="/api/docs/assets/init.js" integrity="{integrity['init.js']}"></script>
</body>
</html>
""".encode()

    @app.route("/api/docs", endpoint="docs_page")
    def docs_page() -> Response:
        resp = Response(page, mimetype="text/html")
        resp.headers["Content-Security-Policy"] = DOCS_CSP
        return resp

    @app.route("/api/docs/assets/<name>", endpoint="docs_asset")
    def docs_asset(name: str) -> Response:
        data = assets.get(name)
        if data is None:
            abort(404)
        resp = Response(data, content_type=_TYPES[name[name.rfind("."):]])
        resp.set_etag(etags[name])
        resp.headers["Cache-Control"] = "public, max-age=86400"
        resp.make_conditional(request)  # 304 for a known ETag (in place)
        return resp
