"""at most one active protocol per issue, enforced by a partial unique index

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 00:40:00

Protocols that raced before this (several active on one issue) are resolved first: the newest
stays, the older ones are cancelled.
"""

from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

ACTIVE_WORK = ("issue_number IS NOT NULL AND kind IN ('run', 'plan', 'ralph') "
               "AND status NOT IN ('cancelled', 'completed', 'failed')")


def upgrade() -> None:
    op.execute(
        "UPDATE protocol_runs SET status = 'cancelled' WHERE " + ACTIVE_WORK + " AND id < ("
        "SELECT MAX(newer.id) FROM protocol_runs AS newer WHERE newer.project_id = protocol_runs.project_id "
        "AND newer.issue_number = protocol_runs.issue_number AND newer.kind IN ('run', 'plan', 'ralph') "
        "AND newer.status NOT IN ('cancelled', 'completed', 'failed'))")
    op.create_index('uq_protocol_runs_active_issue', 'protocol_runs', ['project_id', 'issue_number'], unique=True,
                    sqlite_where=sa.text(ACTIVE_WORK), postgresql_where=sa.text(ACTIVE_WORK))


def downgrade() -> None:
    op.drop_index('uq_protocol_runs_active_issue', table_name='protocol_runs')
