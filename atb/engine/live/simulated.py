"""Paper trading's execution: the backtest's simulated fills, under `paper_…` order ids.

Orders created on a bar's close fill at the next bar's open ± slippage with the fee on
notional, exactly as in a backtest (atb/engine/execution.py). What paper adds is naming
(the id its records and events carry), order metrics, and a rejected order being a
WARNING: in a running session someone may be watching.
"""

from __future__ import annotations

from typing import Any

from atb.engine.execution import SimulatedExecution
from atb.engine.orders import Order
from atb.health import metrics as _metrics


def paper_order_id(run_id: str, order_no: int) -> str:
    return f"paper_{run_id[:12]}_{order_no}"


class PaperExecution(SimulatedExecution):
    def __init__(self, run_id: str) -> None:
        self.run_id = run_id

    def accept(self, order: Order) -> None:
        order.exchange_order_id = paper_order_id(self.run_id, order.id)

    def order_ids(self, order: Order) -> dict[str, Any]:
        return {"order_id": order.exchange_order_id, "order_no": order.id}

    def order_level(self, order: Order) -> str:
        return "WARNING" if order.status == "rejected" else "INFO"

    def settled(self, order: Order) -> None:
        _metrics.record_order(order.status)
