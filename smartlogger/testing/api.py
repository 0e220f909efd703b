"""Test support for the API (used by tests/test_api_*.py and benchmarks/api.py, app.py).

Owns: building an app on a throw-away database (a temporary SQLite file, or a
fresh PostgreSQL schema when ``SMARTLOGGER_TEST_DATABASE_URL`` is set), seeding
organisations/users/tokens, and real simulated logfiles of a small capacity test
(firmware model + signed pull, exactly what the field tool uploads).

Never imported by the app itself: it reaches into ``smartlogger.device`` to simulate
loggers, which the API's own code must not depend on.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import text

from smartlogger.api.admin import Admin
from smartlogger.api.app import create_app
from smartlogger.api.db import make_engine
from smartlogger.device.sim import simulate_string_test
from smartlogger.device.store import MemoryStore
from smartlogger.logfile import LogfileMetadata, pull_logfile, simulated_credentials

PG_ENV = "SMARTLOGGER_TEST_DATABASE_URL"


@contextmanager
def database_url(kind: str) -> Iterator[tuple[str, str | None]]:
    """(url, schema) of an empty database: ``kind`` "sqlite" (in a temp dir) or "postgresql"."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="sl-api-db-") as d:
            yield f"sqlite:///{Path(d) / 'api.db'}", None
        return
    url = os.environ.get(PG_ENV)
    if not url:
        raise RuntimeError(f"{PG_ENV} is not set")
    schema = f"sl_test_{secrets.token_hex(6)}"
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield url, schema
    finally:
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()


@dataclass
class Tenant:
    """One organisation with a user and a token per role."""

    org_id: int
    name: str
    tokens: dict[str, str] = field(default_factory=dict)  # role -> bearer token
    user_ids: dict[str, int] = field(default_factory=dict)

    def headers(self, role: str = "admin", **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}", **extra}


def seed_tenant(admin: Admin, name: str) -> Tenant:
    org = admin.create_org(name)
    t = Tenant(org.id, name)
    slug = name.lower().replace(" ", "-")
    for role in ("admin", "technician", "viewer"):
        email = f"{role}@{slug}.example"
        user = admin.create_user(name, email, role, name=f"{role} of {name}")
        t.user_ids[role] = user.id
        t.tokens[role] = admin.issue_token(email, label="test").token
    return t


def make_app(data_dir: Path, url: str, schema: str | None, **config: Any) -> Flask:
    cfg: dict[str, Any] = {"DATA_DIR": str(data_dir), "DATABASE_URL": url, "DB_SCHEMA": schema,
                           "RATE_LIMIT_PER_MINUTE": 0, "REDIS_URL": None,
                           "AUTH_CACHE_SECONDS": 0, "CHECK_IDLE_SECONDS": 0}
    cfg.update(config)
    return create_app(cfg)


def simulated_logfiles(n_blocks: int = 4, *, load: str = "50A", seed: int = 1,
                       test_id: str = "T1") -> list[bytes]:
    """Signed logfiles of a simulated ``n_blocks`` capacity test (one per logger, ~5 kB each)."""
    st = simulate_string_test(n_blocks, weak=1, load=load, rest_before_s=60, rest_after_s=60,
                              test_id=test_id, seed=seed,
                              store_factory=lambda ident: MemoryStore(serial=ident.serial))
    out = []
    for lg in st.loggers:
        meta = LogfileMetadata(block_label=lg.config.block_label, block_position=lg.config.block_position,
                               test={"load": load, "test_id": test_id})
        out.append(pull_logfile(simulated_credentials(lg.identity), lg.identity, lg.store,
                                device_ms=lg.now_ms(), nonce=bytes(16), metadata=meta))
    return out


@dataclass
class ApiEnv:
    """An app on an empty database with two tenants, ``a`` and ``b``."""

    app: Flask
    admin: Admin
    a: Tenant
    b: Tenant
    url: str
    schema: str | None

    @property
    def client(self) -> Any:
        return self.app.test_client()

    def wait_jobs(self, timeout: float = 60.0) -> None:
        runner = self.app.extensions["smartlogger_jobs"]
        if not runner.wait_idle(timeout):
            raise TimeoutError(f"jobs still running after {timeout} s")


@contextmanager
def api_env(kind: str, data_dir: Path, **config: Any) -> Iterator[ApiEnv]:
    """An ``ApiEnv`` on a fresh ``kind`` database ("sqlite" or "postgresql"), torn down after."""
    with database_url(kind) as (url, schema):
        app = make_app(data_dir, url, schema, **config)
        admin = Admin(url, schema=schema, migrate=False)
        try:
            yield ApiEnv(app, admin, seed_tenant(admin, "Acme Service"), seed_tenant(admin, "Other Co"),
                         url, schema)
        finally:
            runner = app.extensions["smartlogger_jobs"]
            if hasattr(runner, "wait_idle"):
                runner.wait_idle(60)
            runner.close()
            sweeper = app.extensions.get("smartlogger_sweeper")
            if sweeper is not None:
                sweeper.close()
            admin.close()
            app.extensions["smartlogger_db"].dispose()


def backends() -> list[str]:
    """Database kinds to test on: SQLite always, PostgreSQL when ``SMARTLOGGER_TEST_DATABASE_URL`` is set."""
    return ["sqlite", "postgresql"] if os.environ.get(PG_ENV) else ["sqlite"]
