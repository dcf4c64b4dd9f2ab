"""maintenance windows

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02

Maintenance windows (one-off or recurring by cron in a time zone) and the probes and
groups each covers; probe results record whether they ran in one, and an alert state
whether its rule fired in one (firing, no alert opened yet).
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('maintenance_windows',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('comment', sa.Text(), nullable=False),
    sa.Column('starts_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ends_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('cron', sa.String(length=100), nullable=True),
    sa.Column('duration_seconds', sa.Integer(), nullable=True),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('all_probes', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_maintenance_windows_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_maintenance_windows')),
    sa.UniqueConstraint('tenant_id', 'name', name=op.f('uq_maintenance_windows_tenant_id'))
    )
    with op.batch_alter_table('maintenance_windows', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_maintenance_windows_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('maintenance_window_probes',
    sa.Column('window_id', sa.Integer(), nullable=False),
    sa.Column('probe_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['probe_id'], ['probes.id'], name=op.f('fk_maintenance_window_probes_probe_id_probes'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['window_id'], ['maintenance_windows.id'], name=op.f('fk_maintenance_window_probes_window_id_maintenance_windows'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('window_id', 'probe_id', name=op.f('pk_maintenance_window_probes'))
    )
    with op.batch_alter_table('maintenance_window_probes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_maintenance_window_probes_probe_id'), ['probe_id'], unique=False)

    op.create_table('maintenance_window_groups',
    sa.Column('window_id', sa.Integer(), nullable=False),
    sa.Column('group_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['group_id'], ['probe_groups.id'], name=op.f('fk_maintenance_window_groups_group_id_probe_groups'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['window_id'], ['maintenance_windows.id'], name=op.f('fk_maintenance_window_groups_window_id_maintenance_windows'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('window_id', 'group_id', name=op.f('pk_maintenance_window_groups'))
    )
    with op.batch_alter_table('maintenance_window_groups', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_maintenance_window_groups_group_id'), ['group_id'], unique=False)

    with op.batch_alter_table('probe_results', schema=None) as batch_op:
        batch_op.add_column(sa.Column('in_maintenance', sa.Boolean(), server_default=sa.false(), nullable=False))
    with op.batch_alter_table('alert_states', schema=None) as batch_op:
        batch_op.add_column(sa.Column('held', sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade():
    with op.batch_alter_table('alert_states', schema=None) as batch_op:
        batch_op.drop_column('held')
    with op.batch_alter_table('probe_results', schema=None) as batch_op:
        batch_op.drop_column('in_maintenance')
    for table, column in (('maintenance_window_groups', 'group_id'), ('maintenance_window_probes', 'probe_id'),
                          ('maintenance_windows', 'tenant_id')):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(batch_op.f(f'ix_{table}_{column}'))
        op.drop_table(table)
