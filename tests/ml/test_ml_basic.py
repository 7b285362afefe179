"""ml_basic's rule: thresholds, hand-computed sizing, and the SignalFrame it fills."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest
from ml_helpers import L, WriteModel, constant_layers, synthetic_bars
from pydantic import ValidationError

from atb.runtime.context import RunContext
from atb.strategies.base import BUY, HOLD, SELL
from atb.strategies.ml_basic import MlBasic, MlBasicConfig, decide

TARGET = "atb.strategies.ml_basic.MlBasic"
# The original system's fixed scales; the default is `auto` (the model's own |r| scale).
ORIGINAL = {"confidence_scale": 12, "strength_scale": 10}


def config(**kw: Any) -> MlBasicConfig:
    return MlBasicConfig.model_validate({"_target_": TARGET, **kw})


def test_defaults_are_the_documented_rule() -> None:
    cfg = config()
    assert (cfg.buy_threshold, cfg.sell_threshold) == (0.0, -0.0005)
    assert (cfg.base_fraction, cfg.min_confidence, cfg.max_position) == (0.2, 0.3, 0.1)
    assert (cfg.stop_loss, cfg.take_profit, cfg.sequence_length) == (0.02, 0.04, 120)
    assert (cfg.confidence_scale, cfg.strength_scale, cfg.auto_quantile) == ("auto", "auto", 0.9)


@pytest.mark.parametrize(
    ("r", "direction", "confidence", "size"),
    [
        # confidence = min(1, 12|r|), strength = min(1, 10|r|),
        # size = 0.2 * confidence * max(0.3, strength), capped at 0.1
        (0.03, BUY, 0.36, 0.2 * 0.36 * 0.3),  # strength 0.3 = the floor
        (0.05, BUY, 0.60, 0.2 * 0.60 * 0.5),  # 0.06
        (-0.04, SELL, 0.48, 0.2 * 0.48 * 0.4),  # 0.0384
        (0.08, BUY, 0.96, 0.1),  # 0.2 * 0.96 * 0.8 = 0.1536 -> capped
        (0.5, BUY, 1.0, 0.1),  # both saturate: 0.2 -> capped
        (0.025, BUY, 0.30, 0.2 * 0.30 * 0.3),  # exactly min_confidence: trades
        (0.02, BUY, 0.24, 0.0),  # below min_confidence
        (1e-9, BUY, 12e-9, 0.0),  # any r > 0 is BUY, but far too unsure to size
        (0.0, HOLD, 0.0, 0.0),
        (-0.0004, HOLD, 0.0048, 0.0),  # between the thresholds
        (-0.0005, HOLD, 0.006, 0.0),  # not strictly below sell_threshold
        (-0.0006, SELL, 0.0072, 0.0),
    ],
)
def test_rule(r: float, direction: int, confidence: float, size: float) -> None:
    d = decide(np.array([r]), config(**ORIGINAL))
    assert d.direction[0] == direction
    assert d.confidence[0] == pytest.approx(confidence)
    assert d.size[0] == pytest.approx(size)


def test_reasons_when_size_is_zero() -> None:
    d = decide(np.array([0.0175, 0.03, 0.0, np.nan]), config(**ORIGINAL))
    assert d.reason[0] == "confidence 0.21 < min_confidence 0.3"
    assert d.reason[1] is None  # sized: nothing to explain
    assert d.reason[2] is None  # HOLD: no trade was considered
    assert d.direction[3] == HOLD and d.size[3] == 0.0
    assert d.reason[3] == "model returned a non-finite prediction"


def test_thresholds_are_configurable() -> None:
    cfg = config(buy_threshold=0.01, sell_threshold=-0.01, min_confidence=0.0, **ORIGINAL)
    d = decide(np.array([0.005, 0.011, -0.005, -0.011]), cfg)
    assert d.direction.tolist() == [HOLD, BUY, HOLD, SELL]
    assert d.size[1] == pytest.approx(0.2 * 0.132 * 0.3)


def test_min_confidence_zero_sizes_every_signal() -> None:
    d = decide(np.array([0.001]), config(min_confidence=0.0, **ORIGINAL))
    assert d.size[0] == pytest.approx(0.2 * 0.012 * 0.3)


def test_sell_threshold_above_buy_is_a_config_error() -> None:
    with pytest.raises(ValidationError, match="sell_threshold"):
        config(buy_threshold=0.0, sell_threshold=0.001)


def strategy(path: Any = None, **kw: Any) -> MlBasic:
    """The shipped model (auto scales) or a test model, which has no metadata: fixed scales."""
    if path is not None:
        kw = {**ORIGINAL, **kw}
    s = MlBasic(config(model_path=path, **kw), RunContext())
    s.start()
    return s


def test_signals_with_a_known_model(write_model: WriteModel) -> None:
    # predicts the window's close max (normalised 1.0): r = (max - close)/close >= 0
    bars = synthetic_bars(400)
    s = strategy(write_model(constant_layers(1.0)), min_confidence=0.0)
    sf = s.signals(bars)
    n = len(bars)
    assert len(sf) == n and s.warmup == L - 1
    close = bars["close"].to_numpy()
    cmax = pd.Series(close).rolling(L).max().to_numpy()
    r = (cmax - close) / close
    assert (sf.direction[: L - 1] == HOLD).all() and (sf.size[: L - 1] == 0).all()
    assert sf.reason is not None and sf.reason[0] == "warmup: ml_basic needs 120 bars"
    assert np.isnan(sf.confidence[: L - 1]).all()  # type: ignore[index]
    expected_dir = np.where(r[L - 1 :] > 0, BUY, HOLD)
    np.testing.assert_array_equal(sf.direction[L - 1 :], expected_dir)
    acting = sf.direction != HOLD
    assert sf.stop_loss is not None and sf.take_profit is not None
    assert (sf.stop_loss[acting] == 0.02).all() and np.isnan(sf.stop_loss[~acting]).all()
    assert (sf.take_profit[acting] == 0.04).all()

    p = sf.predictions
    assert p is not None and len(p) == n - L + 1
    assert list(p.columns) == [
        "time", "close", "predicted_price", "r", "confidence", "direction", "model_id"
    ]  # fmt: skip
    assert (p["time"].to_numpy() == bars.index[L - 1 :].to_numpy()).all()
    np.testing.assert_allclose(p["predicted_price"], cmax[L - 1 :], rtol=1e-9)
    np.testing.assert_allclose(p["r"], r[L - 1 :], atol=1e-12)
    assert (p["model_id"] == s.model_id).all()
    # the live loop acts on the last row of a trailing window: same decision as in bulk
    tail = s.signals(bars.iloc[-L:])
    assert tail.row(L - 1) == sf.row(n - 1)


def test_predicting_window_min_sells(write_model: WriteModel) -> None:
    bars = synthetic_bars(200, seed=2)
    sf = strategy(write_model(constant_layers(0.0))).signals(bars)
    close = bars["close"].to_numpy()[L - 1 :]
    cmin = bars["close"].rolling(L).min().to_numpy()[L - 1 :]
    r = (cmin - close) / close
    np.testing.assert_array_equal(sf.direction[L - 1 :], np.where(r < -0.0005, SELL, HOLD))


def test_fewer_bars_than_a_window(write_model: WriteModel) -> None:
    sf = strategy(write_model()).signals(synthetic_bars(50))
    assert len(sf) == 50 and (sf.direction == HOLD).all()
    assert sf.predictions is not None and sf.predictions.empty


def test_shipped_model_on_2024(bundled: pd.DataFrame) -> None:
    bars = bundled.loc["2024-01-01":"2024-01-31"]
    s = strategy()
    sf = s.signals(bars)
    p = sf.predictions
    assert p is not None and len(p) == len(bars) - L + 1
    assert np.isfinite(p["predicted_price"]).all()
    # a next-hour close prediction stays near the last close
    assert (p["r"].abs() < 0.05).all()
    assert s.parameters()["model_id"] == s.model_id


def test_lookahead_is_reported(bundled: pd.DataFrame, monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr("atb.ml.events.log_ml_event", lambda name, **kw: events.append((name, kw)))
    s = strategy()
    s.signals(bundled.loc["2023-11-01":"2023-11-30"])  # inside the training period
    assert [e[0] for e in events] == ["model_loaded", "model_lookahead"]
    assert events[1][1]["train_end"].startswith("2024-01-01")
    s.signals(bundled.loc["2023-11-01":"2023-11-30"])
    assert len(events) == 2  # warned once per run, not per call


def test_no_lookahead_warning_from_2024(
    bundled: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []
    monkeypatch.setattr("atb.ml.events.log_ml_event", lambda name, **kw: events.append(name))
    strategy().signals(bundled.loc["2023-12-27 01:00":"2024-01-10"])  # 1st signal 2024-01-01
    assert events == ["model_loaded"]


def test_ml_events_keep_their_level(monkeypatch: pytest.MonkeyPatch) -> None:
    from atb.ml.events import log_ml_event

    seen: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(
        "atb.logging.events.log_engine_event", lambda name, **kw: seen.append((name, kw))
    )
    log_ml_event("model_lookahead", level="WARNING", model_id="m")
    log_ml_event("model_loaded", model_id="m")
    assert seen == [
        ("model_lookahead", {"level": "WARNING", "model_id": "m"}),
        ("model_loaded", {"level": "INFO", "model_id": "m"}),
    ]


def original_rule(r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rule as the original system wrote it: confidence and size for each r."""
    confidence = np.minimum(1.0, np.abs(r) * 12)
    strength = np.minimum(1.0, np.abs(r) * 10)
    size = np.minimum(0.2 * confidence * np.maximum(0.3, strength), 0.1)
    size[(confidence < 0.3) | ((r <= 0.0) & (r >= -0.0005))] = 0.0
    return confidence, size


