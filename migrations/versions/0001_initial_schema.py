"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-23 21:09:16.593487
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('codex_runs',
    sa.Column('run_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('job_type', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('run_kind', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=True),
    sa.Column('protocol_run_id', sa.Integer(), nullable=True),
    sa.Column('step_run_id', sa.Integer(), nullable=True),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('worker_id', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('queue', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('prompt_version', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('engine', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('model', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('result', sa.JSON(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('log_path', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('cost_tokens', sa.Integer(), nullable=False),
    sa.Column('cost_cents', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('run_id')
    )
    with op.batch_alter_table('codex_runs', schema=None) as batch_op:
        batch_op.create_index('ix_codex_runs_created', ['created_at'], unique=False)
        batch_op.create_index('ix_codex_runs_project_created', ['project_id', 'created_at'], unique=False)
        batch_op.create_index('ix_codex_runs_protocol', ['protocol_run_id'], unique=False)
        batch_op.create_index('ix_codex_runs_status', ['status'], unique=False)
        batch_op.create_index('ix_codex_runs_step', ['step_run_id'], unique=False)

    op.create_table('events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=True),
    sa.Column('protocol_run_id', sa.Integer(), nullable=True),
    sa.Column('step_run_id', sa.Integer(), nullable=True),
    sa.Column('event_type', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('metadata', sa.JSON(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.create_index('ix_events_project', ['project_id', 'id'], unique=False)
        batch_op.create_index('ix_events_protocol', ['protocol_run_id', 'id'], unique=False)

    op.create_table('projects',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('git_url', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('local_path', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('base_branch', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('ci_provider', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('forge', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('forge_repo', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('forge_repo_id', sa.Integer(), nullable=True),
    sa.Column('installation_id', sa.Integer(), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('secrets', sa.JSON(), nullable=False),
    sa.Column('default_models', sa.JSON(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('forge', 'forge_repo', name='uq_projects_forge_repo')
    )
    with op.batch_alter_table('projects', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_projects_installation_id'), ['installation_id'], unique=False)

    op.create_table('queued_jobs',
    sa.Column('job_id', sqlmodel.sql.sqltypes.AutoString(length=250), nullable=False),
    sa.Column('function', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('args', sa.JSON(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('delivery_id', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('project_id', sa.Integer(), nullable=True),
    sa.Column('protocol_run_id', sa.Integer(), nullable=True),
    sa.Column('step_run_id', sa.Integer(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('enqueued_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('job_id')
    )
    with op.batch_alter_table('queued_jobs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_queued_jobs_delivery_id'), ['delivery_id'], unique=False)
        batch_op.create_index('ix_queued_jobs_status', ['status', 'enqueued_at'], unique=False)

    op.create_table('webhook_deliveries',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('delivery_id', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('forge', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('event', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('action', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('repo', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('installation_id', sa.Integer(), nullable=True),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('processed_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('delivery_id')
    )
    with op.batch_alter_table('webhook_deliveries', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_webhook_deliveries_status'), ['status'], unique=False)

    op.create_table('clarifications',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('scope', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('protocol_run_id', sa.Integer(), nullable=True),
    sa.Column('step_run_id', sa.Integer(), nullable=True),
    sa.Column('key', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('question', sa.Text(), nullable=False),
    sa.Column('recommended', sa.JSON(), nullable=True),
    sa.Column('options', sa.JSON(), nullable=True),
    sa.Column('applies_to', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('blocking', sa.Boolean(), nullable=False),
    sa.Column('answer', sa.JSON(), nullable=True),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('answered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('answered_by', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('clarifications', schema=None) as batch_op:
        batch_op.create_index('ix_clarifications_scope', ['project_id', 'protocol_run_id', 'key'], unique=False)

    op.create_table('messages',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('protocol_run_id', sa.Integer(), nullable=True),
    sa.Column('type', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('author', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('metadata', sa.JSON(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.create_index('ix_messages_project', ['project_id', 'id'], unique=False)
        batch_op.create_index('ix_messages_protocol', ['protocol_run_id', 'id'], unique=False)

    op.create_table('protocol_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('protocol_name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('base_branch', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('branch', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('worktree_path', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('protocol_root', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('template_config', sa.JSON(), nullable=True),
    sa.Column('template_source', sa.JSON(), nullable=True),
    sa.Column('policy', sa.JSON(), nullable=False),
    sa.Column('runtime_state', sa.JSON(), nullable=False),
    sa.Column('issue_number', sa.Integer(), nullable=True),
    sa.Column('issue_title', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('pr_number', sa.Integer(), nullable=True),
    sa.Column('pr_url', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('head_sha', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('engine', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('model', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('created_by', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('status_comment_id', sa.Integer(), nullable=True),
    sa.Column('check_run_id', sa.Integer(), nullable=True),
    sa.Column('check_run_sha', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('check_run_completed', sa.Boolean(), nullable=False),
    sa.Column('tokens_used', sa.Integer(), nullable=False),
    sa.Column('cost_usd', sa.Float(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('protocol_runs', schema=None) as batch_op:
        batch_op.create_index('ix_protocol_runs_branch', ['project_id', 'branch'], unique=False)
        batch_op.create_index('ix_protocol_runs_project_created', ['project_id', 'id'], unique=False)
        batch_op.create_index('ix_protocol_runs_project_issue', ['project_id', 'issue_number'], unique=False)
        batch_op.create_index(batch_op.f('ix_protocol_runs_status'), ['status'], unique=False)

    op.create_table('run_artifacts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('path', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('sha256', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('bytes', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['codex_runs.run_id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('run_artifacts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_run_artifacts_run_id'), ['run_id'], unique=False)

    op.create_table('step_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('protocol_run_id', sa.Integer(), nullable=False),
    sa.Column('step_index', sa.Integer(), nullable=False),
    sa.Column('step_name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('step_type', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('retries', sa.Integer(), nullable=False),
    sa.Column('model', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('engine_id', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('prompt', sa.Text(), nullable=True),
    sa.Column('qa_policy', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('depends_on', sa.JSON(), nullable=False),
    sa.Column('policy', sa.JSON(), nullable=False),
    sa.Column('runtime_state', sa.JSON(), nullable=False),
    sa.Column('summary', sa.Text(), nullable=True),
    sa.Column('tokens_used', sa.Integer(), nullable=False),
    sa.Column('cost_usd', sa.Float(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['protocol_run_id'], ['protocol_runs.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('protocol_run_id', 'step_index', name='uq_step_runs_index')
    )
    with op.batch_alter_table('step_runs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_step_runs_protocol_run_id'), ['protocol_run_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('step_runs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_step_runs_protocol_run_id'))

    op.drop_table('step_runs')
    with op.batch_alter_table('run_artifacts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_run_artifacts_run_id'))

    op.drop_table('run_artifacts')
    with op.batch_alter_table('protocol_runs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_protocol_runs_status'))
        batch_op.drop_index('ix_protocol_runs_project_issue')
        batch_op.drop_index('ix_protocol_runs_project_created')
        batch_op.drop_index('ix_protocol_runs_branch')

    op.drop_table('protocol_runs')
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_index('ix_messages_protocol')
        batch_op.drop_index('ix_messages_project')

    op.drop_table('messages')
    with op.batch_alter_table('clarifications', schema=None) as batch_op:
        batch_op.drop_index('ix_clarifications_scope')

    op.drop_table('clarifications')
    with op.batch_alter_table('webhook_deliveries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_webhook_deliveries_status'))

    op.drop_table('webhook_deliveries')
    with op.batch_alter_table('queued_jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_queued_jobs_status')
        batch_op.drop_index(batch_op.f('ix_queued_jobs_delivery_id'))

    op.drop_table('queued_jobs')
    with op.batch_alter_table('projects', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_projects_installation_id'))

    op.drop_table('projects')
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_index('ix_events_protocol')
        batch_op.drop_index('ix_events_project')

    op.drop_table('events')
    with op.batch_alter_table('codex_runs', schema=None) as batch_op:
        batch_op.drop_index('ix_codex_runs_step')
        batch_op.drop_index('ix_codex_runs_status')
        batch_op.drop_index('ix_codex_runs_protocol')
        batch_op.drop_index('ix_codex_runs_project_created')
        batch_op.drop_index('ix_codex_runs_created')

    op.drop_table('codex_runs')
