"""credential header values of probes move out of spec into the encrypted probes.secrets

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03

The values of an HTTP or WebSocket probe's secret headers (names that look like
credentials, or listed in ``spec.secret_headers``) were stored in clear in
``probes.spec``. They now live in ``probes.secrets``, a Fernet token of
``{"headers": {name: value}}`` under the newest key of ``secrets.keys``
(``app.core.secret_box``); ``spec`` keeps the header names with the mask as their
value. The downgrade puts the values back into ``spec`` and drops the column, so it
needs a key that opens every stored token.
"""
import json
import re

from alembic import op
import sqlalchemy as sa

from app.core import secret_box


# revision identifiers, used by Alembic.
revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

_WITH_HEADERS = ('http', 'https', 'websocket')
# What a credential reads as, and which header names hold one, as of this revision.
_MASK = '********'
_SECRET_NAME = re.compile(r'pass|pwd|secret|token|key|auth|sig|session|credential|cookie', re.IGNORECASE)


def _is_secret(name: str, spec: dict) -> bool:
    listed = {str(item).lower() for item in spec.get('secret_headers') or []}
    return bool(_SECRET_NAME.search(name)) or name.lower() in listed


def _probes() -> sa.Table:
    return sa.table('probes', sa.column('id', sa.Integer()), sa.column('protocol', sa.String()),
                    sa.column('spec', sa.JSON()), sa.column('secrets', sa.Text()))


def _rows(connection, probes: sa.Table):
    return connection.execute(sa.select(probes).where(probes.c.protocol.in_(_WITH_HEADERS))
                              .order_by(probes.c.id)).fetchall()


def upgrade():
    with op.batch_alter_table('probes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('secrets', sa.Text(), nullable=True))
    probes = _probes()
    connection = op.get_bind()
    for row in _rows(connection, probes):
        spec = dict(row.spec or {})
        headers = spec.get('headers') if isinstance(spec.get('headers'), dict) else {}
        secret = {name: value for name, value in headers.items() if _is_secret(name, spec)}
        if not secret:
            continue
        spec['headers'] = {name: _MASK if name in secret else value for name, value in headers.items()}
        token = secret_box.encrypt(json.dumps({'headers': secret}, separators=(',', ':'), ensure_ascii=False))
        connection.execute(probes.update().where(probes.c.id == row.id).values(spec=spec, secrets=token))


def downgrade():
    probes = _probes()
    connection = op.get_bind()
    for row in _rows(connection, probes):
        if row.secrets is None:
            continue
        secret = json.loads(secret_box.decrypt(row.secrets)).get('headers') or {}
        spec = dict(row.spec or {})
        headers = dict(spec.get('headers') or {})
        spec['headers'] = {**headers, **secret}
        connection.execute(probes.update().where(probes.c.id == row.id).values(spec=spec))
    with op.batch_alter_table('probes', schema=None) as batch_op:
        batch_op.drop_column('secrets')
