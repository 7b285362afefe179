"""system_events: keep only the indexes the dashboards query (session+time, time)

The journal inserts every event; each index costs insert throughput. No dashboard query
filters on event_type or severity without a session, so those two indexes go.

Revision ID: 0003_lean_event_indexes
Revises: 0002_run_records
Create Date: 2026-11-28 01:30:00

"""
from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0003_lean_event_indexes'
down_revision: str | Sequence[str] | None = '0002_run_records'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index('ix_system_events_severity_timestamp', table_name='system_events')
    op.drop_index('ix_system_events_event_type_timestamp', table_name='system_events')


def downgrade() -> None:
    op.create_index('ix_system_events_event_type_timestamp', 'system_events', ['event_type', 'timestamp'])
    op.create_index('ix_system_events_severity_timestamp', 'system_events', ['severity', 'timestamp'])
