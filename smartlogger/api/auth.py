"""Authentication, roles and rate limiting: who is calling, may they, and not too often.

Owns bearer tokens (``slt_`` + 32 random bytes, URL-safe; only the SHA-256 is
stored; expiring; revocable), the role order viewer < technician < admin, the
``require(role)`` decorator every API view carries, and throttling with Flask-Limiter
(``make_limiter``; counted in Redis when ``REDIS_URL`` is set so all workers share the
counts, else per process):

- failed authentications per client address (``AUTH_FAILURES_PER_MINUTE``): only answers 401
  count, and once an address is over the limit every request from it is answered 429 before
  its token is looked up (no database work for a token-guessing client);
- requests per token (``RATE_LIMIT_PER_MINUTE``), counted once the token is known good.

Fail closed: ``check_endpoint_guarded`` (a ``before_request`` hook) refuses any
``/api`` endpoint whose view lacks ``require`` unless it is in ``PUBLIC_ENDPOINTS``.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from flask import Flask, Response, current_app, g, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from limits import RateLimitItemPerMinute
from sqlalchemy import select
from sqlalchemy.orm import Session

from smartlogger.api.db import database
from smartlogger.api.errors import ApiError, error_response
from smartlogger.api.models import ROLES, ApiToken, User, utcnow

TOKEN_PREFIX = "slt_"
DEFAULT_TOKEN_DAYS = 90
#: Endpoints reachable without a token (the API description and the liveness probe).
PUBLIC_ENDPOINTS = frozenset({
    "api-docs.openapi_json", "docs_page", "docs_asset", "health.health", "static", "app_index",
    "app_static", "app_redirect", "root",
})

P = ParamSpec("P")
R = TypeVar("R")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def issue_token(session: Session, user: User, *, days: int = DEFAULT_TOKEN_DAYS,
                label: str = "") -> tuple[str, ApiToken]:
    """A new token for ``user`` valid ``days`` days; returns (the token, its row). Shown once."""
    if not 1 <= days <= 3650:
        raise ApiError(422, "validation", f"days: {days} is outside 1..3650", field="days")
    token = new_token()
    row = ApiToken(org_id=user.org_id, user_id=user.id, token_sha256=hash_token(token),
                   prefix=token[:8], label=label, expires_at=utcnow() + dt.timedelta(days=days))
    session.add(row)
    session.flush()
    return token, row


@dataclass(frozen=True)
class Principal:
    """The authenticated caller of this request."""

    user_id: int
    org_id: int
    role: str
    email: str
    token_id: int
    customer: str | None = None  # a viewer limited to this customer's sites

    def has(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)


def current() -> Principal:
    p: Principal | None = g.get("principal")
    if p is None:  # pragma: no cover - require() always runs first
        raise ApiError(401, "unauthorized", "authentication required")
    return p


def make_limiter(app: Flask) -> Limiter:
    """Flask-Limiter for this app: failed authentications per client address (the default limit,
    deducted only for 401 answers) and the store the per-token limit counts in."""
    failures = int(app.config.get("AUTH_FAILURES_PER_MINUTE") or 0)
    storage = app.config.get("RATE_LIMIT_STORAGE_URL") or app.config.get("REDIS_URL") or "memory://"
    limiter = Limiter(
        get_remote_address,  # the client address (behind a proxy: PROXY_FIX's X-Forwarded-For)
        app=app,
        storage_uri=storage,
        strategy="fixed-window",
        key_prefix="smartlogger",
        default_limits=[f"{failures} per minute"] if failures else [],
        default_limits_deduct_when=lambda resp: resp.status_code == 401,
        headers_enabled=False,  # Retry-After is set on our own 429 answers (``_throttled``)
        swallow_errors=True,  # a Redis outage must not take the API down: limits then lapse
        in_memory_fallback_enabled=True,
        on_breach=_throttled,
    )
    return limiter


def _throttled(limit: Any) -> Response:
    """The 429 answer when a client address is over its failed-authentication limit."""
    reset = getattr(limit, "reset_at", None)
    wait = max(1, int(reset - time.time())) if reset else 60
    return error_response(429, "rate_limited", "too many failed authentications from this address; "
                          "wait before retrying", headers={"Retry-After": str(wait)})


def _token_rate_limited(token_id: int) -> int | None:
    """Count one request of a good token; seconds to wait if it is over ``RATE_LIMIT_PER_MINUTE``."""
    per_minute = int(current_app.config.get("RATE_LIMIT_PER_MINUTE") or 0)
    if not per_minute:
        return None
    limiter: Limiter = current_app.extensions["smartlogger_limiter"]
    item = RateLimitItemPerMinute(per_minute)
    try:
        if limiter.limiter.hit(item, "token", str(token_id)):
            return None
        reset = limiter.limiter.get_window_stats(item, "token", str(token_id)).reset_time
    except Exception:  # the counter's store (Redis) is down: do not refuse requests for it
        return None
    return max(1, int(reset - time.time()))


class TokenCache:
    """Recently validated tokens (hash -> principal, token expiry), kept ``ttl_s`` seconds.

    Saves the token query on busy read paths. The price: a token revoked or a user
    changed from *another process* is honoured for up to ``ttl_s`` more seconds
    (this process forgets at once, see ``forget``). ``ttl_s`` 0 disables the cache.
    """

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._items: dict[str, tuple[float, Principal, dt.datetime]] = {}

    def get(self, digest: str) -> tuple[Principal, dt.datetime] | None:
        if self.ttl_s <= 0:
            return None
        with self._lock:
            item = self._items.get(digest)
        if item is None or item[0] < time.monotonic():
            return None
        return item[1], item[2]

    def put(self, digest: str, p: Principal, expires: dt.datetime) -> None:
        if self.ttl_s <= 0:
            return
        with self._lock:
            if len(self._items) > 10_000:
                self._items.clear()
            self._items[digest] = (time.monotonic() + self.ttl_s, p, expires)

    def forget(self, *, token_id: int | None = None, user_id: int | None = None) -> None:
        with self._lock:
            self._items = {k: v for k, v in self._items.items()
                           if v[1].token_id != token_id and v[1].user_id != user_id}


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


def _authenticate() -> Principal:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("missing bearer token (Authorization: Bearer slt_...)")
    digest = hash_token(token.strip())
    cache: TokenCache = current_app.extensions["smartlogger_tokencache"]
    s = database(current_app).session
    cached = cache.get(digest)
    if cached is not None:
        p, expires = cached
    else:
        row = s.execute(
            select(ApiToken, User).join(User, User.id == ApiToken.user_id)
            .where(ApiToken.token_sha256 == digest)
        ).first()
        if row is None:
            raise _unauthorized("unknown token")
        tok, user = row
        expires = tok.expires_at if tok.expires_at.tzinfo else tok.expires_at.replace(tzinfo=dt.UTC)
        if tok.revoked_at is not None:
            raise _unauthorized("token revoked")
        if not user.active:
            raise _unauthorized("user deactivated")
        p = Principal(user.id, user.org_id, user.role, user.email, tok.id,
                      user.customer if user.role == "viewer" else None)
        cache.put(digest, p, expires)
    if expires <= utcnow():
        raise _unauthorized("token expired")
    wait = _token_rate_limited(p.token_id)
    if wait is not None:
        raise ApiError(429, "rate_limited", f"more than {current_app.config['RATE_LIMIT_PER_MINUTE']} "
                       "requests per minute on this token", headers={"Retry-After": str(wait)})
    # From here on every ORM query of this request is limited to the caller's organisation.
    s.info["org_id"] = p.org_id
    if p.customer is not None:  # ...and, for a customer's viewer, to that customer's batteries
        s.info["customer"] = p.customer
        s.info["user_id"] = p.user_id
    g.principal = p
    return p


def require(role: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Authenticate the caller and demand at least ``role`` (viewer < technician < admin)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")

    def deco(fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            p = _authenticate()
            if not p.has(role):
                raise ApiError(403, "forbidden", f"this needs the {role} role; you are {p.role}")
            return fn(*args, **kwargs)

        wrapper._sl_role = role  # type: ignore[attr-defined]
        return wrapper

    return deco


def check_endpoint_guarded() -> None:
    """before_request: refuse an /api endpoint that has no role check (fail closed)."""
    if request.endpoint is None or request.endpoint in PUBLIC_ENDPOINTS:
        return
    if not request.path.startswith("/api/"):
        return
    view = current_app.view_functions.get(request.endpoint)
    if view is not None and getattr(view, "_sl_role", None) is None:
        raise ApiError(500, "internal", "internal server error")
