"""`ml_basic`: an ONNX model predicts the next close from the last 120 candles.

The rule, as the system atb descends from defines it:
  window   the last `sequence_length` candles × (open, high, low, close, volume), each
           min-max normalised over that window (0.5 where max = min)
  predict  next close (normalised), mapped back to a price with the window's close range
  r        (predicted − close) / close
  signal   BUY if r > buy_threshold; SELL (exit, or short when shorts are on) if
           r < sell_threshold; HOLD otherwise
  sizing   confidence = min(1, |r|·confidence_scale), strength = min(1, |r|·strength_scale);
           size = base_fraction · confidence · max(0.3, strength), capped at max_position,
           0 (with a reason) when confidence < min_confidence
  scales   `auto` (default): 1 / the 90th percentile of the model's |r| on its training
           windows, read from the model's metadata (atb/ml/calibration.py); numbers are used
           as given — confidence_scale=12 strength_scale=10 is the original rule exactly
  exits    stop-loss 2 %, take-profit 4 % of entry

Windows are built with stride tricks, normalised and run through onnxruntime in bounded
batches (`batch_size` windows at a time), so a year of hourly bars is a few vectorised
passes and a million one-minute bars never sit in memory as windows at once; the live
loop calls the same `signals()` on its trailing window and acts on the last row.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field, field_validator, model_validator

from atb.config.base import NodeConfig, field_error
from atb.ml.calibration import (
    CALIBRATION_QUANTILES,
    DEFAULT_QUANTILE,
    quantile_key,
    training_abs_r_quantile,
)
from atb.ml.features import FEATURES, denormalise_close, iter_normalised_windows
from atb.ml.model import KEY, ModelError, OnnxModel
from atb.runtime.context import RunContext
from atb.strategies.base import BUY, HOLD, SELL, SignalFrame, Strategy, StrategyConfig

Scale = Annotated[float, Field(gt=0)] | Literal["auto"]


class MlBasicConfig(StrategyConfig):
    name: str = "ml_basic"
    model_path: Path | None = Field(None, description="ONNX model; null = the model atb ships")
    sequence_length: int = Field(120, ge=2, le=10_000, description="bars per window (= model's)")
    buy_threshold: float = Field(0.0, description="BUY when r = (pred − close)/close is above")
    sell_threshold: float = Field(-0.0005, description="SELL when r is below")
    base_fraction: float = Field(0.2, gt=0, le=1, description="fraction of balance at full size")
    min_confidence: float = Field(0.3, ge=0, le=1, description="size 0 below this confidence")
    max_position: float = Field(0.1, gt=0, le=1, description="cap on size (fraction of balance)")
    confidence_scale: Scale = Field(
        "auto", description="confidence = min(1, |r|·scale); auto = 1 / training |r| quantile"
    )
    strength_scale: Scale = Field(
        "auto", description="strength = min(1, |r|·scale); auto = 1 / training |r| quantile"
    )
    auto_quantile: float = Field(
        DEFAULT_QUANTILE, description="quantile of training |r| that `auto` maps to 1"
    )
    min_strength: float = Field(0.3, ge=0, le=1, description="floor of the strength factor")
    stop_loss: float | None = Field(0.02, gt=0, lt=1, description="fraction beyond entry")
    take_profit: float | None = Field(0.04, gt=0, description="fraction beyond entry")
    batch_size: int = Field(4096, ge=1, description="windows per onnxruntime call")
    # One thread by default: the model is a matrix-vector product per window, bound by
    # memory, and onnxruntime's spinning worker threads cost twice the wall and CPU on a
    # busy machine (bench_ml: 400k one-minute bars 3.4 s vs 6.7 s); 0 = all cores.
    threads: int = Field(1, ge=0, description="onnxruntime intra-op threads; 0 = its default")

    @field_validator("model_path")
    @classmethod
    def _exists(cls, value: Path | None) -> Path | None:
        # Checked here (cheaply) so a typo is a config error before any node starts;
        # whether the file is a usable model is checked when the strategy starts.
        if value is not None and not value.expanduser().is_file():
            raise ValueError(f"model file '{value}' does not exist")
        return value

    @model_validator(mode="after")
    def _thresholds(self) -> MlBasicConfig:
        if self.sell_threshold > self.buy_threshold:
            raise field_error("sell_threshold", "must be <= strategy.buy_threshold")
        if self.auto_quantile not in CALIBRATION_QUANTILES:
            stored = ", ".join(f"{q:g}" for q in CALIBRATION_QUANTILES)
            raise field_error("auto_quantile", f"must be one of the stored quantiles: {stored}")
        return self


@dataclass(frozen=True)
class Scales:
    """The confidence and strength scales in force, and where they came from."""

    confidence: float
    strength: float
    source: str

    @classmethod
    def of(cls, cfg: MlBasicConfig, metadata: dict[str, Any] | None, path: Path) -> Scales:
        """Numbers from the config as given; `auto` from the model's training |r|."""
        conf, strength = cfg.confidence_scale, cfg.strength_scale
        if conf != "auto" and strength != "auto":
            return cls(float(conf), float(strength), "config")
        q = training_abs_r_quantile(metadata or {}, cfg.auto_quantile, path)
        source = f"auto: 1 / {quantile_key(cfg.auto_quantile)} of training |r| ({q:.6f})"
        return cls(
            1.0 / q if conf == "auto" else float(conf),
            1.0 / q if strength == "auto" else float(strength),
            source,
        )


