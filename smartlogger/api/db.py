"""The database extension: engine, per-request sessions, tenant filter, migrations on start.

Owns how the app talks to SQL (SQLAlchemy 2, SQLite by default, PostgreSQL in
production). ``TenantSession`` carries the current organisation in
``session.info["org_id"]`` and adds ``org_id = :org`` to every ORM SELECT of a
``TenantScoped`` table (``with_loader_criteria``): a view that forgets to filter
still cannot read another tenant's rows. System code (jobs, the CLI) uses a
session without ``org_id`` and sees everything.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Flask, g
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import ORMExecuteState, Session, sessionmaker, with_loader_criteria

from smartlogger.api.models import TenantScoped


class TenantSession(Session):
    """A session that filters tenant-owned rows by ``info["org_id"]`` when it is set."""


@event.listens_for(TenantSession, "do_orm_execute")
def _tenant_filter(state: ORMExecuteState) -> None:
    org_id = state.session.info.get("org_id")
    if org_id is None or not state.is_select:
        return
    options = [with_loader_criteria(TenantScoped, lambda cls: cls.org_id == org_id, include_aliases=True)]
    customer = state.session.info.get("customer")
    if customer is not None:
        options += _customer_criteria(org_id, customer, state.session.info.get("user_id"))
    state.statement = state.statement.options(*options)


def _customer_criteria(org_id: int, customer: str, user_id: int | None) -> list[Any]:
    """What a customer's viewer may see: their sites and everything that hangs below them.

    Plain (non-lambda) criteria per entity; the subqueries name the rows the viewer may see.
    """
    from sqlalchemy import select

    from smartlogger.api.models import (
        ApiToken,
        AuditEvent,
        BatteryString,
        BatterySystem,
        BlockPosition,
        CapacityTest,
        Job,
        Logfile,
        Logger,
        Report,
        Result,
        Site,
        User,
    )

    sites = select(Site.id).where(Site.org_id == org_id, Site.customer == customer).scalar_subquery()
    systems = select(BatterySystem.id).where(BatterySystem.site_id.in_(sites)).scalar_subquery()
    strings = select(BatteryString.id).where(BatteryString.system_id.in_(systems)).scalar_subquery()
    tests = select(CapacityTest.id).where(CapacityTest.string_id.in_(strings)).scalar_subquery()
    loggers = select(Logfile.logger_id).where(Logfile.test_id.in_(tests)).scalar_subquery()
    crit = [
        (Site, Site.customer == customer),
        (BatterySystem, BatterySystem.site_id.in_(sites)),
        (BatteryString, BatteryString.system_id.in_(systems)),
        (BlockPosition, BlockPosition.string_id.in_(strings)),
        (CapacityTest, CapacityTest.string_id.in_(strings)),
        (Logfile, Logfile.test_id.in_(tests)),
        (Result, Result.test_id.in_(tests)),
        (Report, Report.test_id.in_(tests)),
        (Job, Job.test_id.in_(tests)),
        (Logger, Logger.id.in_(loggers)),
        (User, User.id == user_id),
        (ApiToken, ApiToken.user_id == user_id),
        (AuditEvent, AuditEvent.user_id == user_id),
    ]
    return [with_loader_criteria(entity, cond, include_aliases=True) for entity, cond in crit]


def normalise_url(url: str) -> str:
    """``postgresql://`` without a driver means psycopg2 here (SQLAlchemy 2.1 would pick psycopg 3)."""
    if url.startswith(("postgresql://", "postgres://")):
        try:
            import psycopg  # noqa: F401
        except ImportError:
            return "postgresql+psycopg2://" + url.split("://", 1)[1]
    return url


def make_engine(url: str, *, pool_size: int = 5, schema: str | None = None) -> Engine:
    """An engine for ``url``; SQLite gets WAL and a busy timeout so the worker thread can write.

    ``schema`` (PostgreSQL only) puts every table in that schema via ``search_path``
    (tests use a fresh schema per session).
    """
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    connect_args = {"options": f"-csearch_path={schema}"} if schema else {}
    return create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True,
                         connect_args=connect_args)


class Database:
    """Flask extension (``init_app``) holding the engine and the session factory."""

    def __init__(self) -> None:
        self.engine: Engine | None = None
        self.factory: sessionmaker[TenantSession] | None = None

    def init_app(self, app: Flask) -> None:
        url = app.config["DATABASE_URL"]
        self.engine = make_engine(url, pool_size=int(app.config.get("DB_POOL_SIZE", 5)),
                                  schema=app.config.get("DB_SCHEMA"))
        self.factory = sessionmaker(self.engine, class_=TenantSession, expire_on_commit=False)
        app.extensions["smartlogger_db"] = self
        if app.config.get("MIGRATE_ON_START", True):
            from smartlogger.api.migrate import upgrade

            upgrade(self.engine)
        app.teardown_appcontext(self._teardown)

    @property
    def session(self) -> TenantSession:
        """The request's session (created on first use, closed at the end of the app context)."""
        s: TenantSession | None = g.get("_sl_session")
        if s is None:
            assert self.factory is not None, "Database.init_app was not called"
            s = self.factory()
            g._sl_session = s
        return s

    @contextmanager
    def system_session(self) -> Iterator[TenantSession]:
        """A session outside any request, without tenant filter (jobs, CLI); commits on success."""
        assert self.factory is not None, "Database.init_app was not called"
        s = self.factory()
        try:
            yield s
            s.commit()
        except BaseException:
            s.rollback()
            raise
        finally:
            s.close()

    def _teardown(self, _exc: BaseException | None) -> None:
        s: TenantSession | None = g.pop("_sl_session", None)
        if s is not None:
            s.close()

    def dispose(self) -> None:
        if self.engine is not None:
            self.engine.dispose()


def database(app: Flask) -> Database:
    db: Database = app.extensions["smartlogger_db"]
    return db
