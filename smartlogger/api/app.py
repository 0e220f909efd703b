"""The Flask application factory: ``create_app(config)``.

Owns configuration (defaults, ``SMARTLOGGER_*`` environment, explicit dict, in
that order of precedence from low to high), wiring of the extensions via
``init_app`` (database, file store, server key, jobs, rate limiter, flask-smorest
``Api``), the blueprints (one per resource), CORS for the app's own origin, and
the security headers. OpenAPI is served at ``/api/openapi.json``, interactive
docs at ``/api/docs``.

Configuration keys: ``DATA_DIR`` (SQLite file, blobs, server key), ``DATABASE_URL``,
``DB_SCHEMA`` (PostgreSQL schema), ``STORE`` (where blobs live: ``file://DIR``, default
``file://DATA_DIR/files``, or ``s3://bucket/prefix``, see ``api.stores.open_store``),
``FILES_DIR`` (the folder of a ``file://`` store, older spelling), ``STORE_TIMEOUT_SECONDS`` /
``STORE_CONNECT_TIMEOUT_SECONDS`` / ``STORE_ATTEMPTS`` (object store client),
``JOB_STORE_PATIENCE_SECONDS`` (how long a job waits out a store outage, default 60),
``SERVER_KEY`` (the receipt key's PEM) or ``SERVER_KEY_PATH``, ``REDIS_URL``, ``RQ_QUEUE``
(jobs on RQ and a shared rate limit), ``MAX_CONTENT_LENGTH`` (bytes, upload limit),
``APP_DIR`` (the companion web app served at ``/app/``),
``RATE_LIMIT_PER_MINUTE`` (per token, 0 = off), ``CHECK_IDLE_SECONDS`` / ``CHECK_MAX_DELAY_SECONDS``
(in-process runner: a logfile check job waits until no request came for that long, at most
the max delay; defaults 0.5 and 60), ``AUTH_CACHE_SECONDS`` (how long a
validated token is trusted without a database lookup; 0 = never), ``CORS_ORIGIN`` (the companion app's
origin; nothing else gets CORS headers), ``DB_PING_AFTER_IDLE_SECONDS`` (a pooled PostgreSQL
connection unused for longer is tested before use; default 10), ``PROXY_FIX`` (number of trusted reverse proxies in front, 0 = none), ``MIGRATE_ON_START``,
``TRUST_FILE`` (the trust list logfiles are verified against, TOML as ``logfile verify --trust``;
environment ``SMARTLOGGER_TRUST_FILE``; default the manufacturer's production root) or ``TRUST``
(the authorities themselves, for tests),
``AUTH_FAILURES_PER_MINUTE`` (failed authentications per client address and minute before
429; 0 = off), ``RATE_LIMIT_STORAGE_URL`` (where the limits count; default ``REDIS_URL``, else
in the process), ``JOB_LEASE_SECONDS`` (how long a job's claim lasts without a heartbeat of its
runner; default 60), ``JOB_SWEEP_SECONDS`` (how often a runner looks for jobs nobody runs: queued
ones a lost process held, claims whose lease expired; default 30), ``MAX_UPLOAD_SAMPLES`` (most
samples one uploaded logfile may declare; default ``services.MAX_UPLOAD_SAMPLES``, 2**23),
``ANALYSIS_MAX_SAMPLES`` (most samples the logs of one test may hold for its analysis, the float
history far from its tests left out, and for its report, loaded the same way; default
``services.ANALYSIS_MAX_SAMPLES``, 2**24).

Security headers on every answer: ``X-Content-Type-Options``, ``X-Frame-Options: DENY``,
``Referrer-Policy``, and a ``Content-Security-Policy`` with ``frame-ancestors 'none'`` (the
companion app's policy on ``/app/``, ``docs_page.DOCS_CSP`` on ``/api/docs``, "nothing" on API
answers). A request body is at most ``MAX_CONTENT_LENGTH`` bytes, also when it is sent chunked
(``_bounded_body``): 413 either way.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from flask import Flask, Response, request
from flask_smorest import Api
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.routing import IntegerConverter

from smartlogger import __version__
from smartlogger.api import docs_page, errors, webapp
from smartlogger.api.auth import TokenCache, check_endpoint_guarded, make_limiter
from smartlogger.api.db import Database
from smartlogger.api.filestore import LocalFileStore, StoreSettings
from smartlogger.api.health import StoreHealth
from smartlogger.api.receipts import server_key_from_config
from smartlogger.api.resources import BLUEPRINTS
from smartlogger.api.services import MAX_UPLOAD_SAMPLES
from smartlogger.api.stores import open_store
from smartlogger.api.worker import (
    JOB_LEASE_SECONDS,
    JOB_SWEEP_SECONDS,
    ThreadRunner,
    make_runner,
    recover,
)
from smartlogger.errors import ConfigError
from smartlogger.logfile.evidence import default_trust
from smartlogger.logfile.trust import load_trust

DEFAULT_MAX_UPLOAD = 64 * 1024 * 1024  # bytes; a 10-year blackbox logfile is ~6 MB
_ENV = ("DATA_DIR", "DATABASE_URL", "DB_SCHEMA", "FILES_DIR", "SERVER_KEY_PATH", "CORS_ORIGIN",
        "RATE_LIMIT_PER_MINUTE", "MAX_CONTENT_LENGTH", "AUTH_CACHE_SECONDS", "PROXY_FIX",
        "CHECK_IDLE_SECONDS", "CHECK_MAX_DELAY_SECONDS", "DB_PING_AFTER_IDLE_SECONDS", "TRUST_FILE",
        "STORE", "STORE_TIMEOUT_SECONDS", "STORE_CONNECT_TIMEOUT_SECONDS", "STORE_ATTEMPTS",
        "JOB_STORE_PATIENCE_SECONDS", "SERVER_KEY", "RQ_QUEUE",
        "AUTH_FAILURES_PER_MINUTE", "JOB_LEASE_SECONDS", "RATE_LIMIT_STORAGE_URL",
        "MAX_UPLOAD_SAMPLES", "JOB_SWEEP_SECONDS", "ANALYSIS_MAX_SAMPLES")
#: The companion app's policy (as its index.html's meta element) plus what only a header can say.
APP_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
           "connect-src 'self' https:; worker-src 'self'; manifest-src 'self'; object-src 'none'; "
           "base-uri 'self'; form-action 'self'; frame-ancestors 'none'")
#: API answers are data, never a document: nothing may load, nothing may frame them.
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"


class SmartLoggerApi(Api):  # type: ignore[misc]
    """flask-smorest ``Api`` answering every HTTP error in the one error shape."""

    ERROR_SCHEMA = errors.ErrorSchema

    def handle_http_exception(self, error: HTTPException) -> Response:
        return errors.http_exception_payload(error)


class IdConverter(IntegerConverter):
    """``<int:...>`` in our routes: 1..2**31-1, so an absurd id is a plain 404 (not a DB overflow)."""

    def __init__(self, map: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("min", 1)
        kwargs.setdefault("max", 2**31 - 1)
        super().__init__(map, *args, **kwargs)


def _config(overrides: dict[str, Any] | None) -> dict[str, Any]:
    cfg: dict[str, Any] = {}
    for name in _ENV:
        val = os.environ.get(f"SMARTLOGGER_{name}")
        if val is not None:
            cfg[name] = val
    if os.environ.get("REDIS_URL"):
        cfg["REDIS_URL"] = os.environ["REDIS_URL"]
    cfg.update(overrides or {})
    data = Path(cfg.get("DATA_DIR") or "smartlogger-data").resolve()
    cfg["DATA_DIR"] = str(data)
    cfg.setdefault("DATABASE_URL", f"sqlite:///{data / 'smartlogger.db'}")
    if cfg.get("STORE") and cfg.get("FILES_DIR"):
        raise ConfigError("STORE", "give the file store once: STORE (file://DIR or s3://bucket/prefix) or "
                                   "FILES_DIR, not both")
    if not cfg.get("STORE"):
        cfg.setdefault("FILES_DIR", str(data / "files"))
        cfg["STORE"] = f"file://{cfg['FILES_DIR']}"
    elif not cfg["STORE"].startswith("s3://"):
        # FILES_DIR stays the folder of a folder store (tools and tests read it).
        cfg["FILES_DIR"] = str(Path(cfg["STORE"].removeprefix("file://") or ".").resolve())
    cfg.setdefault("SERVER_KEY_PATH", str(data / "server_key.pem"))
    cfg["MAX_CONTENT_LENGTH"] = int(cfg.get("MAX_CONTENT_LENGTH") or DEFAULT_MAX_UPLOAD)
    cfg["RATE_LIMIT_PER_MINUTE"] = int(cfg.get("RATE_LIMIT_PER_MINUTE", 600))
    cfg["AUTH_CACHE_SECONDS"] = float(cfg.get("AUTH_CACHE_SECONDS", 5))
    cfg["PROXY_FIX"] = int(cfg.get("PROXY_FIX") or 0)
    cfg["AUTH_FAILURES_PER_MINUTE"] = int(cfg.get("AUTH_FAILURES_PER_MINUTE", 30))
    cfg["MAX_UPLOAD_SAMPLES"] = int(cfg.get("MAX_UPLOAD_SAMPLES") or MAX_UPLOAD_SAMPLES)
    cfg["JOB_LEASE_SECONDS"] = float(cfg.get("JOB_LEASE_SECONDS") or JOB_LEASE_SECONDS)
    cfg["JOB_SWEEP_SECONDS"] = float(cfg.get("JOB_SWEEP_SECONDS") or JOB_SWEEP_SECONDS)
    cfg.setdefault("CORS_ORIGIN", None)
    cfg.setdefault("REDIS_URL", None)
    cfg.setdefault("MIGRATE_ON_START", True)
    # flask-smorest / OpenAPI
    cfg.update({
        "API_TITLE": "smartlogger API", "API_VERSION": __version__, "OPENAPI_VERSION": "3.0.3",
        "OPENAPI_URL_PREFIX": "/api", "OPENAPI_JSON_PATH": "openapi.json",
        # /api/docs is docs_page's (assets from this server, with SRI), not flask-smorest's CDN page.
        "OPENAPI_SWAGGER_UI_PATH": None,
        "API_SPEC_OPTIONS": {
            "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
            "security": [{"bearer": []}],
            "info": {"description": "Upload, keep and share capacity-test logfiles, results and reports. "
                                    "See docs/API.md."},
        },
        "PROPAGATE_EXCEPTIONS": False,
        "JSON_SORT_KEYS": False,
    })
    return cfg


def _trust(cfg: dict[str, Any]) -> tuple[Any, ...]:
    """The authorities uploads are verified against: ``TRUST`` (objects), ``TRUST_FILE`` or the default."""
    if cfg.get("TRUST") is not None:
        return tuple(cfg["TRUST"])
    if cfg.get("TRUST_FILE"):
        return load_trust(cfg["TRUST_FILE"])
    return default_trust()


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the API app. ``config`` overrides environment and defaults (tests pass a temp DATA_DIR)."""
    app = Flask("smartlogger.api")
    app.url_map.converters["int"] = IdConverter
    app.config.update(_config(config))
    if app.config["PROXY_FIX"]:
        # Behind N reverse proxies: take client address and scheme from their X-Forwarded-* headers
        # (audit log, rate limit); without this they would all be the proxy's.
        from werkzeug.middleware.proxy_fix import ProxyFix  # lazy: only behind a configured proxy

        n = app.config["PROXY_FIX"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)  # type: ignore[method-assign]
    store = open_store(app.config["STORE"], StoreSettings(
        connect_timeout_s=float(app.config.get("STORE_CONNECT_TIMEOUT_SECONDS") or 2),
        read_timeout_s=float(app.config.get("STORE_TIMEOUT_SECONDS") or 10),
        attempts=int(app.config.get("STORE_ATTEMPTS") or 3)))
    # A web host keeps nothing a request needs on its own disk unless the deployment is a single
    # host: then DATA_DIR holds the SQLite database, the folder store and the server key.
    single_host = isinstance(store, LocalFileStore)
    if single_host or app.config["DATABASE_URL"].startswith("sqlite"):
        Path(app.config["DATA_DIR"]).mkdir(parents=True, exist_ok=True)

    Database().init_app(app)
    app.extensions["smartlogger_files"] = store
    app.extensions["smartlogger_store_health"] = StoreHealth(store)
    app.extensions["smartlogger_key"] = server_key_from_config(
        app.config.get("SERVER_KEY"), app.config["SERVER_KEY_PATH"], may_create=single_host)
    app.extensions["smartlogger_tokencache"] = TokenCache(float(app.config["AUTH_CACHE_SECONDS"]))
    app.extensions["smartlogger_logger_ids"] = {}  # services.LoggerIds: (org id, serial) -> logger id
    app.extensions["smartlogger_trust"] = _trust(app.config)
    app.extensions["smartlogger_limiter"] = make_limiter(app)
    app.extensions["smartlogger_jobs"] = runner = make_runner(app)
    if isinstance(runner, ThreadRunner):
        recover(app)
        # Background checks yield to requests (ThreadRunner): tell the runner when one starts.
        app.before_request(runner.request_started)

    api = SmartLoggerApi(app)
    errors.register(app)
    for blp in BLUEPRINTS:
        api.register_blueprint(blp)

    origin = app.config["CORS_ORIGIN"]

    @app.after_request
    def _headers(resp: Response) -> Response:
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("Cache-Control", "no-store")
        resp.headers.setdefault("Referrer-Policy", "no-referrer")
        resp.headers.setdefault("X-Frame-Options", "DENY")  # for browsers without frame-ancestors
        resp.headers.setdefault("Content-Security-Policy",
                                API_CSP if request.path.startswith("/api/") else APP_CSP)
        # CORS only for the companion app's own origin; any other origin gets no CORS headers.
        if origin and request.headers.get("Origin") == origin:
            resp.headers["Access-Control-Allow-Origin"] = origin
            resp.headers["Vary"] = "Origin"
            resp.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
            resp.headers["Access-Control-Allow-Methods"] = "GET, POST, PATCH, PUT, DELETE"
            resp.headers["Access-Control-Max-Age"] = "600"
        return resp

    @app.before_request
    def _preflight() -> Response | None:
        if request.method != "OPTIONS" or not request.path.startswith("/api/"):
            return None
        if not origin or request.headers.get("Origin") != origin:
            return errors.error_response(403, "forbidden", "cross-origin requests are not allowed")
        return Response(status=204)

    @app.before_request
    def _bounded_body() -> None:
        """A chunked body (no Content-Length) over ``MAX_CONTENT_LENGTH`` is a 413 too.

        werkzeug stops reading such a stream at the limit without an error, so the truncated body
        would reach the view (an upload would then be a 422 "truncated logfile"). Read it here, up
        to one byte past the limit, and hand the view the bytes with their length.
        """
        env = request.environ
        if request.content_length is not None or "wsgi.input_terminated" not in env:
            return
        limit = int(app.config["MAX_CONTENT_LENGTH"])
        raw = env["wsgi.input"]
        body = bytearray()
        while len(body) <= limit:
            chunk = raw.read(min(1 << 16, limit + 1 - len(body)))
            if not chunk:
                break
            body += chunk
        if len(body) > limit:
            raise RequestEntityTooLarge()
        env["wsgi.input"] = io.BytesIO(bytes(body))
        env["CONTENT_LENGTH"] = str(len(body))
        del env["wsgi.input_terminated"]
        env.pop("HTTP_TRANSFER_ENCODING", None)  # else werkzeug ignores the Content-Length

    app.before_request(check_endpoint_guarded)
    webapp.register(app)
    docs_page.register(app)
    return app
