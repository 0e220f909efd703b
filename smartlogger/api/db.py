"""The database extension: engine, per-request sessions, tenant filter, migrations on start.

Owns how the app talks to SQL (SQLAlchemy 2, SQLite by default, PostgreSQL in
production). ``TenantSession`` carries the current organisation in
``session.info["org_id"]`` and adds ``org_id = :org`` to every ORM SELECT of a
``TenantScoped`` table (``with_loader_criteria``): a view that forgets to filter
still cannot read another tenant's rows. System code (jobs, the CLI) uses a
session without ``org_id`` and sees everything.

Also notes, per request, whether anything has been committed (``write_state``): a COMMIT sent
(``"committing"``) or acknowledged (``"committed"``). The error handlers answer a lost database
connection with 503 "nothing was written" only while it is None (``api.errors``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Flask, g, has_request_context
from sqlalchemy import Engine, create_engine, event, exc, select
from sqlalchemy.orm import ORMExecuteState, Session, sessionmaker, with_loader_criteria

from smartlogger.api.migrate import upgrade
from smartlogger.api.models import (
    ApiToken,
    AuditEvent,
    BatteryString,
    BatterySystem,
    BlockPosition,
    CapacityTest,
    Job,
    LiveSnapshot,
    Logfile,
    Logger,
    Report,
    Result,
    Site,
    TenantScoped,
    User,
)


class TenantSession(Session):
    """A session that filters tenant-owned rows by ``info["org_id"]`` when it is set."""


def write_state() -> str | None:
    """What this request has committed: None (nothing), ``"committing"`` (a COMMIT or a
    one-statement autocommit write was sent and not acknowledged) or ``"committed"``."""
    if not has_request_context():
        return None
    state: str | None = g.get("_sl_write_state")
    return state


def note_write(state: str) -> None:
    """Record ``"committing"`` / ``"committed"`` for this request (no-op outside a request).
    ``"committed"`` is never downgraded: a later transaction cannot un-write an earlier one."""
    if has_request_context() and g.get("_sl_write_state") != "committed":
        g._sl_write_state = state


def forget_committing() -> None:
    """A write found not to have happened (``"committing"`` -> None; ``"committed"`` stays)."""
    if has_request_context() and g.get("_sl_write_state") == "committing":
        g._sl_write_state = None


@event.listens_for(TenantSession, "after_commit")
def _committed(session: Session) -> None:
    if session.in_nested_transaction():  # a SAVEPOINT released: nothing is committed yet
        return
    note_write("committed")


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
        (LiveSnapshot, LiveSnapshot.test_id.in_(tests)),
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
            import psycopg  # noqa: F401  # only probing whether the optional psycopg 3 is installed
        except ImportError:
            return "postgresql+psycopg2://" + url.split("://", 1)[1]
    return url


#: Seconds a pooled PostgreSQL connection may sit unused before it is tested on checkout.
PING_AFTER_IDLE_S = 10.0


def make_engine(url: str, *, pool_size: int = 5, schema: str | None = None,
                ping_after_idle_s: float = PING_AFTER_IDLE_S, isolation_level: str | None = None) -> Engine:
    """An engine for ``url``; SQLite gets WAL and a busy timeout so the worker thread can write.

    ``schema`` (PostgreSQL only) puts every table in that schema via ``search_path``
    (tests use a fresh schema per session).
    """
    url = normalise_url(url)
    isolation: dict[str, Any] = {"isolation_level": isolation_level} if isolation_level else {}
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **isolation)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        _note_commits(engine)
        return engine
    # The application name tells an operator (pg_stat_activity) whose connection it is, and lets
    # a test terminate exactly its own connections on a server others use too.
    connect_args: dict[str, Any] = {"application_name": f"smartlogger:{schema or 'public'}"[:63]}
    if schema:
        connect_args["options"] = f"-csearch_path={schema}"
    engine = create_engine(url, pool_size=pool_size, max_overflow=pool_size, connect_args=connect_args,
                           **isolation)
    _ping_when_idle(engine, ping_after_idle_s)
    _note_commits(engine)
    return engine


def _note_commits(engine: Engine) -> None:
    """Mark the request ``"committing"`` when a COMMIT goes to the server (``after_commit`` of the
    session marks it ``"committed"``): a connection lost in between leaves the outcome unknown."""
    @event.listens_for(engine, "commit")
    def _commit(_conn: Any) -> None:
        note_write("committing")


def _ping_when_idle(engine: Engine, after_s: float) -> None:
    """Test a pooled connection on checkout if it sat idle in the pool for more than ``after_s``.

    A connection the server dropped (restart, failover, idle timeout) is then replaced before a
    request uses it: raising ``DisconnectionError`` in ``checkout`` makes the pool discard it and
    take another (SQLAlchemy's pessimistic disconnect handling). Unlike ``pool_pre_ping`` this
    costs no round trip for a connection in steady use, i.e. on every request under load. A
    connection that fails while in use (the server went away in the last ``after_s``) fails that
    request (503, see ``errors``); SQLAlchemy then invalidates the whole pool, so the next
    requests get new connections.
    """
    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_conn: Any, record: Any) -> None:
        record.info["sl_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("sl_idle_since")
        if since is None or time.monotonic() - since <= after_s:
            return  # a new connection, or one in steady use
        try:
            cur = dbapi_conn.cursor()
            try:
                cur.execute("SELECT 1")
            finally:
                cur.close()
            dbapi_conn.rollback()  # leave no transaction open for the request to inherit
        except Exception as err:
            raise exc.DisconnectionError(f"pooled connection is gone: {err}") from err


class Database:
    """Flask extension (``init_app``) holding the engine and the session factory."""

    def __init__(self) -> None:
        self.engine: Engine | None = None
        self.autocommit: Engine | None = None
        self.factory: sessionmaker[TenantSession] | None = None

    def init_app(self, app: Flask) -> None:
        url = app.config["DATABASE_URL"]
        pool_size = int(app.config.get("DB_POOL_SIZE", 5))
        schema = app.config.get("DB_SCHEMA")
        ping_s = float(app.config.get("DB_PING_AFTER_IDLE_SECONDS", PING_AFTER_IDLE_S))
        self.engine = make_engine(url, pool_size=pool_size, schema=schema, ping_after_idle_s=ping_s)
        self.factory = sessionmaker(self.engine, class_=TenantSession, expire_on_commit=False)
        # Connections that stay in autocommit mode, for ``read_row`` and the one-statement upload (their
        # own pool: switching a pooled connection in and out of autocommit costs two driver calls per
        # use). As large as the main pool: connections beyond ``pool_size`` are closed on return, and
        # opening one per request would cost far more than it saves.
        self.autocommit = make_engine(url, pool_size=pool_size, schema=schema, ping_after_idle_s=ping_s,
                                      isolation_level="AUTOCOMMIT")
        app.extensions["smartlogger_db"] = self
        if app.config.get("MIGRATE_ON_START", True):
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

    def read_row(self, statement: Any, params: dict[str, Any]) -> Any:
        """The first row of one read-only ``statement``, outside the request's transaction.

        Autocommit: a single SELECT is atomic by itself, and PostgreSQL is spared the BEGIN and
        the ROLLBACK round trips a transaction costs (two of the three of a cached read). Only for
        Core statements that name their organisation themselves (no session, no tenant filter).
        """
        assert self.autocommit is not None, "Database.init_app was not called"
        with self.autocommit.connect() as conn:
            return conn.execute(statement, params).first()

    def _teardown(self, _exc: BaseException | None) -> None:
        s: TenantSession | None = g.pop("_sl_session", None)
        if s is not None:
            s.close()

    def dispose(self) -> None:
        for engine in (self.engine, self.autocommit):
            if engine is not None:
                engine.dispose()


def database(app: Flask) -> Database:
    db: Database = app.extensions["smartlogger_db"]
    return db
