"""alert noise control

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03

Probe dependencies (a child's alerts are suppressed while a parent is down), silences,
alert groups with the items waiting in them, and on rules their grouping, flapping and
escalation settings; on alerts the suppression, flapping, silence and escalation marks;
on rule states whether the condition holds and when it last changed.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

RULE_COLUMNS = (
    ('group_by', sa.String(length=16), 'none'),
    ('group_wait_seconds', sa.Integer(), '30'),
    ('group_interval_seconds', sa.Integer(), '300'),
    ('flap_changes', sa.Integer(), '5'),
    ('flap_window_seconds', sa.Integer(), '600'),
    ('flap_settle_seconds', sa.Integer(), '600'),
)


def upgrade():
    op.create_table('probe_dependencies',
    sa.Column('probe_id', sa.Integer(), nullable=False),
    sa.Column('parent_id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['parent_id'], ['probes.id'], name=op.f('fk_probe_dependencies_parent_id_probes'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['probe_id'], ['probes.id'], name=op.f('fk_probe_dependencies_probe_id_probes'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_probe_dependencies_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('probe_id', 'parent_id', name=op.f('pk_probe_dependencies'))
    )
    with op.batch_alter_table('probe_dependencies', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_probe_dependencies_parent_id'), ['parent_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_probe_dependencies_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('silences',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('comment', sa.Text(), nullable=False),
    sa.Column('probe_ids', sa.JSON(), nullable=False),
    sa.Column('group_ids', sa.JSON(), nullable=False),
    sa.Column('rule_ids', sa.JSON(), nullable=False),
    sa.Column('starts_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ends_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.Integer(), nullable=True),
    sa.Column('created_by_name', sa.String(length=100), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['created_by'], ['users.id'], name=op.f('fk_silences_created_by_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_silences_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_silences'))
    )
    with op.batch_alter_table('silences', schema=None) as batch_op:
        batch_op.create_index('ix_silences_tenant_id_ends_at', ['tenant_id', 'ends_at'], unique=False)

    op.create_table('alert_groups',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('channel_id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('label', sa.String(length=200), nullable=False),
    sa.Column('flush_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_flushed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('run_from_item_id', sa.BigInteger(), nullable=True),
    sa.Column('interval_seconds', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['channel_id'], ['notification_channels.id'], name=op.f('fk_alert_groups_channel_id_notification_channels'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_alert_groups_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alert_groups')),
    sa.UniqueConstraint('channel_id', 'key', name=op.f('uq_alert_groups_channel_id'))
    )
    with op.batch_alter_table('alert_groups', schema=None) as batch_op:
        batch_op.create_index('ix_alert_groups_flush_at', ['flush_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_alert_groups_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('alert_group_items',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('group_id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('alert_id', sa.Integer(), nullable=False),
    sa.Column('event', sa.String(length=16), nullable=False),
    sa.Column('context', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('notification_id', sa.String(length=36), nullable=True),
    sa.ForeignKeyConstraint(['alert_id'], ['alerts.id'], name=op.f('fk_alert_group_items_alert_id_alerts'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['group_id'], ['alert_groups.id'], name=op.f('fk_alert_group_items_group_id_alert_groups'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_alert_group_items_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alert_group_items'))
    )
    with op.batch_alter_table('alert_group_items', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_alert_group_items_alert_id'), ['alert_id'], unique=False)
        batch_op.create_index('ix_alert_group_items_group_id_notification_id', ['group_id', 'notification_id'],
                              unique=False)

    with op.batch_alter_table('alert_rules', schema=None) as batch_op:
        for name, type_, default in RULE_COLUMNS:
            batch_op.add_column(sa.Column(name, type_, server_default=default, nullable=False))
        batch_op.add_column(sa.Column('escalation', sa.JSON(), nullable=True))
    op.execute("UPDATE alert_rules SET escalation = '[]'")
    with op.batch_alter_table('alert_rules', schema=None) as batch_op:
        batch_op.alter_column('escalation', existing_type=sa.JSON(), nullable=False)

    with op.batch_alter_table('alert_states', schema=None) as batch_op:
        batch_op.add_column(sa.Column('firing', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column('flapping', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column('changes', sa.JSON(), nullable=True))
    op.execute("UPDATE alert_states SET changes = '[]', "
               "firing = CASE WHEN alert_id IS NOT NULL OR held THEN TRUE ELSE FALSE END")
    with op.batch_alter_table('alert_states', schema=None) as batch_op:
        batch_op.alter_column('changes', existing_type=sa.JSON(), nullable=False)

    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('suppressed_by', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('flapping', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column('notified', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column('silenced', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column('escalation_step', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('next_escalation_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_alerts_suppressed_by_probes'), 'probes', ['suppressed_by'], ['id'],
                                    ondelete='SET NULL')
        batch_op.create_index('ix_alerts_next_escalation_at', ['next_escalation_at'], unique=False,
                              postgresql_where=sa.text("status = 'firing'"), sqlite_where=sa.text("status = 'firing'"))
        batch_op.create_index('ix_alerts_suppressed_by', ['suppressed_by'], unique=False,
                              postgresql_where=sa.text("status = 'suppressed'"),
                              sqlite_where=sa.text("status = 'suppressed'"))
    # Alerts that were already open were told when they fired.
    op.execute("UPDATE alerts SET notified = TRUE")


def downgrade():
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.drop_index('ix_alerts_suppressed_by')
        batch_op.drop_index('ix_alerts_next_escalation_at')
        batch_op.drop_constraint(batch_op.f('fk_alerts_suppressed_by_probes'), type_='foreignkey')
        for name in ('next_escalation_at', 'escalation_step', 'silenced', 'notified', 'flapping', 'suppressed_by'):
            batch_op.drop_column(name)
    # A suppressed alert was never told: the schema before knows no such status.
    op.execute("UPDATE alerts SET status = 'firing' WHERE status = 'suppressed'")
    with op.batch_alter_table('alert_states', schema=None) as batch_op:
        for name in ('changes', 'flapping', 'firing'):
            batch_op.drop_column(name)
    with op.batch_alter_table('alert_rules', schema=None) as batch_op:
        batch_op.drop_column('escalation')
        for name, _, _ in reversed(RULE_COLUMNS):
            batch_op.drop_column(name)
    with op.batch_alter_table('alert_group_items', schema=None) as batch_op:
        batch_op.drop_index('ix_alert_group_items_group_id_notification_id')
        batch_op.drop_index(batch_op.f('ix_alert_group_items_alert_id'))
    op.drop_table('alert_group_items')
    with op.batch_alter_table('alert_groups', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_alert_groups_tenant_id'))
        batch_op.drop_index('ix_alert_groups_flush_at')
    op.drop_table('alert_groups')
    with op.batch_alter_table('silences', schema=None) as batch_op:
        batch_op.drop_index('ix_silences_tenant_id_ends_at')
    op.drop_table('silences')
    with op.batch_alter_table('probe_dependencies', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_probe_dependencies_tenant_id'))
        batch_op.drop_index(batch_op.f('ix_probe_dependencies_parent_id'))
    op.drop_table('probe_dependencies')
