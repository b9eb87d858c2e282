"""protocols that wait for others (depends_on), and ids their callers chose (external_id)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 21:20:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('protocol_runs') as batch:
        batch.add_column(sa.Column('depends_on', sa.JSON(), nullable=False, server_default='[]'))
        batch.add_column(sa.Column('external_id', sa.String(), nullable=True))
    op.create_index('uq_protocol_runs_external_id', 'protocol_runs', ['project_id', 'external_id'], unique=True)


def downgrade() -> None:
    op.drop_index('uq_protocol_runs_external_id', table_name='protocol_runs')
    with op.batch_alter_table('protocol_runs') as batch:
        batch.drop_column('external_id')
        batch.drop_column('depends_on')
