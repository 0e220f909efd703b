"""SQLAlchemy 2 models of the API: the tenants, their batteries, tests, logfiles and derived data.

Owns the tables (schema changes go through an Alembic migration in
``smartlogger/api/migrations/versions``). Every tenant-owned table carries
``org_id`` and derives from ``TenantScoped``; ``db.TenantSession`` adds the
``org_id`` filter to every ORM query, so tenant isolation does not depend on each
view remembering it. Logfile bytes and report workbooks are not in the database:
they are in the file store, named by SHA-256.

Times are timezone-aware UTC ``datetime``s (second resolution is enough for audit
and receipts; receipts also carry milliseconds in their signed JSON).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

ROLES: tuple[str, ...] = ("viewer", "technician", "admin")  # increasing rights


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """``DateTime(timezone=True)`` that always gives back aware UTC (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dt.datetime: UTCDateTime(),
        dict[str, Any]: JSON,
    }


class TenantScoped:
    """Mixin of every table that belongs to one organisation (filtered by ``db.TenantSession``)."""

    org_id: Mapped[int] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"), index=True)


class Organisation(Base):
    """A service company (tenant). Its users never see another organisation's rows."""

    __tablename__ = "organisations"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class User(TenantScoped, Base):
    """A person. A viewer with ``customer`` set sees only that customer's sites and what hangs below."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    role: Mapped[str] = mapped_column(String(20))  # one of ROLES
    customer: Mapped[str | None] = mapped_column(String(200), default=None)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ApiToken(TenantScoped, Base):
    """A bearer token. Only its SHA-256 is stored; ``prefix`` (first 8 chars) identifies it to people."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)  # hex
    prefix: Mapped[str] = mapped_column(String(16))
    label: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime]
    revoked_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class Site(TenantScoped, Base):
    """A battery room; ``customer`` is the battery owner the service company works for."""

    __tablename__ = "sites"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    customer: Mapped[str] = mapped_column(String(200), default="", index=True)
    address: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class BatterySystem(TenantScoped, Base):
    """A UPS, telecom plant or other DC system at a site."""

    __tablename__ = "battery_systems"
    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(50), default="UPS")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class BatteryString(TenantScoped, Base):
    """Series-connected blocks; ``blocks`` is how many positions it has."""

    __tablename__ = "battery_strings"
    id: Mapped[int] = mapped_column(primary_key=True)
    system_id: Mapped[int] = mapped_column(ForeignKey("battery_systems.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    blocks: Mapped[int] = mapped_column(Integer)
    block_voltage_v: Mapped[float] = mapped_column(Float, default=12.0)  # nominal V per block
    chemistry: Mapped[str] = mapped_column(String(20), default="vrla")
    rated_ah: Mapped[float] = mapped_column(Float, default=100.0)  # Ah at the reference rate
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class BlockPosition(TenantScoped, Base):
    """One block slot in a string (1-based), optionally with the logger clipped onto it."""

    __tablename__ = "block_positions"
    __table_args__ = (UniqueConstraint("string_id", "position"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    string_id: Mapped[int] = mapped_column(ForeignKey("battery_strings.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    label: Mapped[str] = mapped_column(String(50), default="")
    logger_id: Mapped[int | None] = mapped_column(ForeignKey("loggers.id", ondelete="SET NULL"), default=None)


class Logger(TenantScoped, Base):
    """A logger and the server's custody of it (migration 0006).

    ``simulated`` is fixed when it is registered (its first upload's markers, SIMULATED or
    REPLAYED, or by hand): a file of the other kind cannot join it. ``device_key`` is the
    fingerprint of the first certified device key seen and ``max_pull_counter`` the highest
    signed pull counter seen under that key; ``custody`` lists every possible clone (a second
    key) and possible replay (an older pull after a newer one) found on upload.
    """

    __tablename__ = "loggers"
    __table_args__ = (UniqueConstraint("org_id", "serial"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    serial: Mapped[str] = mapped_column(String(32))
    generation: Mapped[int] = mapped_column(Integer)  # 1 or 2
    firmware: Mapped[str] = mapped_column(String(32), default="")
    simulated: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    device_key: Mapped[str | None] = mapped_column(String(64), default=None)  # logfile.evidence.fingerprint
    max_pull_counter: Mapped[int | None] = mapped_column(Integer, default=None)
    custody: Mapped[list[Any]] = mapped_column(JSON, default=list)  # [{kind, logfile_id, sha256, at, message}]


class CapacityTest(TenantScoped, Base):
    """A capacity test: its metadata, load and datasheet. ``blocks`` logfiles make it complete.

    ``client_key`` is chosen by the field tool so that a re-sent test is recognised.
    """

    __tablename__ = "tests"
    __table_args__ = (UniqueConstraint("org_id", "client_key"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    string_id: Mapped[int | None] = mapped_column(ForeignKey("battery_strings.id", ondelete="SET NULL"),
                                                  default=None, index=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    client_key: Mapped[str | None] = mapped_column(String(100), default=None)
    load: Mapped[str] = mapped_column(String(100))  # as the CLI takes it: "50A", "12kW"
    rated_time: Mapped[str | None] = mapped_column(String(50), default=None)  # "3h"
    end_v_per_cell: Mapped[float | None] = mapped_column(Float, default=None)  # V/cell
    end_voltage: Mapped[str | None] = mapped_column(String(50), default=None)  # "10.5V/block", as typed
    reference_temperature_c: Mapped[float] = mapped_column(Float, default=25.0)
    blocks: Mapped[int] = mapped_column(Integer)  # logfiles expected (one per block)
    datasheet_csv: Mapped[str | None] = mapped_column(Text, default=None)
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Logfile(TenantScoped, Base):
    """An uploaded logfile: immutable; its bytes live in the file store under ``sha256``."""

    __tablename__ = "logfiles"
    __table_args__ = (UniqueConstraint("org_id", "sha256"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)  # hex, of the whole file
    size: Mapped[int] = mapped_column(BigInteger)  # bytes
    logger_id: Mapped[int] = mapped_column(ForeignKey("loggers.id", ondelete="RESTRICT"), index=True)
    test_id: Mapped[int | None] = mapped_column(ForeignKey("tests.id", ondelete="SET NULL"), default=None,
                                                index=True)
    block_position: Mapped[int] = mapped_column(Integer, default=0)  # from the file, 0 = not set
    format_version: Mapped[str] = mapped_column(String(10), default="")
    verification_status: Mapped[str] = mapped_column(String(20))  # verified/simulated/unsigned/tampered/unreadable
    verification: Mapped[dict[str, Any]] = mapped_column(default=dict)  # VerifyReport.to_dict()
    uploaded_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    uploaded_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    receipt: Mapped[dict[str, Any]] = mapped_column(default=dict)  # the signed receipt body
    receipt_signature: Mapped[str] = mapped_column(String(128), default="")  # Ed25519, hex
    # Custody (migration 0006): who vouches for the file, what it claims, what the server noticed.
    authority: Mapped[str | None] = mapped_column(String(16), default=None)  # "production" | "test"
    markers: Mapped[list[Any]] = mapped_column(JSON, default=list)  # ["SIMULATED", "REPLAYED"]
    device_key: Mapped[str | None] = mapped_column(String(64), default=None)  # certified key's fingerprint
    pull_counter: Mapped[int | None] = mapped_column(Integer, default=None)  # latest signed pull's counter
    custody: Mapped[list[Any]] = mapped_column(JSON, default=list)  # [{kind, message}]: possible_clone/replay


class Result(TenantScoped, Base):
    """The analysis result of a test (``analysis.results.TestResult`` JSON) for one set of logfiles."""

    __tablename__ = "results"
    id: Mapped[int] = mapped_column(primary_key=True)
    test_id: Mapped[int] = mapped_column(ForeignKey("tests.id", ondelete="CASCADE"), unique=True)
    inputs_sha256: Mapped[str] = mapped_column(String(64))  # of the logfile set + metadata analysed
    result: Mapped[dict[str, Any]] = mapped_column()
    computed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Report(TenantScoped, Base):
    """A generated workbook, cached by ``key`` (the result it was made from + the format)."""

    __tablename__ = "reports"
    __table_args__ = (UniqueConstraint("test_id", "key"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    test_id: Mapped[int] = mapped_column(ForeignKey("tests.id", ondelete="CASCADE"), index=True)
    key: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(20), default="xlsx")
    sha256: Mapped[str] = mapped_column(String(64))  # of the workbook bytes (file store name)
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Job(TenantScoped, Base):
    """A background job (analysis, report or logfile check). ``key`` makes enqueueing idempotent."""

    __tablename__ = "jobs"
    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(20))  # "analyse" | "report" | "check"
    test_id: Mapped[int | None] = mapped_column(ForeignKey("tests.id", ondelete="CASCADE"), index=True)
    # "check" jobs: the logfile whose sample payloads the job decodes (migration 0003)
    logfile_id: Mapped[int | None] = mapped_column(ForeignKey("logfiles.id", ondelete="CASCADE"), default=None,
                                                   index=True)
    status: Mapped[str] = mapped_column(String(20), default="queued")  # queued/running/finished/failed
    error: Mapped[str] = mapped_column(Text, default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    finished_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    # running: the claim holds until then (renewed by its runner); queued: a sweep may hand the
    # job to a runner again after then (migration 0007). See api.worker.
    lease_until: Mapped[dt.datetime | None] = mapped_column(default=None)


class LiveSnapshot(TenantScoped, Base):
    """The newest live state of a test as its watcher posted it (``smartlogger test watch --post``):
    one row per test, replaced by each post (migration 0008). ``snapshot`` is the posted body
    (``schemas.LiveInSchema``); ``received_at`` is the server's clock when it came."""

    __tablename__ = "live_snapshots"
    id: Mapped[int] = mapped_column(primary_key=True)
    test_id: Mapped[int] = mapped_column(ForeignKey("tests.id", ondelete="CASCADE"), unique=True)
    snapshot: Mapped[dict[str, Any]] = mapped_column()
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    posted_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), default=None)


class AuditEvent(TenantScoped, Base):
    """Who uploaded, downloaded or deleted what, and when (append-only)."""

    __tablename__ = "audit_events"
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    action: Mapped[str] = mapped_column(String(40))  # upload, upload_duplicate, download, delete, ...
    object_type: Mapped[str] = mapped_column(String(40))
    object_id: Mapped[int | None] = mapped_column(Integer)
    sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    remote_addr: Mapped[str] = mapped_column(String(64), default="")
    detail: Mapped[str] = mapped_column(Text, default="")


TENANT_MODELS: tuple[type[Base], ...] = (
    User, ApiToken, Site, BatterySystem, BatteryString, BlockPosition, Logger, CapacityTest, Logfile,
    Result, Report, Job, AuditEvent, LiveSnapshot,
)

# SQLite: ids are never reused. Without AUTOINCREMENT SQLite gives a new row the largest id + 1, so
# deleting the newest logfile (or test, site, ...) would hand its id to the next one: an old link,
# a client's cached id or the audit log's "deleted logfile 7" would then name a different object.
# PostgreSQL's sequences never reuse ids. (Migration 0004 rebuilds existing SQLite tables so.)
for _table in Base.metadata.tables.values():
    _table.dialect_options["sqlite"]["autoincrement"] = True