def test_confidence_scale_12_is_the_original_rule_exactly() -> None:
    r = np.random.default_rng(3).normal(0, 0.05, 5000)
    d = decide(r, config(confidence_scale=12, strength_scale=10))
    confidence, size = original_rule(r)
    np.testing.assert_array_equal(d.confidence, confidence)
    np.testing.assert_array_equal(d.size, size)
    assert (d.size > 0).sum() > 1000  # the comparison covers sized trades, not only zeros


def with_calibration(write_model: WriteModel, p90: float) -> Any:
    path = write_model(constant_layers(1.0))
    meta = {"calibration": {"abs_r_quantiles": {"p50": p90 / 4, "p90": p90, "p99": p90 * 3}}}
    path.with_suffix(".json").write_text(json.dumps(meta))
    return path


def test_auto_maps_the_training_p90_to_confidence_one(write_model: WriteModel) -> None:
    s = MlBasic(config(model_path=with_calibration(write_model, 0.002)), RunContext())
    s.start()
    assert s.scales is not None
    assert s.scales.confidence == pytest.approx(500.0) and s.scales.strength == pytest.approx(500)
    assert "p90" in s.scales.source
    d = decide(np.array([0.002, 0.004, 0.0006, 0.0005, -0.001]), s.config, s.scales)
    np.testing.assert_allclose(d.confidence, [1.0, 1.0, 0.3, 0.25, 0.5])
    # size = 0.2 * confidence * max(0.3, strength), capped at 0.1; 0 below min_confidence
    np.testing.assert_allclose(d.size, [0.1, 0.1, 0.2 * 0.3 * 0.3, 0.0, 0.2 * 0.5 * 0.5])
    assert s.parameters()["confidence_scale_used"] == pytest.approx(500.0)
    # another stored quantile, and a number for one scale only
    q = MlBasic(
        config(model_path=with_calibration(write_model, 0.002), auto_quantile=0.99,
               strength_scale=10),
        RunContext(),
    )  # fmt: skip
    q.start()
    assert q.scales is not None
    assert (q.scales.confidence, q.scales.strength) == (pytest.approx(1 / 0.006), 10.0)


