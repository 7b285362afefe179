"""run_series: a backtest's per-bar columns as compressed blobs (atb/db/series.py)

Backtests stop writing a row per bar to account_history/predictions, and a row per
signal to decisions (a 1M-bar run was 217 MB, and its record step took longer than the
backtest); those series go here, one row per column. Live/paper runs keep appending rows. Existing rows are left as they are:
the dashboards read either form.

Revision ID: 0005_run_series
Revises: 0004_order_errors_exposure
Create Date: 2026-11-29 12:10:00.000000

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0005_run_series'
down_revision: str | Sequence[str] | None = '0004_order_errors_exposure'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('run_series',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('run_id', sa.String(length=64), nullable=False),
    sa.Column('mode', sa.String(length=16), nullable=False),
    sa.Column('series', sa.String(length=32), nullable=False),
    sa.Column('column', sa.String(length=32), nullable=False),
    sa.Column('length', sa.Integer(), nullable=False),
    sa.Column('codec', sa.String(length=32), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_run_series_run_id_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_run_series'))
    )
    with op.batch_alter_table('run_series', schema=None) as batch_op:
        batch_op.create_index('ix_run_series_run_id_series_column', ['run_id', 'series', 'column'], unique=True)


def downgrade() -> None:
    with op.batch_alter_table('run_series', schema=None) as batch_op:
        batch_op.drop_index('ix_run_series_run_id_series_column')

    op.drop_table('run_series')
