"""ansible

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04

Hosts and groups (nested, with variables), inventories built from them or given as
INI/YAML text, encrypted credentials, playbooks with their versions, execution templates
(with a cron schedule), executions and their events keyed by (execution, seq).
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('ansible_credentials',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('username', sa.String(length=255), nullable=True),
    sa.Column('secret', sa.Text(), nullable=True),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_ansible_credentials_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ansible_credentials')),
    sa.UniqueConstraint('tenant_id', 'name', name=op.f('uq_ansible_credentials_tenant_id'))
    )
    with op.batch_alter_table('ansible_credentials', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ansible_credentials_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('ansible_groups',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('variables', sa.JSON(), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_ansible_groups_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ansible_groups')),
    sa.UniqueConstraint('tenant_id', 'name', name=op.f('uq_ansible_groups_tenant_id'))
    )
    with op.batch_alter_table('ansible_groups', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ansible_groups_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('ansible_hosts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('address', sa.String(length=255), nullable=True),
    sa.Column('port', sa.Integer(), nullable=True),
    sa.Column('variables', sa.JSON(), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_ansible_hosts_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ansible_hosts')),
    sa.UniqueConstraint('tenant_id', 'name', name=op.f('uq_ansible_hosts_tenant_id'))
    )
    with op.batch_alter_table('ansible_hosts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ansible_hosts_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('ansible_inventories',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('text_format', sa.String(length=8), nullable=True),
    sa.Column('content', sa.Text(), nullable=True),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_ansible_inventories_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ansible_inventories')),
    sa.UniqueConstraint('tenant_id', 'name', name=op.f('uq_ansible_inventories_tenant_id'))
    )
    with op.batch_alter_table('ansible_inventories', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ansible_inventories_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('ansible_playbooks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('project_dir', sa.String(length=1024), nullable=True),
    sa.Column('playbook_file', sa.String(length=1024), nullable=True),
    sa.Column('current_version', sa.Integer(), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_ansible_playbooks_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ansible_playbooks')),
    sa.UniqueConstraint('tenant_id', 'name', name=op.f('uq_ansible_playbooks_tenant_id'))
    )
    with op.batch_alter_table('ansible_playbooks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ansible_playbooks_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('ansible_execution_templates',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('playbook_id', sa.Integer(), nullable=False),
    sa.Column('inventory_id', sa.Integer(), nullable=False),
    sa.Column('credential_ids', sa.JSON(), nullable=False),
    sa.Column('options', sa.JSON(), nullable=False),
    sa.Column('cron', sa.String(length=100), nullable=True),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('next_run_at', sa.BigInteger(), nullable=True),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['inventory_id'], ['ansible_inventories.id'], name=op.f('fk_ansible_execution_templates_inventory_id_ansible_inventories'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['playbook_id'], ['ansible_playbooks.id'], name=op.f('fk_ansible_execution_templates_playbook_id_ansible_playbooks'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_ansible_execution_templates_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ansible_execution_templates')),
    sa.UniqueConstraint('tenant_id', 'name', name=op.f('uq_ansible_execution_templates_tenant_id'))
    )
    with op.batch_alter_table('ansible_execution_templates', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ansible_execution_templates_inventory_id'), ['inventory_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_ansible_execution_templates_next_run_at'), ['next_run_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_ansible_execution_templates_playbook_id'), ['playbook_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_ansible_execution_templates_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('ansible_group_children',
    sa.Column('parent_id', sa.Integer(), nullable=False),
    sa.Column('child_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['child_id'], ['ansible_groups.id'], name=op.f('fk_ansible_group_children_child_id_ansible_groups'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['parent_id'], ['ansible_groups.id'], name=op.f('fk_ansible_group_children_parent_id_ansible_groups'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('parent_id', 'child_id', name=op.f('pk_ansible_group_children'))
    )
    with op.batch_alter_table('ansible_group_children', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ansible_group_children_child_id'), ['child_id'], unique=False)

    op.create_table('ansible_group_hosts',
    sa.Column('group_id', sa.Integer(), nullable=False),
    sa.Column('host_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['group_id'], ['ansible_groups.id'], name=op.f('fk_ansible_group_hosts_group_id_ansible_groups'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['host_id'], ['ansible_hosts.id'], name=op.f('fk_ansible_group_hosts_host_id_ansible_hosts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('group_id', 'host_id', name=op.f('pk_ansible_group_hosts'))
    )
    with op.batch_alter_table('ansible_group_hosts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ansible_group_hosts_host_id'), ['host_id'], unique=False)

    op.create_table('ansible_inventory_groups',
    sa.Column('inventory_id', sa.Integer(), nullable=False),
    sa.Column('group_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['group_id'], ['ansible_groups.id'], name=op.f('fk_ansible_inventory_groups_group_id_ansible_groups'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['inventory_id'], ['ansible_inventories.id'], name=op.f('fk_ansible_inventory_groups_inventory_id_ansible_inventories'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('inventory_id', 'group_id', name=op.f('pk_ansible_inventory_groups'))
    )
    with op.batch_alter_table('ansible_inventory_groups', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ansible_inventory_groups_group_id'), ['group_id'], unique=False)

    op.create_table('ansible_inventory_hosts',
    sa.Column('inventory_id', sa.Integer(), nullable=False),
    sa.Column('host_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['host_id'], ['ansible_hosts.id'], name=op.f('fk_ansible_inventory_hosts_host_id_ansible_hosts'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['inventory_id'], ['ansible_inventories.id'], name=op.f('fk_ansible_inventory_hosts_inventory_id_ansible_inventories'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('inventory_id', 'host_id', name=op.f('pk_ansible_inventory_hosts'))
    )
    with op.batch_alter_table('ansible_inventory_hosts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ansible_inventory_hosts_host_id'), ['host_id'], unique=False)

    op.create_table('ansible_playbook_versions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('playbook_id', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('content', sa.Text(), nullable=True),
    sa.Column('project_dir', sa.String(length=1024), nullable=True),
    sa.Column('playbook_file', sa.String(length=1024), nullable=True),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['playbook_id'], ['ansible_playbooks.id'], name=op.f('fk_ansible_playbook_versions_playbook_id_ansible_playbooks'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ansible_playbook_versions')),
    sa.UniqueConstraint('playbook_id', 'version', name=op.f('uq_ansible_playbook_versions_playbook_id'))
    )
    op.create_table('ansible_executions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('playbook_id', sa.Integer(), nullable=True),
    sa.Column('playbook_version_id', sa.Integer(), nullable=True),
    sa.Column('playbook_name', sa.String(length=100), nullable=False),
    sa.Column('inventory_id', sa.Integer(), nullable=True),
    sa.Column('template_id', sa.Integer(), nullable=True),
    sa.Column('inventory_text', sa.Text(), nullable=False),
    sa.Column('credential_ids', sa.JSON(), nullable=False),
    sa.Column('options', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('rc', sa.Integer(), nullable=True),
    sa.Column('host_summary', sa.JSON(), nullable=False),
    sa.Column('event_count', sa.Integer(), nullable=False),
    sa.Column('task_id', sa.String(length=64), nullable=True),
    sa.Column('worker', sa.String(length=255), nullable=True),
    sa.Column('created_by', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('published_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('cancel_requested_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['created_by'], ['users.id'], name=op.f('fk_ansible_executions_created_by_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['inventory_id'], ['ansible_inventories.id'], name=op.f('fk_ansible_executions_inventory_id_ansible_inventories'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['playbook_id'], ['ansible_playbooks.id'], name=op.f('fk_ansible_executions_playbook_id_ansible_playbooks'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['playbook_version_id'], ['ansible_playbook_versions.id'], name=op.f('fk_ansible_executions_playbook_version_id_ansible_playbook_versions'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['template_id'], ['ansible_execution_templates.id'], name=op.f('fk_ansible_executions_template_id_ansible_execution_templates'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_ansible_executions_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ansible_executions'))
    )
    with op.batch_alter_table('ansible_executions', schema=None) as batch_op:
        batch_op.create_index('ix_ansible_executions_active', ['status'], unique=False, postgresql_where=sa.text("status IN ('pending', 'running')"), sqlite_where=sa.text("status IN ('pending', 'running')"))
        batch_op.create_index(batch_op.f('ix_ansible_executions_template_id'), ['template_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_ansible_executions_tenant_id'), ['tenant_id'], unique=False)
        batch_op.create_index('ix_ansible_executions_tenant_id_created_at', ['tenant_id', 'created_at'], unique=False)

    op.create_table('ansible_host_probes',
    sa.Column('host_id', sa.Integer(), nullable=False),
    sa.Column('probe_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['host_id'], ['ansible_hosts.id'], name=op.f('fk_ansible_host_probes_host_id_ansible_hosts'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['probe_id'], ['probes.id'], name=op.f('fk_ansible_host_probes_probe_id_probes'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('host_id', 'probe_id', name=op.f('pk_ansible_host_probes'))
    )
    with op.batch_alter_table('ansible_host_probes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ansible_host_probes_probe_id'), ['probe_id'], unique=False)

    op.create_table('ansible_execution_events',
    sa.Column('execution_id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('event', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('host', sa.String(length=255), nullable=True),
    sa.Column('play', sa.String(length=1024), nullable=True),
    sa.Column('task', sa.String(length=1024), nullable=True),
    sa.Column('stdout', sa.Text(), nullable=False),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.Column('truncated', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['execution_id'], ['ansible_executions.id'], name=op.f('fk_ansible_execution_events_execution_id_ansible_executions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('execution_id', 'seq', name=op.f('pk_ansible_execution_events'))
    )


def downgrade():
    op.drop_table('ansible_execution_events')
    with op.batch_alter_table('ansible_host_probes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ansible_host_probes_probe_id'))

    op.drop_table('ansible_host_probes')
    with op.batch_alter_table('ansible_executions', schema=None) as batch_op:
        batch_op.drop_index('ix_ansible_executions_tenant_id_created_at')
        batch_op.drop_index(batch_op.f('ix_ansible_executions_tenant_id'))
        batch_op.drop_index(batch_op.f('ix_ansible_executions_template_id'))
        batch_op.drop_index('ix_ansible_executions_active', postgresql_where=sa.text("status IN ('pending', 'running')"), sqlite_where=sa.text("status IN ('pending', 'running')"))

    op.drop_table('ansible_executions')
    op.drop_table('ansible_playbook_versions')
    with op.batch_alter_table('ansible_inventory_hosts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ansible_inventory_hosts_host_id'))

    op.drop_table('ansible_inventory_hosts')
    with op.batch_alter_table('ansible_inventory_groups', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ansible_inventory_groups_group_id'))

    op.drop_table('ansible_inventory_groups')
    with op.batch_alter_table('ansible_group_hosts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ansible_group_hosts_host_id'))

    op.drop_table('ansible_group_hosts')
    with op.batch_alter_table('ansible_group_children', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ansible_group_children_child_id'))

    op.drop_table('ansible_group_children')
    with op.batch_alter_table('ansible_execution_templates', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ansible_execution_templates_tenant_id'))
        batch_op.drop_index(batch_op.f('ix_ansible_execution_templates_playbook_id'))
        batch_op.drop_index(batch_op.f('ix_ansible_execution_templates_next_run_at'))
        batch_op.drop_index(batch_op.f('ix_ansible_execution_templates_inventory_id'))

    op.drop_table('ansible_execution_templates')
    with op.batch_alter_table('ansible_playbooks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ansible_playbooks_tenant_id'))

    op.drop_table('ansible_playbooks')
    with op.batch_alter_table('ansible_inventories', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ansible_inventories_tenant_id'))

    op.drop_table('ansible_inventories')
    with op.batch_alter_table('ansible_hosts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ansible_hosts_tenant_id'))

    op.drop_table('ansible_hosts')
    with op.batch_alter_table('ansible_groups', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ansible_groups_tenant_id'))

    op.drop_table('ansible_groups')
    with op.batch_alter_table('ansible_credentials', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ansible_credentials_tenant_id'))

    op.drop_table('ansible_credentials')
