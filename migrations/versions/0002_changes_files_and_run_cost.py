"""steps that must change files; run costs in full precision

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 23:45:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('step_runs') as batch:
        batch.add_column(sa.Column('changes_files', sa.Boolean(), nullable=False, server_default=sa.true()))
    with op.batch_alter_table('codex_runs') as batch:
        batch.add_column(sa.Column('cost_usd', sa.Float(), nullable=True))
    op.execute("UPDATE codex_runs SET cost_usd = cost_cents / 100.0 WHERE cost_cents IS NOT NULL")
    with op.batch_alter_table('codex_runs') as batch:
        batch.drop_column('cost_cents')


def downgrade() -> None:
    with op.batch_alter_table('codex_runs') as batch:
        batch.add_column(sa.Column('cost_cents', sa.Integer(), nullable=True))
    op.execute("UPDATE codex_runs SET cost_cents = CAST(ROUND(cost_usd * 100) AS INTEGER) WHERE cost_usd IS NOT NULL")
    with op.batch_alter_table('codex_runs') as batch:
        batch.drop_column('cost_usd')
    with op.batch_alter_table('step_runs') as batch:
        batch.drop_column('changes_files')
