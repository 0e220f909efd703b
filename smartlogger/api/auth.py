"""Authentication, roles and rate limiting: who is calling, may they, and not too often.

Owns bearer tokens (``slt_`` + 32 random bytes, URL-safe; only the SHA-256 is
stored; expiring; revocable), the role order viewer < technician < admin, the
``require(role)`` decorator every API view carries, and the per-token rate limit
(fixed one-minute windows; in Redis when ``REDIS_URL`` is set so all workers
share it, else per process).

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

from flask import current_app, g, request
from sqlalchemy import select
from sqlalchemy.orm import Session

from smartlogger.api.errors import ApiError
from smartlogger.api.models import ROLES, ApiToken, User, utcnow

TOKEN_PREFIX = "slt_"
DEFAULT_TOKEN_DAYS = 90
#: Endpoints reachable without a token (the API description and the liveness probe).
PUBLIC_ENDPOINTS = frozenset({
    "api-docs.openapi_json", "api-docs.openapi_swagger_ui", "api-docs.openapi_redoc",
    "api-docs.openapi_rapidoc", "health.health", "static", "app_index",
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

    def has(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)


def current() -> Principal:
    p: Principal | None = g.get("principal")
    if p is None:  # pragma: no cover - require() always runs first
        raise ApiError(401, "unauthorized", "authentication required")
    return p


class RateLimiter:
    """``limit`` requests per token per minute window; 0 disables."""

    def __init__(self, limit: int, redis_url: str | None = None) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._counts: dict[tuple[int, int], int] = {}
        self._redis: Any = None
        if redis_url and limit:
            import redis

            self._redis = redis.Redis.from_url(redis_url)

    def hit(self, token_id: int) -> int | None:
        """Count one request; returns seconds to wait if over the limit, else None."""
        if not self.limit:
            return None
        now = time.time()
        window = int(now // 60)
        if self._redis is not None:
            key = f"smartlogger:rl:{token_id}:{window}"
            pipe = self._redis.pipeline()
            pipe.incr(key)
            pipe.expire(key, 120)
            n = int(pipe.execute()[0])
        else:
            with self._lock:
                k = (token_id, window)
                n = self._counts.get(k, 0) + 1
                self._counts[k] = n
                if len(self._counts) > 10_000:  # drop old windows
                    self._counts = {kk: v for kk, v in self._counts.items() if kk[1] >= window}
        if n > self.limit:
            return max(1, int(60 - now % 60))
        return None


def _authenticate() -> Principal:
    from smartlogger.api.db import database

    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthorized", "missing bearer token (Authorization: Bearer slt_...)",
                       headers={"WWW-Authenticate": "Bearer"})
    s = database(current_app).session
    row = s.execute(
        select(ApiToken, User).join(User, User.id == ApiToken.user_id)
        .where(ApiToken.token_sha256 == hash_token(token.strip()))
    ).first()
    if row is None:
        raise ApiError(401, "unauthorized", "unknown token", headers={"WWW-Authenticate": "Bearer"})
    tok, user = row
    now = utcnow()
    expires = tok.expires_at if tok.expires_at.tzinfo else tok.expires_at.replace(tzinfo=dt.UTC)
    if tok.revoked_at is not None:
        raise ApiError(401, "unauthorized", "token revoked", headers={"WWW-Authenticate": "Bearer"})
    if expires <= now:
        raise ApiError(401, "unauthorized", "token expired", headers={"WWW-Authenticate": "Bearer"})
    if not user.active:
        raise ApiError(401, "unauthorized", "user deactivated", headers={"WWW-Authenticate": "Bearer"})
    p = Principal(user.id, user.org_id, user.role, user.email, tok.id)
    limiter: RateLimiter = current_app.extensions["smartlogger_ratelimit"]
    wait = limiter.hit(tok.id)
    if wait is not None:
        raise ApiError(429, "rate_limited", f"more than {limiter.limit} requests per minute on this token",
                       headers={"Retry-After": str(wait)})
    # From here on every ORM query of this request is limited to the caller's organisation.
    s.info["org_id"] = user.org_id
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
