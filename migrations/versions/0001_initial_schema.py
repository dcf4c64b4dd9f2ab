"""initial schema: tenants, probe groups, probes, results, task failures

Revision ID: 0001
Revises: 
Create Date: 2026-11-29

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('tenants',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tenants')),
    sa.UniqueConstraint('name', name=op.f('uq_tenants_name'))
    )
    op.create_table('probe_groups',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_probe_groups_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_probe_groups')),
    sa.UniqueConstraint('tenant_id', 'name', name=op.f('uq_probe_groups_tenant_id'))
    )
    with op.batch_alter_table('probe_groups', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_probe_groups_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('task_failures',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('task_id', sa.String(length=64), nullable=False),
    sa.Column('task_name', sa.String(length=200), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=True),
    sa.Column('args', sa.JSON(), nullable=False),
    sa.Column('kwargs', sa.JSON(), nullable=False),
    sa.Column('error', sa.Text(), nullable=False),
    sa.Column('traceback', sa.Text(), nullable=True),
    sa.Column('retries', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_task_failures_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_task_failures'))
    )
    with op.batch_alter_table('task_failures', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_task_failures_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_task_failures_task_id'), ['task_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_task_failures_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('probes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('group_id', sa.Integer(), nullable=True),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('protocol', sa.String(length=16), nullable=False),
    sa.Column('target', sa.String(length=2048), nullable=False),
    sa.Column('method', sa.String(length=10), nullable=False),
    sa.Column('headers', sa.JSON(), nullable=False),
    sa.Column('body', sa.Text(), nullable=True),
    sa.Column('expect', sa.Text(), nullable=True),
    sa.Column('verify_tls', sa.Boolean(), nullable=False),
    sa.Column('follow_redirects', sa.Boolean(), nullable=False),
    sa.Column('timeout_seconds', sa.Float(), nullable=False),
    sa.Column('interval_seconds', sa.Integer(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('auto_probe', sa.Boolean(), nullable=False),
    sa.Column('conditions', sa.JSON(), nullable=False),
    sa.Column('next_run_at', sa.BigInteger(), nullable=True),
    sa.Column('missed_runs', sa.BigInteger(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['group_id'], ['probe_groups.id'], name=op.f('fk_probes_group_id_probe_groups'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_probes_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_probes')),
    sa.UniqueConstraint('tenant_id', 'name', name=op.f('uq_probes_tenant_id'))
    )
    with op.batch_alter_table('probes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_probes_group_id'), ['group_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_probes_next_run_at'), ['next_run_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_probes_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('probe_results',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('probe_id', sa.Integer(), nullable=False),
    sa.Column('run_key', sa.String(length=80), nullable=False),
    sa.Column('probe_type', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('response_time_ms', sa.Float(), nullable=True),
    sa.Column('status_code', sa.Integer(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('dns_ms', sa.Float(), nullable=True),
    sa.Column('connect_ms', sa.Float(), nullable=True),
    sa.Column('tls_ms', sa.Float(), nullable=True),
    sa.Column('processing_ms', sa.Float(), nullable=True),
    sa.Column('transfer_ms', sa.Float(), nullable=True),
    sa.Column('cert_expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('bytes_read', sa.Integer(), nullable=False),
    sa.Column('scheduled_for', sa.DateTime(timezone=True), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['probe_id'], ['probes.id'], name=op.f('fk_probe_results_probe_id_probes'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_probe_results_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_probe_results')),
    sa.UniqueConstraint('probe_id', 'run_key', name=op.f('uq_probe_results_probe_id'))
    )
    with op.batch_alter_table('probe_results', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_probe_results_created_at'), ['created_at'], unique=False)
        batch_op.create_index('ix_probe_results_probe_id_created_at', ['probe_id', 'created_at'], unique=False)
        batch_op.create_index('ix_probe_results_tenant_id_created_at', ['tenant_id', 'created_at'], unique=False)



def downgrade():
    with op.batch_alter_table('probe_results', schema=None) as batch_op:
        batch_op.drop_index('ix_probe_results_tenant_id_created_at')
        batch_op.drop_index('ix_probe_results_probe_id_created_at')
        batch_op.drop_index(batch_op.f('ix_probe_results_created_at'))

    op.drop_table('probe_results')
    with op.batch_alter_table('probes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_probes_tenant_id'))
        batch_op.drop_index(batch_op.f('ix_probes_next_run_at'))
        batch_op.drop_index(batch_op.f('ix_probes_group_id'))

    op.drop_table('probes')
    with op.batch_alter_table('task_failures', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_task_failures_tenant_id'))
        batch_op.drop_index(batch_op.f('ix_task_failures_task_id'))
        batch_op.drop_index(batch_op.f('ix_task_failures_created_at'))

    op.drop_table('task_failures')
    with op.batch_alter_table('probe_groups', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_probe_groups_tenant_id'))

    op.drop_table('probe_groups')
    op.drop_table('tenants')
