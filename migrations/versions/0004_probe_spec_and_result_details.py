"""protocol-specific probe fields move into one spec JSON column; results gain details

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02

Each protocol's own fields (HTTP's method, headers, body, expect, verify_tls,
follow_redirects; the payload and expected reply of tcp, udp and websocket) were
columns shared by every protocol. They now live in ``probes.spec``, a JSON object
holding exactly the fields of the probe's protocol, beside the common columns.
``probe_results.details`` holds what a protocol measures beyond the common columns.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

_HTTP = ('http', 'https')
_MOVED = ('method', 'headers', 'body', 'expect', 'verify_tls', 'follow_redirects')


def _spec_of(row) -> dict:
    """The spec a row's old columns described, holding only its protocol's fields."""
    if row.protocol in _HTTP:
        return {'method': row.method or 'GET', 'headers': row.headers or {}, 'body': row.body,
                'expect': row.expect, 'verify_tls': bool(row.verify_tls),
                'follow_redirects': bool(row.follow_redirects)}
    if row.protocol == 'websocket':
        return {'headers': row.headers or {}, 'body': row.body, 'expect': row.expect,
                'verify_tls': bool(row.verify_tls)}
    return {'body': row.body, 'expect': row.expect}


def _old_columns(row) -> dict:
    spec = row.spec or {}
    return {'method': spec.get('method', 'GET'), 'headers': spec.get('headers', {}), 'body': spec.get('body'),
            'expect': spec.get('expect'), 'verify_tls': spec.get('verify_tls', True),
            'follow_redirects': spec.get('follow_redirects', True)}


def _probes(*columns) -> sa.Table:
    return sa.table('probes', sa.column('id', sa.Integer()), sa.column('protocol', sa.String()), *columns)


def upgrade():
    with op.batch_alter_table('probes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('spec', sa.JSON(), nullable=True))
    old = _probes(sa.column('method', sa.String()), sa.column('headers', sa.JSON()), sa.column('body', sa.Text()),
                  sa.column('expect', sa.Text()), sa.column('verify_tls', sa.Boolean()),
                  sa.column('follow_redirects', sa.Boolean()), sa.column('spec', sa.JSON()))
    connection = op.get_bind()
    for row in connection.execute(sa.select(old)).fetchall():
        connection.execute(old.update().where(old.c.id == row.id).values(spec=_spec_of(row)))
    with op.batch_alter_table('probes', schema=None) as batch_op:
        batch_op.alter_column('spec', existing_type=sa.JSON(), nullable=False)
        for name in _MOVED:
            batch_op.drop_column(name)
    with op.batch_alter_table('probe_results', schema=None) as batch_op:
        batch_op.add_column(sa.Column('details', sa.JSON(), nullable=True))


def downgrade():
    with op.batch_alter_table('probe_results', schema=None) as batch_op:
        batch_op.drop_column('details')
    with op.batch_alter_table('probes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('method', sa.String(length=10), nullable=True))
        batch_op.add_column(sa.Column('headers', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('body', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('expect', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('verify_tls', sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column('follow_redirects', sa.Boolean(), nullable=True))
    new = _probes(sa.column('spec', sa.JSON()), sa.column('method', sa.String()), sa.column('headers', sa.JSON()),
                  sa.column('body', sa.Text()), sa.column('expect', sa.Text()), sa.column('verify_tls', sa.Boolean()),
                  sa.column('follow_redirects', sa.Boolean()))
    connection = op.get_bind()
    for row in connection.execute(sa.select(new)).fetchall():
        connection.execute(new.update().where(new.c.id == row.id).values(**_old_columns(row)))
    with op.batch_alter_table('probes', schema=None) as batch_op:
        for name in ('method', 'headers', 'verify_tls', 'follow_redirects'):
            batch_op.alter_column(name, nullable=False)
        batch_op.drop_column('spec')
