"""job leases: a running job's worker renews its lease; a lapsed lease lets any worker take over

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 00:45:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('queued_jobs') as batch:
        batch.add_column(sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('worker_id', sa.String(length=200), nullable=True))
    op.create_index('ix_queued_jobs_lease', 'queued_jobs', ['status', 'lease_until'])


def downgrade() -> None:
    op.drop_index('ix_queued_jobs_lease', table_name='queued_jobs')
    with op.batch_alter_table('queued_jobs') as batch:
        batch.drop_column('worker_id')
        batch.drop_column('lease_until')
