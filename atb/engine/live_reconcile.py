"""Start-of-session housekeeping for records a dead session left behind.

- where the session's write-ahead record log lives (`record_log_dir`);
- `settle_orphans`: a session killed (kill -9, OOM, power loss) between creating an order
  and settling it leaves an order row `pending`. A paper order cannot fill once its
  session is gone: it is cancelled with a reason. A live order may have reached the
  exchange: it is handed back to the caller (with the in-flight list of the dead session's
  state) to be looked up by its client order id. No order of the resumed run stays pending.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select

from atb.db.models.run_records import OrderRecord
from atb.db.url import default_spill_path
from atb.engine.live_path import LiveDecisionPath, client_order_id
from atb.engine.live_records import LiveRecorder, PreviousSession
from atb.logging.events import log_engine_event, log_order_event
from atb.runtime.context import RunContext


def record_log_dir(configured: str | None, db: Any, ctx: RunContext) -> Path:
    """`live.record_log_dir`, else beside the journal's spill file for this database."""
    if configured:
        return Path(configured).expanduser()
    spill = default_spill_path(db.url, ctx.output_dir)
    return spill.with_name(spill.name.removesuffix(".jsonl") + ".records")


def record_error(name: str, error: str) -> None:
    """A record the session could not hold (disk refused the log line): loud, not fatal."""
    log_engine_event(name, level="ERROR", error=error)


def pending_orders(recorder: LiveRecorder, run_id: str) -> list[Any]:
    with recorder.db.session() as s:
        return list(
            s.execute(
                select(
                    OrderRecord.order_no,
                    OrderRecord.side,
                    OrderRecord.kind,
                    OrderRecord.reason,
                    OrderRecord.size,
                ).where(OrderRecord.run_id == run_id, OrderRecord.status == "pending")
            ).all()
        )


def settle_orphans(
    recorder: LiveRecorder, previous: PreviousSession, path: Any, run_id: str
) -> list[dict[str, Any]]:
    """Cancel the dead paper session's pending orders; return the live ones to look up."""
    pending = pending_orders(recorder, previous.run_id)
    if not isinstance(path, LiveDecisionPath):
        for row in pending:
            note = (
                f"cancelled at resume by run {run_id}: the session ended (no clean stop) "
                "before the order's next bar"
            )
            recorder.settle_previous_order(previous.run_id, int(row.order_no), "cancelled", note)
            log_order_event(
                "order_reconciled",
                level="WARNING",
                run_id=previous.run_id,
                order_no=int(row.order_no),
                outcome="cancelled",
                reason=note,
            )
        return []
    items = list(previous.state.inflight)
    known = {int(item["order_no"]) for item in items}
    for row in pending:
        if int(row.order_no) in known:
            continue
        # Recorded pending but missing from the state's in-flight list: still look it up.
        items.append(
            {
                "order_no": int(row.order_no),
                "client_order_id": client_order_id(previous.run_id, int(row.order_no)),
                "side": 1 if row.side == "buy" else -1,
                "kind": row.kind,
                "reason": row.reason,
                "size": row.size,
            }
        )
    return items
