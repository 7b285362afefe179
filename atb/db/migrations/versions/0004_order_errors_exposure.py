"""orders.error_code; account_history open_positions and exposure

The issue asks for orders "with status, reason and error code for rejections" and an
account history with "open positions, exposure over time". Existing account rows get
open_positions from position_qty (atb holds one net position per symbol); their exposure
stays NULL because no price was stored to compute it from.

Revision ID: 0004_order_errors_exposure
Revises: 0003_lean_event_indexes
Create Date: 2026-11-28 01:43:57.101191

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0004_order_errors_exposure'
down_revision: str | Sequence[str] | None = '0003_lean_event_indexes'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD COLUMNs (batch mode on SQLite does not need to copy the table for these).
    with op.batch_alter_table('account_history', schema=None) as batch_op:
        batch_op.add_column(sa.Column('open_positions', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('exposure', sa.Float(), nullable=True))

    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.add_column(sa.Column('error_code', sa.String(length=64), nullable=True))

    op.execute("UPDATE account_history SET open_positions = 1 WHERE position_qty <> 0")


def downgrade() -> None:
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_column('error_code')

    with op.batch_alter_table('account_history', schema=None) as batch_op:
        batch_op.drop_column('exposure')
        batch_op.drop_column('open_positions')
