"""SQLite: AUTOINCREMENT on every table, so a deleted row's id is never given to a new row

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21

SQLite gives a new row the largest id + 1 unless the table is declared AUTOINCREMENT, so
deleting the newest logfile would hand its id to the next upload. SQLite cannot alter a
table's key, so each table is rebuilt (copied with its rows and ids, indexes and constraints);
``smartlogger.api.migrate.upgrade`` turns foreign keys off around the migration, or dropping
the old tables would run their ON DELETE actions, and checks every reference afterwards.
PostgreSQL: nothing to do (sequences never reuse ids).
"""
from typing import Sequence, Union

from alembic import op


# revision identifiers, used by Alembic.
revision: str = '0004'
down_revision: Union[str, Sequence[str], None] = '0003'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

TABLES = ("organisations", "users", "api_tokens", "sites", "battery_systems", "battery_strings",
          "block_positions", "loggers", "tests", "logfiles", "results", "reports", "jobs", "audit_events")


def _rebuild(autoincrement: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for name in TABLES:
        with op.batch_alter_table(name, recreate="always",
                                  table_kwargs={"sqlite_autoincrement": autoincrement}):
            pass


def upgrade() -> None:
    """Upgrade schema."""
    _rebuild(True)


def downgrade() -> None:
    """Downgrade schema."""
    _rebuild(False)
