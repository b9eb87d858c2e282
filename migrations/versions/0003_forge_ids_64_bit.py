"""forge ids are 64-bit: github.com's comment and check-run ids are past 2^31

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 00:30:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

COLUMNS = {
    'projects': ('forge_repo_id', 'installation_id'),
    'protocol_runs': ('status_comment_id', 'check_run_id'),
    'webhook_deliveries': ('installation_id',),
}


def _retype(to: sa.types.TypeEngine, from_: sa.types.TypeEngine) -> None:
    if op.get_bind().dialect.name == 'sqlite':
        return  # SQLite's INTEGER already holds 64 bits
    for table, columns in COLUMNS.items():
        with op.batch_alter_table(table) as batch:
            for column in columns:
                batch.alter_column(column, type_=to, existing_type=from_, existing_nullable=True)


def upgrade() -> None:
    _retype(sa.BigInteger(), sa.Integer())


def downgrade() -> None:
    _retype(sa.Integer(), sa.BigInteger())