@dataclass(frozen=True)
class Decisions:
    direction: np.ndarray  # int8
    confidence: np.ndarray
    size: np.ndarray
    reason: list[str | None]


def decide(r: np.ndarray, cfg: MlBasicConfig, scales: Scales | None = None) -> Decisions:
    """The signal and sizing rule applied to expected returns r (vectorised).

    `scales` is required when the config says `auto` (the strategy resolves it from the
    model when it loads); numeric config scales are used as they are.
    """
    if scales is None:
        if cfg.confidence_scale == "auto" or cfg.strength_scale == "auto":
            raise ValueError("decide(): `auto` scales need the model's Scales")
        scales = Scales(float(cfg.confidence_scale), float(cfg.strength_scale), "config")
    r = np.asarray(r, dtype=np.float64)
    finite = np.isfinite(r)
    abs_r = np.where(finite, np.abs(r), 0.0)
    direction = np.zeros(r.shape, dtype=np.int8)
    direction[finite & (r > cfg.buy_threshold)] = BUY
    direction[finite & (r < cfg.sell_threshold)] = SELL
    confidence = np.minimum(1.0, abs_r * scales.confidence)
    strength = np.minimum(1.0, abs_r * scales.strength)
    size = cfg.base_fraction * confidence * np.maximum(cfg.min_strength, strength)
    size = np.minimum(size, cfg.max_position)
    unsure = confidence < cfg.min_confidence
    size[unsure | (direction == HOLD)] = 0.0
    # Vectorised: a million one-minute bars give ~a million unsized signals, and one
    # f-string each would cost more than the model. Confidence is shown to the cent, so
    # there are at most 101 distinct texts; one object array indexes into them.
    reasons = np.full(len(r), None, dtype=object)
    unsized = np.flatnonzero((direction != HOLD) & unsure)
    if unsized.size:
        cents = np.rint(confidence[unsized] * 100).astype(np.int64)
        texts = np.array(
            [
                f"confidence {c / 100:.2f} < min_confidence {cfg.min_confidence:g}"
                for c in range(101)
            ],
            dtype=object,
        )
        reasons[unsized] = texts[cents]
    reasons[~finite] = "model returned a non-finite prediction"
    return Decisions(direction, confidence, size, reasons.tolist())


