"""custody: each logfile's authority, markers, device key, pull counter and custody flags; each
logger's device key, highest pull counter and flags

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03

New nullable (or defaulted) columns: no rebuild. Existing rows are filled from what the server
already holds (the stored verification report of each logfile), so custody starts from the
past: a logfile's authority, markers, device key and latest pull counter; a logger's device key
(the key of its earliest certified upload) and its highest pull counter under that key. Logfiles
of a SIMULATED/REPLAYED logger stored as ``verified`` before the statuses were split (issue 17)
become ``simulated``: the TEST authority never gave hardware evidence.
"""
import json
from typing import Any, Sequence, Union

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0006'
down_revision: Union[str, Sequence[str], None] = '0005'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_EMPTY_LIST = sa.text("'[]'")


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column("loggers", sa.Column("device_key", sa.String(length=64), nullable=True))
    op.add_column("loggers", sa.Column("max_pull_counter", sa.Integer(), nullable=True))
    op.add_column("loggers", sa.Column("custody", sa.JSON(), nullable=False, server_default=_EMPTY_LIST))
    op.add_column("logfiles", sa.Column("authority", sa.String(length=16), nullable=True))
    op.add_column("logfiles", sa.Column("markers", sa.JSON(), nullable=False, server_default=_EMPTY_LIST))
    op.add_column("logfiles", sa.Column("device_key", sa.String(length=64), nullable=True))
    op.add_column("logfiles", sa.Column("pull_counter", sa.Integer(), nullable=True))
    op.add_column("logfiles", sa.Column("custody", sa.JSON(), nullable=False, server_default=_EMPTY_LIST))
    _fill_from_reports()


def _fill_from_reports() -> None:
    conn = op.get_bind()
    logfiles = sa.table("logfiles", sa.column("id"), sa.column("logger_id"), sa.column("verification_status"),
                        sa.column("verification", sa.JSON()), sa.column("authority"),
                        sa.column("markers", sa.JSON()), sa.column("device_key"), sa.column("pull_counter"))
    loggers = sa.table("loggers", sa.column("id"), sa.column("device_key"), sa.column("max_pull_counter"))
    first_key: dict[int, str] = {}
    counters: dict[tuple[int, str], int] = {}
    rows = conn.execute(sa.select(logfiles.c.id, logfiles.c.logger_id, logfiles.c.verification_status,
                                  logfiles.c.verification).order_by(logfiles.c.id)).all()
    for lf_id, logger_id, status, ver in rows:
        report: dict[str, Any] = ver if isinstance(ver, dict) else json.loads(ver or "{}")
        authority = report.get("authority")
        key = report.get("device_key")
        latest = report.get("latest_pull") or {}
        counter = latest.get("counter") if isinstance(latest, dict) else None
        values: dict[str, Any] = {"authority": authority, "markers": list(report.get("markers") or []),
                                  "device_key": key, "pull_counter": counter}
        if status == "verified" and authority == "test":
            status = "simulated"
            report = {**report, "status": "simulated", "verified": False}
            values.update(verification_status=status, verification=report)
        conn.execute(logfiles.update().where(logfiles.c.id == lf_id).values(**values))
        if key and status in ("verified", "simulated"):
            first_key.setdefault(logger_id, key)  # rows in id order: the earliest upload's key
            if first_key[logger_id] == key and isinstance(counter, int):
                counters[(logger_id, key)] = max(counter, counters.get((logger_id, key), 0))
    for logger_id, key in first_key.items():
        conn.execute(loggers.update().where(loggers.c.id == logger_id).values(
            device_key=key, max_pull_counter=counters.get((logger_id, key))))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("logfiles") as batch:
        for name in ("custody", "pull_counter", "device_key", "markers", "authority"):
            batch.drop_column(name)
    with op.batch_alter_table("loggers") as batch:
        for name in ("custody", "max_pull_counter", "device_key"):
            batch.drop_column(name)
