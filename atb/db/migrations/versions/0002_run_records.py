"""run records (runs, trades, orders, positions, account_history, decisions, predictions) and sweeps

Revision ID: 0002_run_records
Revises: 0001_system_events
Create Date: 2026-11-28 00:56:01.025290

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision: str = '0002_run_records'
down_revision: str | Sequence[str] | None = '0001_system_events'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _child_table(name: str, index: str, *columns: sa.Column) -> None:
    """A table of one run's rows: id, run_id (cascading with the run) and mode first, then
    `columns`, and an index on (run_id, `index`)."""
    op.create_table(
        name,
        sa.Column(
            'id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True,
            nullable=False,
        ),
        sa.Column('run_id', sa.String(length=64), nullable=False),
        sa.Column('mode', sa.String(length=16), nullable=False),
        *columns,
        sa.ForeignKeyConstraint(
            ['run_id'], ['runs.id'], name=op.f(f'fk_{name}_run_id_runs'), ondelete='CASCADE'
        ),
        sa.PrimaryKeyConstraint('id', name=op.f(f'pk_{name}')),
    )
    with op.batch_alter_table(name, schema=None) as batch_op:
        batch_op.create_index(f'ix_{name}_run_id_{index}', ['run_id', index], unique=False)


def _drop_child_table(name: str, index: str) -> None:
    with op.batch_alter_table(name, schema=None) as batch_op:
        batch_op.drop_index(f'ix_{name}_run_id_{index}')

    op.drop_table(name)


def upgrade() -> None:
    op.create_table('runs',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('mode', sa.String(length=16), nullable=False),
    sa.Column('strategy', sa.String(length=64), nullable=True),
    sa.Column('symbol', sa.String(length=32), nullable=False),
    sa.Column('timeframe', sa.String(length=8), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('config', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('overrides', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('parameters', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('data_fingerprint', sa.String(length=64), nullable=True),
    sa.Column('data_source', sa.Text(), nullable=True),
    sa.Column('data_start', sa.DateTime(timezone=True), nullable=True),
    sa.Column('data_end', sa.DateTime(timezone=True), nullable=True),
    sa.Column('bars', sa.Integer(), nullable=True),
    sa.Column('code_version', sa.String(length=96), nullable=True),
    sa.Column('sweep_id', sa.Text(), nullable=True),
    sa.Column('job_num', sa.Integer(), nullable=True),
    sa.Column('metrics', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('result_hash', sa.String(length=64), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_runs'))
    )
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.create_index('ix_runs_mode_started_at', ['mode', 'started_at'], unique=False)
        batch_op.create_index('ix_runs_started_at', ['started_at'], unique=False)
        batch_op.create_index('ix_runs_strategy', ['strategy'], unique=False)

    op.create_table('sweeps',
    sa.Column('id', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('metric', sa.String(length=64), nullable=False),
    sa.Column('descending', sa.Boolean(), nullable=False),
    sa.Column('jobs', sa.Integer(), nullable=False),
    sa.Column('failed', sa.Integer(), nullable=False),
    sa.Column('ranking', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sweeps'))
    )
    _child_table(
        'account_history',
        'time',
        sa.Column('time', sa.DateTime(timezone=True), nullable=False),
        sa.Column('balance', sa.Float(), nullable=False),
        sa.Column('equity', sa.Float(), nullable=False),
        sa.Column('drawdown', sa.Float(), nullable=False),
        sa.Column('position_qty', sa.Float(), nullable=False),
    )

    _child_table(
        'decisions',
        'time',
        sa.Column('time', sa.DateTime(timezone=True), nullable=False),
        sa.Column('signal', sa.SmallInteger(), nullable=False),
        sa.Column('confidence', sa.Float(), nullable=True),
        sa.Column('action', sa.String(length=24), nullable=False),
        sa.Column('size', sa.Float(), nullable=False),
        sa.Column('reason', sa.Text(), nullable=True),
        sa.Column('price', sa.Float(), nullable=False),
    )

    _child_table(
        'orders',
        'created_at',
        sa.Column('order_no', sa.Integer(), nullable=False),
        sa.Column('symbol', sa.String(length=32), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('side', sa.String(length=8), nullable=False),
        sa.Column('kind', sa.String(length=8), nullable=False),
        sa.Column('order_type', sa.String(length=16), nullable=False),
        sa.Column('reason', sa.String(length=32), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('size', sa.Float(), nullable=True),
        sa.Column('filled_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('qty', sa.Float(), nullable=True),
        sa.Column('price', sa.Float(), nullable=True),
        sa.Column('fee', sa.Float(), nullable=True),
        sa.Column('position_no', sa.Integer(), nullable=True),
        sa.Column('exchange_order_id', sa.String(length=64), nullable=True),
        sa.Column('note', sa.Text(), nullable=True),
    )

    _child_table(
        'positions',
        'entry_time',
        sa.Column('position_no', sa.Integer(), nullable=False),
        sa.Column('symbol', sa.String(length=32), nullable=False),
        sa.Column('side', sa.String(length=8), nullable=False),
        sa.Column('qty', sa.Float(), nullable=False),
        sa.Column('entry_time', sa.DateTime(timezone=True), nullable=False),
        sa.Column('entry_price', sa.Float(), nullable=False),
        sa.Column('stop_loss', sa.Float(), nullable=True),
        sa.Column('take_profit', sa.Float(), nullable=True),
        sa.Column('status', sa.String(length=8), nullable=False),
        sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('exit_price', sa.Float(), nullable=True),
        sa.Column('realized_pnl', sa.Float(), nullable=True),
        sa.Column('last_price', sa.Float(), nullable=True),
        sa.Column('unrealized_pnl', sa.Float(), nullable=True),
    )

    _child_table(
        'predictions',
        'time',
        sa.Column('time', sa.DateTime(timezone=True), nullable=False),
        sa.Column('predicted_price', sa.Float(), nullable=True),
        sa.Column('r', sa.Float(), nullable=True),
        sa.Column('confidence', sa.Float(), nullable=True),
        sa.Column('direction', sa.SmallInteger(), nullable=True),
        sa.Column('model_id', sa.String(length=128), nullable=True),
    )

    _child_table(
        'trades',
        'exit_time',
        sa.Column('trade_no', sa.Integer(), nullable=False),
        sa.Column('position_no', sa.Integer(), nullable=False),
        sa.Column('symbol', sa.String(length=32), nullable=False),
        sa.Column('side', sa.String(length=8), nullable=False),
        sa.Column('qty', sa.Float(), nullable=False),
        sa.Column('entry_time', sa.DateTime(timezone=True), nullable=False),
        sa.Column('entry_price', sa.Float(), nullable=False),
        sa.Column('exit_time', sa.DateTime(timezone=True), nullable=False),
        sa.Column('exit_price', sa.Float(), nullable=False),
        sa.Column('fees', sa.Float(), nullable=False),
        sa.Column('pnl', sa.Float(), nullable=False),
        sa.Column('return_pct', sa.Float(), nullable=False),
        sa.Column('exit_reason', sa.String(length=32), nullable=False),
        sa.Column('bars_held', sa.Integer(), nullable=False),
    )



def downgrade() -> None:
    _drop_child_table('trades', 'exit_time')
    _drop_child_table('predictions', 'time')
    _drop_child_table('positions', 'entry_time')
    _drop_child_table('orders', 'created_at')
    _drop_child_table('decisions', 'time')
    _drop_child_table('account_history', 'time')
    op.drop_table('sweeps')
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_index('ix_runs_strategy')
        batch_op.drop_index('ix_runs_started_at')
        batch_op.drop_index('ix_runs_mode_started_at')

    op.drop_table('runs')
