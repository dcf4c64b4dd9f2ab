"""probe leases (claimed slots in flight) and run losses by reason

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

BigIntPK = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade():
    with op.batch_alter_table('probes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('last_missed_slots', sa.Integer(), server_default='0', nullable=False))

    op.create_table('probe_leases',
    sa.Column('probe_id', sa.Integer(), nullable=False),
    sa.Column('slot_ms', sa.BigInteger(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('lease_ms', sa.Integer(), nullable=False),
    sa.Column('started_ms', sa.BigInteger(), nullable=True),
    sa.Column('expires_ms', sa.BigInteger(), nullable=False),
    sa.Column('stale_ms', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['probe_id'], ['probes.id'], name=op.f('fk_probe_leases_probe_id_probes'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_probe_leases_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('probe_id', 'slot_ms', name=op.f('pk_probe_leases'))
    )
    with op.batch_alter_table('probe_leases', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_probe_leases_expires_ms'), ['expires_ms'], unique=False)
        batch_op.create_index(batch_op.f('ix_probe_leases_stale_ms'), ['stale_ms'], unique=False)

    op.create_table('probe_run_losses',
    sa.Column('id', BigIntPK, autoincrement=True, nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('probe_id', sa.Integer(), nullable=False),
    sa.Column('reason', sa.String(length=16), nullable=False),
    sa.Column('slot_ms', sa.BigInteger(), nullable=False),
    sa.Column('slots', sa.Integer(), nullable=False),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['probe_id'], ['probes.id'], name=op.f('fk_probe_run_losses_probe_id_probes'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_probe_run_losses_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_probe_run_losses'))
    )
    with op.batch_alter_table('probe_run_losses', schema=None) as batch_op:
        batch_op.create_index('ix_probe_run_losses_probe_id_slot_ms', ['probe_id', 'slot_ms'], unique=False)
        batch_op.create_index('ix_probe_run_losses_tenant_id_recorded_at', ['tenant_id', 'recorded_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_probe_run_losses_recorded_at'), ['recorded_at'], unique=False)


def downgrade():
    with op.batch_alter_table('probe_run_losses', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_probe_run_losses_recorded_at'))
        batch_op.drop_index('ix_probe_run_losses_tenant_id_recorded_at')
        batch_op.drop_index('ix_probe_run_losses_probe_id_slot_ms')
    op.drop_table('probe_run_losses')
    with op.batch_alter_table('probe_leases', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_probe_leases_stale_ms'))
        batch_op.drop_index(batch_op.f('ix_probe_leases_expires_ms'))
    op.drop_table('probe_leases')
    with op.batch_alter_table('probes', schema=None) as batch_op:
        batch_op.drop_column('last_missed_slots')
