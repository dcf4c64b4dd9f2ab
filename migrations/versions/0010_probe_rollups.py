"""probe rollups

Revision ID: 0010
Revises: 0009
Create Date: 2027-01-10

Per-probe history at minute, hour and day level (``probe_rollups``, each row with its
response-time sketch in ``rt_sketch``), maintained as results are stored.
Results stored before this revision are rolled up by ``admin-mit rollups rebuild``.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

SUMS = ('rt_sum', 'dns_sum', 'connect_sum', 'tls_sum', 'processing_sum', 'transfer_sum')
COUNTS = ('count', 'failures', 'maintenance_count', 'maintenance_failures', 'timed_count', 'dns_count',
          'connect_count', 'tls_count', 'processing_count', 'transfer_count')


def upgrade():
    op.create_table('probe_rollups',
    sa.Column('probe_id', sa.Integer(), nullable=False),
    sa.Column('level', sa.Integer(), nullable=False),
    sa.Column('bucket', sa.BigInteger(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    *(sa.Column(name, sa.Integer(), nullable=False) for name in COUNTS[:5]),
    sa.Column('rt_sum', sa.Float(), nullable=False),
    sa.Column('rt_min', sa.Float(), nullable=True),
    sa.Column('rt_max', sa.Float(), nullable=True),
    *(column for phase in ('dns', 'connect', 'tls', 'processing', 'transfer')
      for column in (sa.Column(f'{phase}_sum', sa.Float(), nullable=False),
                     sa.Column(f'{phase}_count', sa.Integer(), nullable=False))),
    sa.Column('rt_sketch', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['probe_id'], ['probes.id'], name=op.f('fk_probe_rollups_probe_id_probes'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_probe_rollups_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('probe_id', 'level', 'bucket', name=op.f('pk_probe_rollups'))
    )
    with op.batch_alter_table('probe_rollups', schema=None) as batch_op:
        batch_op.create_index('ix_probe_rollups_tenant_id_level_bucket', ['tenant_id', 'level', 'bucket'], unique=False)
        batch_op.create_index('ix_probe_rollups_level_bucket', ['level', 'bucket'], unique=False)


def downgrade():
    with op.batch_alter_table('probe_rollups', schema=None) as batch_op:
        batch_op.drop_index('ix_probe_rollups_level_bucket')
        batch_op.drop_index('ix_probe_rollups_tenant_id_level_bucket')
    op.drop_table('probe_rollups')