class MlBasic(Strategy[MlBasicConfig]):
    def __init__(self, config: NodeConfig, ctx: RunContext, **needs: Any) -> None:
        super().__init__(config, ctx)
        self.model: OnnxModel | None = None
        self.scales: Scales | None = None
        self.lookahead: bool | None = None  # None: not known (no training period on file)
        self._lookahead_checked = False

    @property
    def warmup(self) -> int:
        # Bar i needs bars i-L+1..i, so the first L-1 bars cannot have a signal.
        return self.config.sequence_length - 1

    @property
    def model_id(self) -> str | None:
        return self.model.model_id if self.model else None

    def start(self) -> None:
        self.load_model()

    def load_model(self) -> OnnxModel:
        """Load and check the model once; later calls return the same session."""
        if self.model is not None:
            return self.model
        cfg = self.config
        model = OnnxModel.load(
            cfg.model_path, cfg.sequence_length, len(FEATURES), cfg.batch_size, cfg.threads
        )
        meta = model.metadata
        meta_len = meta.get("sequence_length")
        if meta_len is not None and meta_len != cfg.sequence_length:
            raise ModelError(
                f"{KEY}: '{model.path}' was trained on {meta_len}-bar windows (its metadata "
                f"says so) but strategy.sequence_length is {cfg.sequence_length}"
            )
        meta_features = meta.get("features")
        if meta_features is not None and list(meta_features) != list(FEATURES):
            raise ModelError(
                f"{KEY}: '{model.path}' was trained on features {meta_features}; ml_basic "
                f"feeds {list(FEATURES)}"
            )
        self.scales = Scales.of(cfg, meta, model.path)
        self.model = model
        from atb.ml.events import log_ml_event

        period = meta.get("training_period", {})
        log_ml_event(
            "model_loaded",
            strategy=self.name,
            model_id=model.model_id,
            path=str(model.path),
            input_shape=str(model.input_shape),
            train_start=period.get("start"),
            train_end=period.get("end_exclusive"),
            confidence_scale=round(self.scales.confidence, 3),
            strength_scale=round(self.scales.strength, 3),
            scales=self.scales.source,
        )
        return model

    def summary_rows(self) -> list[tuple[str, str]]:
        """The model, its scale, and its holdout scores next to the naive baselines."""
        if self.model is None:
            return []
        meta = self.model.metadata
        period = meta.get("training_period") or {}
        kind = (meta.get("model") or {}).get("kind", "user model")
        fit = (
            f", fit {str(period['start'])[:10]}..{str(period['last_bar'])[:10]}"
            if period.get("start") and period.get("last_bar")
            else ""
        )
        rows = [("Model", f"{self.model.model_id} ({kind}{fit})")]
        if self.scales is not None:
            source = (
                "config"
                if self.scales.source == "config"
                else (f"auto: 1 / {quantile_key(self.config.auto_quantile)} of training |r|")
            )
            rows.append(("Confidence scale", f"{self.scales.confidence:,.0f} ({source})"))
        if self.lookahead is not None:
            rows.append(
                (
                    "Look-ahead",
                    "YES: trained on bars this run trades on, results optimistic"
                    if self.lookahead
                    else "none: this run starts after the training period",
                )
            )
        hold = meta.get("holdout") or {}
        if hold:
            rows.append(
                (
                    "Model holdout",
                    f"{str(hold.get('start'))[:10]} -> {str(hold.get('last_bar'))[:10]}, "
                    "never fitted on",
                )
            )
            rows.append(
                (
                    "Holdout hit rate",
                    f"{_pct(hold.get('directional_accuracy'))} (coin flip 50.00 %, "
                    f"always up {_pct(hold.get('always_up_accuracy'))})",
                )
            )
            mse, none = hold.get("mse"), hold.get("mse_no_change")
            if isinstance(mse, int | float) and isinstance(none, int | float):
                rows.append(
                    (
                        "Holdout return MSE",
                        f"{mse:.3e} (no change {none:.3e}, skill "
                        f"{_pct(hold.get('skill_vs_no_change'), signed=True)})",
                    )
                )
        return rows

    def parameters(self) -> dict[str, Any]:
        params = super().parameters()
        params["model_path"] = str(params["model_path"]) if params["model_path"] else None
        if self.model is not None:
            params["model_id"] = self.model.model_id
        if self.scales is not None:  # what `auto` resolved to, so a run record is complete
            params["confidence_scale_used"] = self.scales.confidence
            params["strength_scale_used"] = self.scales.strength
        return params

    def predict(self, bars: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Predicted next close and r for every bar from the warm-up on (len(bars) − L + 1)."""
        model = self.load_model()
        length = self.config.sequence_length
        # column by column: a multi-column selection makes pandas build an indexer and a frame
        data = np.column_stack([bars[c].to_numpy(dtype=np.float64) for c in FEATURES])
        price = np.empty(max(0, len(data) - length + 1))
        # Bounded batches: normalised windows are L·F float32 each (2.4 GB for 1M bars).
        for start, windows in iter_normalised_windows(data, length, self.config.batch_size):
            stop = start + len(windows)
            price[start:stop] = denormalise_close(model.predict(windows.values), windows)
        close = data[length - 1 :, FEATURES.index("close")]
        return price, (price - close) / close

    def signals(self, bars: pd.DataFrame) -> SignalFrame:
        cfg = self.config
        n = len(bars)
        start = min(self.warmup, n)
        price, r = self.predict(bars)
        d = decide(r, cfg, self.scales)

        direction = np.zeros(n, dtype=np.int8)
        size = np.zeros(n)
        confidence = np.full(n, np.nan)
        direction[start:] = d.direction
        size[start:] = d.size
        confidence[start:] = d.confidence
        warm = f"warmup: ml_basic needs {cfg.sequence_length} bars"
        reason: list[str | None] = [warm] * start
        reason += d.reason
        acting = direction != HOLD
        stop_loss = np.where(acting, cfg.stop_loss, np.nan) if cfg.stop_loss else None
        take_profit = np.where(acting, cfg.take_profit, np.nan) if cfg.take_profit else None

        times = bars.index[start:]
        if len(times):
            self._check_lookahead(times[0])
        predictions = pd.DataFrame(
            {
                "time": times,
                "close": bars["close"].to_numpy(dtype=np.float64)[start:],
                "predicted_price": price,
                "r": r,
                "confidence": d.confidence,
                "direction": d.direction,
                "model_id": self.model_id or "",
            }
        )
        return SignalFrame(
            direction=direction,
            size=size,
            stop_loss=stop_loss,
            take_profit=take_profit,
            confidence=confidence,
            reason=reason,
            predictions=predictions,
        )

    def _check_lookahead(self, first: Any) -> None:
        """Warn once when the model was trained on bars this run trades on."""
        if self._lookahead_checked or self.model is None:
            return
        self._lookahead_checked = True
        end = self.model.metadata.get("training_period", {}).get("end_exclusive")
        if not end:
            return
        try:
            train_end = pd.Timestamp(end)
            first_ts = pd.Timestamp(first)
        except (ValueError, TypeError):
            return
        if first_ts.tzinfo is None:
            first_ts = first_ts.tz_localize("UTC")
        self.lookahead = bool(first_ts < train_end)
        if self.lookahead:
            from atb.ml.events import log_ml_event

            log_ml_event(
                "model_lookahead",
                level="WARNING",
                model_id=self.model.model_id,
                train_end=train_end.isoformat(),
                first_signal=first_ts.isoformat(),
                note="the model was trained on bars this run trades on: results are optimistic",
            )


def _pct(value: Any, signed: bool = False) -> str:
    if not isinstance(value, int | float) or not np.isfinite(value):
        return "n/a"
    return f"{value * 100:+.2f} %" if signed else f"{value * 100:.2f} %"
