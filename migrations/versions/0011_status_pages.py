"""status pages

Revision ID: 0011
Revises: 0010
Create Date: 2027-01-12

Public status pages (opt-in, a slug unique across tenants) with the probes and groups
each shows, and their incident notes.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('status_pages',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('slug', sa.String(length=63), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('public', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_status_pages_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_status_pages')),
    sa.UniqueConstraint('slug', name=op.f('uq_status_pages_slug'))
    )
    with op.batch_alter_table('status_pages', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_status_pages_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('status_page_probes',
    sa.Column('page_id', sa.Integer(), nullable=False),
    sa.Column('probe_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['page_id'], ['status_pages.id'], name=op.f('fk_status_page_probes_page_id_status_pages'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['probe_id'], ['probes.id'], name=op.f('fk_status_page_probes_probe_id_probes'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('page_id', 'probe_id', name=op.f('pk_status_page_probes'))
    )
    with op.batch_alter_table('status_page_probes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_status_page_probes_probe_id'), ['probe_id'], unique=False)

    op.create_table('status_page_groups',
    sa.Column('page_id', sa.Integer(), nullable=False),
    sa.Column('group_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['page_id'], ['status_pages.id'], name=op.f('fk_status_page_groups_page_id_status_pages'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['group_id'], ['probe_groups.id'], name=op.f('fk_status_page_groups_group_id_probe_groups'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('page_id', 'group_id', name=op.f('pk_status_page_groups'))
    )
    with op.batch_alter_table('status_page_groups', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_status_page_groups_group_id'), ['group_id'], unique=False)

    op.create_table('status_page_incidents',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('page_id', sa.Integer(), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['page_id'], ['status_pages.id'], name=op.f('fk_status_page_incidents_page_id_status_pages'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_status_page_incidents'))
    )
    with op.batch_alter_table('status_page_incidents', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_status_page_incidents_page_id'), ['page_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_status_page_incidents_created_at'), ['created_at'], unique=False)


def downgrade():
    with op.batch_alter_table('status_page_incidents', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_status_page_incidents_created_at'))
        batch_op.drop_index(batch_op.f('ix_status_page_incidents_page_id'))
    op.drop_table('status_page_incidents')
    with op.batch_alter_table('status_page_groups', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_status_page_groups_group_id'))
    op.drop_table('status_page_groups')
    with op.batch_alter_table('status_page_probes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_status_page_probes_probe_id'))
    op.drop_table('status_page_probes')
    with op.batch_alter_table('status_pages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_status_pages_tenant_id'))
    op.drop_table('status_pages')
