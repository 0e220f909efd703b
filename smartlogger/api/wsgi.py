"""WSGI entry point for gunicorn: ``gunicorn 'smartlogger.api.wsgi:app'``.

Configured from the environment (``SMARTLOGGER_DATABASE_URL``, ``SMARTLOGGER_DATA_DIR``,
``REDIS_URL``, ...). Workers do not migrate (run ``smartlogger admin migrate`` first)
so that several workers starting at once never race on the schema.
"""

from __future__ import annotations

import os

# The upload path imports these lazily: load them at worker boot, not in each worker's first upload.
import smartlogger.logfile
import smartlogger.logfile.verify  # noqa: F401
from smartlogger.api.app import create_app

app = create_app({"MIGRATE_ON_START": os.environ.get("SMARTLOGGER_MIGRATE_ON_START", "0") == "1"})
