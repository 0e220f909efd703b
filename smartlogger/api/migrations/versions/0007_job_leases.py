"""jobs.lease_until: a claimed job's lease (exactly-once jobs)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03

A running job is held until ``lease_until``; its runner renews the lease while it works, so a
job whose runner died is taken again only after the lease has expired (``api.worker``). A queued
job's ``lease_until`` is when a sweep may hand it to a runner again (it was handed to one that
may have been lost). A nullable column: no rebuild, on either database.
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0007'
down_revision: Union[str, Sequence[str], None] = '0006'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column("jobs", sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("lease_until")