def test_auto_without_calibration_is_one_clear_error(write_model: WriteModel) -> None:
    from atb.ml.model import ModelError

    s = MlBasic(config(model_path=write_model()), RunContext())
    with pytest.raises(ModelError) as info:
        s.start()
    message = str(info.value)
    assert "\n" not in message
    assert "strategy.confidence_scale=auto" in message and "12 and 10" in message


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"auto_quantile": 0.8}, "auto_quantile"),
        ({"confidence_scale": 0}, "confidence_scale"),
        ({"strength_scale": "sometimes"}, "strength_scale"),
    ],
)
def test_scale_config_errors(kw: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        config(**kw)


def test_shipped_model_trades_on_2024_with_auto_scales(bundled: pd.DataFrame) -> None:
    """The issue's complaint: confidence ~0 everywhere, so nothing was ever sized."""
    s = strategy()
    sf = s.signals(bundled.loc["2024-01-01":"2025-01-20"])
    sized = int((sf.size > 0).sum())
    assert sized > 1000
    assert sf.predictions is not None
    assert 0.05 < float(sf.predictions["confidence"].mean()) < 0.9
    # the original fixed scale on the same model: nothing sized (what users saw before)
    fixed = strategy(confidence_scale=12, strength_scale=10).signals(bundled.loc["2024"])
    assert int((fixed.size > 0).sum()) == 0


def test_batch_size_does_not_change_predictions(write_model: WriteModel) -> None:
    layers = [(np.random.default_rng(5).normal(0, 0.05, (L * 5, 1)), np.array([0.4]))]
    path = write_model(layers)
    bars = synthetic_bars(2600, seed=4)
    whole = strategy(path, batch_size=10**9).signals(bars)
    for batch in (1000, 7, 1):
        part = strategy(path, batch_size=batch).signals(bars.iloc[: 400 if batch == 1 else None])
        n = len(part)
        np.testing.assert_array_equal(part.direction, whole.direction[:n])
        np.testing.assert_array_equal(part.size, whole.size[:n])
        assert part.predictions is not None and whole.predictions is not None
        np.testing.assert_array_equal(
            part.predictions["predicted_price"].to_numpy(),
            whole.predictions["predicted_price"].to_numpy()[: n - L + 1],
        )
