"""`code` tasks (one step, no plan) hold their issue like run, plan and ralph protocols

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 21:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

ENDED = "status NOT IN ('cancelled', 'completed', 'failed')"
BEFORE = "issue_number IS NOT NULL AND kind IN ('run', 'plan', 'ralph') AND " + ENDED
AFTER = "issue_number IS NOT NULL AND kind IN ('run', 'plan', 'ralph', 'code') AND " + ENDED


def _index(where: str) -> None:
    op.drop_index('uq_protocol_runs_active_issue', table_name='protocol_runs')
    op.create_index('uq_protocol_runs_active_issue', 'protocol_runs', ['project_id', 'issue_number'], unique=True,
                    sqlite_where=sa.text(where), postgresql_where=sa.text(where))


def upgrade() -> None:
    _index(AFTER)


def downgrade() -> None:
    _index(BEFORE)
