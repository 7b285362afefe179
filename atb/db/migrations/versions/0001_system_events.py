"""system_events: the event journal's table

Revision ID: 0001_system_events
Revises: 
Create Date: 2026-11-28 00:41:57.344872

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision: str = '0001_system_events'
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('system_events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('event_uuid', sa.String(length=36), nullable=False),
    sa.Column('timestamp', sa.DateTime(timezone=True), nullable=False),
    sa.Column('event_type', sa.String(length=32), nullable=False),
    sa.Column('severity', sa.String(length=16), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=True),
    sa.Column('logger', sa.String(length=128), nullable=True),
    sa.Column('details', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('context', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('component', sa.String(length=64), nullable=True),
    sa.Column('strategy', sa.String(length=64), nullable=True),
    sa.Column('symbol', sa.String(length=32), nullable=True),
    sa.Column('error_code', sa.String(length=64), nullable=True),
    sa.Column('stack_trace', sa.Text(), nullable=True),
    sa.Column('alert_sent', sa.Boolean(), nullable=False),
    sa.Column('alert_method', sa.String(length=32), nullable=True),
    sa.Column('session_id', sa.String(length=64), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_system_events')),
    sa.UniqueConstraint('event_uuid', name=op.f('uq_system_events_event_uuid'))
    )
    op.create_index('ix_system_events_event_type_timestamp', 'system_events', ['event_type', 'timestamp'])
    op.create_index('ix_system_events_session_id_timestamp', 'system_events', ['session_id', 'timestamp'])
    op.create_index('ix_system_events_severity_timestamp', 'system_events', ['severity', 'timestamp'])
    op.create_index('ix_system_events_timestamp', 'system_events', ['timestamp'])



def downgrade() -> None:
    op.drop_index('ix_system_events_timestamp', table_name='system_events')
    op.drop_index('ix_system_events_severity_timestamp', table_name='system_events')
    op.drop_index('ix_system_events_session_id_timestamp', table_name='system_events')
    op.drop_index('ix_system_events_event_type_timestamp', table_name='system_events')

    op.drop_table('system_events')
