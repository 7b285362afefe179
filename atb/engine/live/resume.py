"""Start-of-session housekeeping: take over the previous session, settle what dead
sessions left behind.

- `live.resume=true` (the default): continue the newest earlier run with this session key
  (recorder.py states the rule): its cash, balance, open position, peak equity, last bar.
- Whatever `live.resume` says, no order of an earlier run with this key stays `pending`
  (a session killed between creating an order and settling it leaves one). Each is handed
  to the execution: a simulated order cannot fill once its session is gone and is
  cancelled with a reason; a live one may have reached the exchange and is looked up by
  its client order id. A fill is booked into this session only when it took over that
  session's books (the resumed run) and they do not already hold it.
- A resumed session whose strategy settings changed says so (`strategy_change`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from atb.db.url import default_record_log_dir
from atb.engine.execution import Execution, Orphan
from atb.engine.live.account import PreviousSession, SessionAccount, iso
from atb.engine.live.recorder import LiveRecorder
from atb.engine.records import clean_json
from atb.logging.events import log_engine_event, log_order_event
from atb.runtime.context import RunContext


def record_log_dir(configured: str | None, db: Any, ctx: RunContext) -> Path:
    """`live.record_log_dir`, else beside the journal's spill file for this database."""
    if configured:
        return Path(configured).expanduser()
    return default_record_log_dir(db.url, ctx.output_dir)


def record_error(name: str, error: str) -> None:
    """A record the session could not hold (disk refused the log line): loud, not fatal."""
    log_engine_event(name, level="ERROR", error=error)


def bars_since(tf_ms: int) -> Callable[[datetime], int]:
    """How many bars before now `when` was (negative), for a resumed position's entry bar."""

    def count(when: datetime) -> int:
        if not tf_ms:
            return 0
        return -int((datetime.now(UTC) - when).total_seconds() * 1000 // tf_ms)

    return count


def restore(account: SessionAccount, previous: PreviousSession, tf_ms: int) -> None:
    state = previous.state
    account.restore(state, bars_since(tf_ms))
    p = account.portfolio
    log_engine_event(
        "session_resumed",
        previous_run=previous.run_id,
        previous_status=previous.status,
        cash=p.cash,
        balance=p.balance,
        open_position=p.signed_qty or None,
        last_bar=iso(account.last_bar),
        inflight=len(state.inflight),
    )


def find_orphans(
    recorder: LiveRecorder, runs: list[tuple[str, str, Any]], previous: PreviousSession | None
) -> list[Orphan]:
    """The orders of these runs that never reached a final status, with what the runs'
    state snapshots remember of them (client id, stop/take levels)."""
    known: dict[tuple[str, int], dict[str, Any]] = {}
    for run_id, _, metrics in runs:
        state = (metrics or {}).get("state") if isinstance(metrics, dict) else None
        for item in (state or {}).get("inflight") or []:
            known[(run_id, int(item["order_no"]))] = item
    found: dict[tuple[str, int], dict[str, Any]] = {}
    if previous is not None:
        # The resumed run's in-flight list is looked up even if its row never said pending.
        for item in previous.state.inflight:
            found[(previous.run_id, int(item["order_no"]))] = item
    for row in recorder.pending_orders([run_id for run_id, _, _ in runs]):
        key = (row.run_id, int(row.order_no))
        found.setdefault(
            key,
            known.get(key)
            or {
                "order_no": int(row.order_no),
                "side": 1 if row.side == "buy" else -1,
                "kind": row.kind,
                "reason": row.reason,
                "size": row.size,
            },
        )
    return [
        Orphan(
            run_id=run_id,
            order_no=order_no,
            client_order_id=item.get("client_order_id"),
            side=int(item["side"]),
            kind=str(item["kind"]),
            reason=str(item["reason"]),
            size=float(item.get("size") or 0.0),
            stop_loss=item.get("stop_loss"),
            take_profit=item.get("take_profit"),
        )
        for (run_id, order_no), item in found.items()
    ]


def settle_orphans(
    recorder: LiveRecorder,
    execution: Execution,
    orphans: list[Orphan],
    *,
    books_of: str | None,
    run_id: str,
) -> None:
    """Settle each orphan through the execution; `books_of`: the run whose books this
    session took over (its fills may be booked here)."""
    for orphan in orphans:
        s = execution.settle_orphan(orphan, book=orphan.run_id == books_of, run_id=run_id)
        recorder.settle_previous_order(orphan.run_id, orphan.order_no, s.status, s.note, **s.values)
        log_order_event(
            "order_reconciled",
            level="WARNING" if s.status == "cancelled" else "INFO",
            run_id=orphan.run_id,
            order_no=orphan.order_no,
            client_order_id=s.client_order_id,
            outcome=s.outcome,
            booked=s.booked,
            side="buy" if orphan.side > 0 else "sell",
            qty=s.values.get("qty"),
            price=s.values.get("price"),
            reason=s.note,
        )


def compare_parameters(
    recorder: LiveRecorder, previous: PreviousSession, parameters: dict[str, Any]
) -> None:
    """A resumed session whose strategy settings changed says so (STRATEGY_CHANGE)."""
    before = recorder.parameters_of(previous.run_id)
    now = clean_json(parameters)
    if before is None or before == now:
        return
    changed = {
        k: {"before": before.get(k), "now": now.get(k)}
        for k in sorted(set(before) | set(now))
        if before.get(k) != now.get(k)
    }
    log_engine_event(
        "strategy_change",
        level="WARNING",
        message=f"resumed session {previous.run_id} with changed strategy parameters: "
        + ", ".join(changed),
        previous_run=previous.run_id,
        changed=changed,
    )
