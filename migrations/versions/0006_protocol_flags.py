"""protocol flags: awaiting_merge and awaiting_answers move out of runtime_state into columns

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 10:10:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

FLAGS = ('awaiting_merge', 'awaiting_answers')
protocols = sa.table('protocol_runs', sa.column('id', sa.Integer), sa.column('runtime_state', sa.JSON),
                     *(sa.column(flag, sa.Boolean) for flag in FLAGS))


def upgrade() -> None:
    with op.batch_alter_table('protocol_runs') as batch:
        for flag in FLAGS:
            batch.add_column(sa.Column(flag, sa.Boolean(), nullable=False, server_default=sa.false()))
    bind = op.get_bind()
    for row_id, state in bind.execute(sa.select(protocols.c.id, protocols.c.runtime_state)).all():
        state = dict(state or {})
        if any(flag in state for flag in FLAGS):
            values = {flag: bool(state.pop(flag, False)) for flag in FLAGS}
            bind.execute(protocols.update().where(protocols.c.id == row_id).values(runtime_state=state, **values))


def downgrade() -> None:
    bind = op.get_bind()
    for row_id, state, *flags in bind.execute(sa.select(protocols.c.id, protocols.c.runtime_state,
                                                        *(protocols.c[flag] for flag in FLAGS))).all():
        set_flags = {flag: True for flag, value in zip(FLAGS, flags) if value}
        if set_flags:
            bind.execute(protocols.update().where(protocols.c.id == row_id)
                         .values(runtime_state={**(state or {}), **set_flags}))
    with op.batch_alter_table('protocol_runs') as batch:
        for flag in reversed(FLAGS):
            batch.drop_column(flag)
