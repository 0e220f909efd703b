"""``/api/users`` and ``/api/tokens``: people of the organisation, their roles and bearer tokens."""

# mypy: disable-error-code="untyped-decorator"
# (flask-smorest ships no type hints; its decorators keep our signatures at run time.)

from __future__ import annotations

from typing import Any

from flask import current_app
from sqlalchemy.exc import IntegrityError

from smartlogger.api.auth import TokenCache, current, issue_token, require
from smartlogger.api.errors import ApiError, Forbidden, NotFound
from smartlogger.api.hygiene import Blueprint
from smartlogger.api.models import ApiToken, User, utcnow
from smartlogger.api.resources.common import get, org_id, page, scoped, session
from smartlogger.api.schemas import (
    NewTokenSchema,
    PageArgs,
    TokenInSchema,
    TokenSchema,
    UserPatchSchema,
    UserSchema,
)
from smartlogger.api.services import audit


def _token_cache() -> TokenCache:
    cache: TokenCache = current_app.extensions["smartlogger_tokencache"]
    return cache


def _check_customer(role: str, customer: str | None) -> None:
    if customer is not None and role != "viewer":
        raise ApiError(422, "validation", "customer: only a viewer can be limited to a customer",
                       field="customer")


blp = Blueprint("users", __name__, url_prefix="/api", description="Users, roles and tokens.")


@blp.route("/users", methods=["GET"])
@require("admin")
@blp.arguments(PageArgs, location="query")
@blp.response(200, UserSchema(many=True))
def list_users(args: dict[str, Any]) -> list[User]:
    return page(scoped(User), args, User.id)


@blp.route("/users", methods=["POST"])
@require("admin")
@blp.arguments(UserSchema)
@blp.response(201, UserSchema)
def create_user(data: dict[str, Any]) -> User:
    """Add a user with a role to your organisation (admin)."""
    _check_customer(data["role"], data["customer"])
    s = session()
    user = User(org_id=org_id(), email=data["email"].lower(), name=data["name"], role=data["role"],
                customer=data["customer"])
    s.add(user)
    try:
        s.flush()
    except IntegrityError:
        s.rollback()
        raise ApiError(409, "conflict", "a user with this email exists", field="email") from None
    audit(s, org_id(), current().user_id, "create", "user", user.id, detail=f"{user.email} as {user.role}")
    s.commit()
    return user


@blp.route("/users/<int:user_id>", methods=["GET"])
@require("admin")
@blp.response(200, UserSchema)
def get_user(user_id: int) -> User:
    return get(User, user_id, "user")


@blp.route("/users/<int:user_id>", methods=["PATCH"])
@require("admin")
@blp.arguments(UserPatchSchema)
@blp.response(200, UserSchema)
def patch_user(data: dict[str, Any], user_id: int) -> User:
    """Change a user's name, role or active flag (admin; you cannot demote or deactivate yourself)."""
    user = get(User, user_id, "user")
    if user.id == current().user_id and (data.get("role", "admin") != "admin" or data.get("active") is False):
        raise Forbidden("you cannot demote or deactivate yourself")
    _check_customer(data.get("role", user.role), data.get("customer", user.customer))
    for k, v in data.items():
        setattr(user, k, v)
    audit(session(), org_id(), current().user_id, "update", "user", user.id, detail=repr(sorted(data)))
    session().commit()
    _token_cache().forget(user_id=user.id)  # a new role or deactivation applies at once here
    return user


@blp.route("/tokens", methods=["GET"])
@require("viewer")
@blp.arguments(PageArgs, location="query")
@blp.response(200, TokenSchema(many=True))
def list_tokens(args: dict[str, Any]) -> list[ApiToken]:
    """Your tokens (admins: every token of the organisation)."""
    q = scoped(ApiToken)
    if not current().has("admin"):
        q = q.where(ApiToken.user_id == current().user_id)
    return page(q, args, ApiToken.id)


@blp.route("/tokens", methods=["POST"])
@require("viewer")
@blp.arguments(TokenInSchema)
@blp.response(201, NewTokenSchema)
def create_token(data: dict[str, Any]) -> dict[str, Any]:
    """Issue a token for yourself, or (admin) for another user of the organisation. Shown once."""
    p = current()
    user_id = data.get("user_id", p.user_id)
    if user_id != p.user_id and not p.has("admin"):
        raise Forbidden("only an admin can issue tokens for other users")
    user = get(User, user_id, "user")
    if not user.active:
        raise ApiError(409, "conflict", "the user is deactivated", field="user_id")
    token, row = issue_token(session(), user, days=data["days"], label=data["label"])
    audit(session(), p.org_id, p.user_id, "issue_token", "token", row.id, detail=f"for user {user.id}")
    session().commit()
    out = {c: getattr(row, c) for c in ("id", "user_id", "prefix", "label", "created_at", "expires_at",
                                        "revoked_at")}
    out["token"] = token
    return out


@blp.route("/tokens/<int:token_id>", methods=["DELETE"])
@require("viewer")
@blp.response(200, TokenSchema)
def revoke_token(token_id: int) -> ApiToken:
    """Revoke a token (your own; admins: any of the organisation)."""
    p = current()
    q = scoped(ApiToken).where(ApiToken.id == token_id)
    if not p.has("admin"):
        q = q.where(ApiToken.user_id == p.user_id)
    row: ApiToken | None = session().scalar(q)
    if row is None:
        raise NotFound("token")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        audit(session(), p.org_id, p.user_id, "revoke_token", "token", row.id)
        session().commit()
        _token_cache().forget(token_id=row.id)
    return row
