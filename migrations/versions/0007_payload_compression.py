"""webhook payloads compressed with lz4 on PostgreSQL

PostgreSQL compresses a stored payload (a 15 KB issue comment) with pglz by default, which cost more
CPU per delivery than everything else the database does for it; lz4 is several times faster at a
similar size. PostgreSQL before 14, or one built without lz4, keeps pglz.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 02:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def _has_lz4(bind: sa.engine.Connection) -> bool:
    if bind.dialect.name != 'postgresql' or bind.dialect.server_version_info < (14,):
        return False
    methods = bind.execute(sa.text("SELECT enumvals FROM pg_settings WHERE name = 'default_toast_compression'"))
    return 'lz4' in (methods.scalar() or [])


def upgrade() -> None:
    if _has_lz4(op.get_bind()):
        op.execute('ALTER TABLE webhook_deliveries ALTER COLUMN payload SET COMPRESSION lz4')


def downgrade() -> None:
    if _has_lz4(op.get_bind()):
        op.execute('ALTER TABLE webhook_deliveries ALTER COLUMN payload SET COMPRESSION pglz')
