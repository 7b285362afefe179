"""run_heartbeats: the trading loop's heartbeat, one row per paper/live run

The monitoring dashboard (another process) needs the loop's pulse to show a killed or hung
session as not running within 3 × its check interval (issue 15); see
atb/db/models/heartbeats.py.

Revision ID: 0006_run_heartbeats
Revises: 0005_run_series
Create Date: 2026-11-29 12:10:00

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0006_run_heartbeats'
down_revision: str | Sequence[str] | None = '0005_run_series'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'run_heartbeats',
        sa.Column('run_id', sa.String(length=64), nullable=False),
        sa.Column('pulse_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('beat_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('interval_seconds', sa.Float(), nullable=True),
        sa.Column('extra_wait_seconds', sa.Float(), nullable=False),
        sa.Column('iterations', sa.Integer(), nullable=False),
        sa.Column('failures', sa.Integer(), nullable=False),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('stopped_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('stop_reason', sa.String(length=32), nullable=True),
        sa.Column('pid', sa.Integer(), nullable=True),
        sa.Column('written_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_run_heartbeats_run_id_runs'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('run_id', name=op.f('pk_run_heartbeats')),
    )


def downgrade() -> None:
    op.drop_table('run_heartbeats')
