"""Full paper and live sessions: `python -m atb mode=paper|live ...` against FakeBinance."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from atb_testkit import FakeBinance
from live_helpers import (
    QUICK,
    SLOW,
    SMA,
    Advancer,
    Session,
    fake_args,
    fake_env,
    first_buy_bar,
    zigzag_candles,
)

pytestmark = pytest.mark.e2e

LIVE = ["mode=live", "live.i_understand_the_risks=true"]


def test_paper_session_fills_simulated_orders_and_never_calls_order_endpoints(
    session: Session, fake: FakeBinance
) -> None:
    with Advancer(fake):
        proc = session.run("mode=paper", *SMA, *QUICK, *fake_args(fake), "live.max_iterations=30")
    assert proc.returncode == 0, proc.stderr[-3000:]
    # Paper: market data only. Not a single order, account or trade endpoint was called.
    paths = {r.path for r in fake.request_log}
    assert paths <= {"/api/v3/exchangeInfo", "/api/v3/klines"}, paths

    ((run_id, mode, status),) = session.query("select id, mode, status from runs")
    assert (mode, status) == ("paper", "finished")
    orders = session.query("select status, exchange_order_id, mode, price from orders")
    assert orders and all(o[0] == "filled" for o in orders)
    assert all(o[1].startswith("paper_") and o[2] == "paper" for o in orders)
    assert session.query("select count(*) from trades where mode='paper'")[0][0] >= 1
    assert session.query("select count(*) from account_history where run_id=?", run_id)[0][0] == 30
    account = session.query(
        "select position_qty, open_positions, exposure, equity from account_history"
    )
    assert all(e is not None and n == (q != 0) for q, n, e, _ in account)
    assert any(n == 1 and 0.5 < e <= 1.01 for _, n, e, _ in account), account
    assert session.query("select count(*) from decisions where run_id=?", run_id)[0][0] >= 2
    assert session.query("select count(*) from positions where run_id=?", run_id)[0][0] >= 1
    names = {r[0] for r in session.query("select name from system_events")}
    assert {"engine_start", "engine_stop", "order_filled", "open_position"} <= names

    # The fill model is the backtest's: next bar's open, 0.05 % adverse, 0.1 % fee.
    opens = {c.timestamp: c.open for c in fake.candles}
    rows = session.query("select side, filled_at, price, qty, fee from orders")
    for side, filled_at, price, qty, fee in rows:
        ts = int(pd.Timestamp(filled_at, tz="UTC").value // 1_000_000)
        assert price == pytest.approx(opens[ts] * (1.0005 if side == "buy" else 0.9995), rel=1e-12)
        assert fee == pytest.approx(qty * price * 0.001, rel=1e-9)


def test_live_session_places_real_orders_and_records_a_rejection(
    session: Session, fake: FakeBinance
) -> None:
    fake.faults.reject_orders(times=1)  # the first order: insufficient balance (-2010)
    with Advancer(fake):
        proc = session.run(
            *LIVE, *SMA, *QUICK, *fake_args(fake), "live.max_iterations=40", env=fake_env(fake)
        )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = session.query(
        "select status, side, qty, price, exchange_order_id, note, mode "
        "from orders order by order_no"
    )
    assert rows[0][0] == "rejected"
    assert "-2010" in rows[0][5] and "insufficient balance" in rows[0][5]
    codes = session.query("select status, error_code from orders order by order_no")
    assert codes[0] == ("rejected", "-2010")
    assert all(code is None for status, code in codes if status == "filled")
    filled = [r for r in rows if r[0] == "filled"]
    assert len(filled) == len(fake.orders) >= 2
    by_id = {str(o.order_id): o for o in fake.orders}
    for _, side, _qty, price, ex_id, _, mode in filled:
        order = by_id[ex_id]
        assert mode == "live"
        assert order.side.lower() == side
        assert price == pytest.approx(float(order.cumulative_quote_qty / order.executed_qty))
    rejected = session.events("order_rejected")
    assert rejected and rejected[0][0] == "WARNING"
    details = json.loads(rejected[0][2])
    assert details["code"] == "-2010" and "insufficient" in details["reason"]
    # The books match the exchange: our cash is the exchange's USDT (to the cent).
    ((metrics,),) = session.query("select metrics from runs")
    state = json.loads(metrics)["state"]
    position_btc = (state["position"] or {}).get("qty", 0.0)
    assert float(fake.balances()["BTC"].free) == pytest.approx(position_btc, abs=1e-4)
    assert float(fake.balances()["USDT"].free) == pytest.approx(state["cash"], abs=0.5)


def test_restart_mid_position_resumes_and_places_no_duplicate_order(session: Session) -> None:
    candles = zigzag_candles()
    buy = first_buy_bar(candles, after=SLOW + 20)
    # Freeze the feed on the BUY bar: every session sees that same signal as the newest bar.
    with FakeBinance(
        candles=candles, warmup=buy + 1, balances={"USDT": 10_000.0, "BTC": 0.0}
    ) as fake:
        fake.faults.freeze_candles()
        args = [*LIVE, *SMA, *QUICK, *fake_args(fake), "live.max_iterations=3"]
        first = session.run(*args, env=fake_env(fake))
        assert first.returncode == 0, first.stderr[-3000:]
        assert len(fake.orders) == 1
        held = float(fake.balances()["BTC"].free)
        assert held > 0

        second = session.run(*args, env=fake_env(fake))
        assert second.returncode == 0, second.stderr[-3000:]
        assert len(fake.orders) == 1  # resumed the position: no second BUY
        runs = session.query("select id, status, metrics from runs order by started_at")
        assert len(runs) == 2
        metrics = json.loads(runs[1][2])
        assert metrics["resumed_from"] == runs[0][0]
        assert metrics["state"]["position"]["qty"] == pytest.approx(held)
        assert session.query("select status from positions where run_id=?", runs[0][0]) == [
            ("resumed",)
        ]
        assert session.query("select status from positions where run_id=?", runs[1][0]) == [
            ("open",)
        ]
        assert session.events("session_resumed")

        # Control: another session name does not resume, so it acts on the signal again.
        third = session.run(*args, "live.session=other", env=fake_env(fake))
        assert third.returncode == 0, third.stderr[-3000:]
        assert len(fake.orders) == 2


def test_paper_restart_carries_cash_and_position_over(session: Session, fake: FakeBinance) -> None:
    with Advancer(fake):
        first = session.run("mode=paper", *SMA, *QUICK, *fake_args(fake), "live.max_iterations=12")
        assert first.returncode == 0, first.stderr[-3000:]
        second = session.run("mode=paper", *SMA, *QUICK, *fake_args(fake), "live.max_iterations=4")
        assert second.returncode == 0, second.stderr[-3000:]
    (m1,), (m2,) = session.query("select metrics from runs order by started_at")
    s1, s2 = json.loads(m1), json.loads(m2)
    assert s2["resumed_from"] and s2["initial_balance"] == s1["initial_balance"]
    bars1 = session.query(
        "select max(time) from account_history where run_id = "
        "(select id from runs order by started_at limit 1)"
    )[0][0]
    bars2 = session.query(
        "select min(time) from account_history where run_id = "
        "(select id from runs order by started_at desc limit 1)"
    )[0][0]
    assert bars2 > bars1  # the second session never re-acts on a bar the first processed


def test_stale_by_age_emits_stale_data_and_does_not_trade(
    session: Session, fake: FakeBinance
) -> None:
    quick = [a for a in QUICK if not a.startswith("live.stale_after")]
    with Advancer(fake):
        proc = session.run("mode=paper", *SMA, *quick, *fake_args(fake), "live.max_iterations=8")
    assert proc.returncode == 0, proc.stderr[-3000:]
    stale = session.events("stale_data")
    assert len(stale) == 1 and stale[0][0] == "WARNING"  # once per stale spell, not per poll
    assert "max 7200 s" in json.loads(stale[0][2])["reason"]
    assert session.query("select count(*) from orders")[0][0] == 0
    assert session.query("select count(*) from decisions")[0][0] == 0
    assert session.query("select count(*) from account_history")[0][0] == 0


def test_frozen_candles_become_stale_after_n_polls(session: Session, fake: FakeBinance) -> None:
    fake.faults.freeze_candles()
    quick = [a for a in QUICK if not a.startswith("live.stale_polls")]
    proc = session.run(
        "mode=paper", *SMA, *quick, *fake_args(fake), "live.stale_polls=3", "live.max_iterations=8"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    stale = session.events("stale_data")
    assert len(stale) == 1
    assert "same newest candle for 3 polls" in json.loads(stale[0][2])["reason"]
    # Only the first poll's bar was processed; nothing after the feed went quiet.
    assert session.query("select count(*) from account_history")[0][0] == 1


def test_faults_are_survived_with_backoff(session: Session, fake: FakeBinance) -> None:
    fake.faults.add("http_500", path="/api/v3/klines", times=2)
    fake.faults.add("http_429", path="/api/v3/klines", times=1, retry_after=1)
    fake.faults.add("timeout", path="/api/v3/klines", times=1, delay=1.0)
    fake.faults.add("malformed_json", path="/api/v3/klines", times=1)
    fake.faults.add("disconnect", path="/api/v3/klines", times=1)
    with Advancer(fake):
        proc = session.run(
            *LIVE,
            *SMA,
            *QUICK,
            *fake_args(fake),
            "exchange.timeout=0.5",
            "exchange.retry.attempts=8",
            "live.max_iterations=30",
            env=fake_env(fake),
        )
    assert proc.returncode == 0, proc.stderr[-3000:]
    retries = [json.loads(r[2]) for r in session.events("exchange_retry")]
    kinds = {r["error_kind"] for r in retries}
    assert {
        "ExchangeNotAvailable",
        "DDoSProtection",
        "RequestTimeout",
        "MalformedResponse",
        "NetworkError",
    } <= kinds, kinds
    rate_limited = [r for r in retries if r["error_kind"] == "DDoSProtection"]
    assert rate_limited[0]["retry_after"] == 1 and rate_limited[0]["wait_s"] >= 1
    assert session.query("select status from runs") == [("finished",)]
    assert len(fake.orders) >= 1


def test_consecutive_failures_stop_with_a_clear_error(session: Session, fake: FakeBinance) -> None:
    fake.faults.add("http_503", path="/api/v3/klines", times=None)
    proc = session.run(
        "mode=paper",
        *SMA,
        *QUICK,
        *fake_args(fake),
        "exchange.retry.attempts=1",
        "live.max_consecutive_failures=3",
    )
    assert proc.returncode == 1
    assert "3 consecutive failed iterations" in proc.stderr
    failed = session.events("engine_failed")
    assert failed and failed[0][0] == "ERROR"
    assert len(session.events("cooldown")) == 2
    ((status, error),) = session.query("select status, error from runs")
    assert status == "failed" and "LoopFailed" in error
