"""smartlogger.api: the Flask API (upload, keep and share logfiles, results and reports).

``create_app(config)`` builds the app; see ``smartlogger.api.app`` for the
configuration keys and docs/API.md for the endpoints and deployment.
"""

from smartlogger.api.app import create_app

__all__ = ["create_app"]
