"""Administration outside HTTP: the first organisation, users and tokens (``smartlogger admin``).

Owns the bootstrap operations the CLI offers (and tests use): they work on a
database URL directly, migrate it first, and validate like the API does.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from smartlogger.api.auth import issue_token
from smartlogger.api.db import make_engine
from smartlogger.api.migrate import upgrade
from smartlogger.api.models import ROLES, ApiToken, Organisation, User, utcnow
from smartlogger.errors import ConfigError, SmartLoggerError


class AdminError(SmartLoggerError):
    """An administrative operation was refused (exists already, unknown user, ...)."""

    exit_code = 2


@dataclass(frozen=True)
class IssuedToken:
    token: str
    token_id: int
    user_id: int
    org_id: int
    expires_at: dt.datetime


class Admin:
    """Administrative operations on the database at ``url`` (migrated on construction)."""

    def __init__(self, url: str, *, schema: str | None = None, migrate: bool = True) -> None:
        self.engine = make_engine(url, schema=schema)
        if migrate:
            upgrade(self.engine)
        self._factory = sessionmaker(self.engine, expire_on_commit=False)

    def close(self) -> None:
        self.engine.dispose()

    def _session(self) -> Session:
        return self._factory()

    def create_org(self, name: str) -> Organisation:
        name = name.strip()
        if not 1 <= len(name) <= 200:
            raise ConfigError("name", "an organisation name has 1-200 characters")
        with self._session() as s:
            org = Organisation(name=name)
            s.add(org)
            try:
                s.commit()
            except IntegrityError:
                raise AdminError(f"organisation {name!r} exists already") from None
            return org

    def find_org(self, name_or_id: str) -> Organisation:
        with self._session() as s:
            q = select(Organisation).where(
                Organisation.id == int(name_or_id) if name_or_id.isdigit() else Organisation.name == name_or_id)
            org = s.scalar(q)
            if org is None:
                raise AdminError(f"no organisation {name_or_id!r}")
            return org

    def create_user(self, org: str, email: str, role: str, name: str = "",
                    customer: str | None = None) -> User:
        if role not in ROLES:
            raise ConfigError("role", f"{role!r} is not one of {', '.join(ROLES)}")
        if customer is not None and role != "viewer":
            raise ConfigError("customer", "only a viewer can be limited to a customer")
        if "@" not in email or len(email) > 320:
            raise ConfigError("email", f"{email!r} is not an email address")
        o = self.find_org(org)
        with self._session() as s:
            user = User(org_id=o.id, email=email.lower(), name=name, role=role, customer=customer)
            s.add(user)
            try:
                s.commit()
            except IntegrityError:
                raise AdminError(f"user {email!r} exists already") from None
            return user

    def issue_token(self, email: str, *, days: int = 90, label: str = "") -> IssuedToken:
        with self._session() as s:
            user = s.scalar(select(User).where(User.email == email.lower()))
            if user is None:
                raise AdminError(f"no user {email!r}")
            token, row = issue_token(s, user, days=days, label=label)
            s.commit()
            return IssuedToken(token, row.id, user.id, user.org_id, row.expires_at)

    def revoke_token(self, token_id: int) -> ApiToken:
        with self._session() as s:
            row = s.get(ApiToken, token_id)
            if row is None:
                raise AdminError(f"no token {token_id}")
            if row.revoked_at is None:
                row.revoked_at = utcnow()
                s.commit()
            return row
