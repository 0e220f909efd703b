"""live_snapshots: the newest live state of a test, posted by its watcher

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03

``smartlogger test watch --post`` sends the watch's state every few seconds
(``PUT /api/tests/{id}/live``); the server keeps only the newest one per test (a unique
``test_id``, the row replaced on each post) for the app's live panel. A new table: no
rebuild, on either database; on SQLite with AUTOINCREMENT like every table (0004).
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0008'
down_revision: Union[str, Sequence[str], None] = '0007'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "live_snapshots",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("test_id", sa.Integer(), nullable=False),
        sa.Column("snapshot", sa.JSON(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("posted_by", sa.Integer(), nullable=True),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["organisations.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["test_id"], ["tests.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["posted_by"], ["users.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("test_id"),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_live_snapshots_org_id"), "live_snapshots", ["org_id"], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index(op.f("ix_live_snapshots_org_id"), table_name="live_snapshots")
    op.drop_table("live_snapshots")
