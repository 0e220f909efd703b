"""logfile check jobs: jobs.logfile_id (the deferred full sample decode of one uploaded logfile)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21

Existing jobs are analyses and reports: their logfile_id is NULL.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0003'
down_revision: Union[str, Sequence[str], None] = '0002'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('logfile_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_jobs_logfile_id'), ['logfile_id'], unique=False)
        batch_op.create_foreign_key('fk_jobs_logfile_id_logfiles', 'logfiles', ['logfile_id'], ['id'],
                                    ondelete='CASCADE')


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_constraint('fk_jobs_logfile_id_logfiles', type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_jobs_logfile_id'))
        batch_op.drop_column('logfile_id')
