"""Alembic, configured in code: ``upgrade(engine)`` brings a database to the newest schema.

Owns the Alembic ``Config`` (no alembic.ini needed): ``smartlogger serve`` and
``smartlogger admin migrate`` call ``upgrade``; developers make a new revision with
``alembic_config(url)`` and ``alembic.command.revision(cfg, autogenerate=True)``.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine

from smartlogger.errors import StoreError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        # ConfigParser interpolation: a literal % in a password must be doubled.
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database behind ``engine`` to ``revision`` (idempotent), in one transaction.

    SQLite: foreign keys are off while migrating (batch migrations rebuild a table by copying it
    and dropping the old one, and with foreign keys on that DROP would run the ON DELETE actions
    of every row referencing it: cascades, SET NULLs), and the migration runs in one explicit
    transaction that covers the DDL too (Python's sqlite3 would otherwise run each CREATE/DROP
    outside any transaction). Before the commit every reference is checked (``PRAGMA
    foreign_key_check``); a dangling one rolls the whole migration back.
    """
    cfg = alembic_config()
    with engine.connect() as conn:
        cfg.attributes["connection"] = conn
        if conn.dialect.name != "sqlite":
            with conn.begin():
                command.upgrade(cfg, revision)
            return
        driver = conn.connection.driver_connection
        assert driver is not None
        level = driver.isolation_level
        conn.exec_driver_sql("PRAGMA foreign_keys=OFF")  # a no-op inside a transaction
        conn.commit()
        driver.isolation_level = None  # the driver begins nothing by itself; BEGIN below covers all
        try:
            conn.exec_driver_sql("BEGIN")
            try:
                command.upgrade(cfg, revision)  # Alembic joins the open transaction
                dangling = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if dangling:
                    raise StoreError(f"migration left {len(dangling)} broken references, e.g. "
                                     f"{tuple(dangling[0])}; rolled back")
            except BaseException:
                conn.rollback()
                raise
            conn.commit()
        finally:
            driver.isolation_level = level
            conn.exec_driver_sql("PRAGMA foreign_keys=ON")
            conn.commit()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
