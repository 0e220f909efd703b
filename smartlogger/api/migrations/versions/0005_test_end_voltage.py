"""tests.end_voltage: the end voltage as the technician states it (per cell, block or string)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03

``end_voltage`` keeps the text (``10.5V/block``, ``252V/string``, ``1.75V/cell``); the
analysis converts it with the string's cells per block and blocks. ``end_v_per_cell`` stays
for clients that send a number per cell. A nullable column: no rebuild, on either database.
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0005'
down_revision: Union[str, Sequence[str], None] = '0004'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column("tests", sa.Column("end_voltage", sa.String(length=50), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("tests") as batch:
        batch.drop_column("end_voltage")
