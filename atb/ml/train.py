"""Train the model ml_basic ships with: `python -m atb mode=train`.

A ridge regression (or a small ReLU MLP) on the flattened, per-window normalised 120×5
candle window predicts the next close, normalised with the same window's close range.
It learns the *change* from the window's last normalised close (a residual), because an
hourly close is mostly the previous close: a model that must rediscover that from scratch
ends up worse than "no change" under regularisation. Only bars before `train_end`
(2024-01-01) are used, and the default backtest starts there, so the default run has no
look-ahead. The hyper-parameter is chosen on a held-out tail of the training period, and
the metrics written to the metadata JSON are those of exactly the model in the ONNX file.

Needs the `atb[train]` extra (onnx, scikit-learn), imported only when training runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from atb.config.base import NodeConfig, UtcDatetime, field_error
from atb.ml.features import CLOSE, FEATURES, next_close_target, normalised_windows
from atb.ml.model import model_id_of
from atb.runtime.context import RunContext
from atb.runtime.node import Node

DEFAULT_TRAIN_END = datetime(2024, 1, 1, tzinfo=UTC)


class TrainConfig(NodeConfig):
    data_path: Path | None = Field(None, description="candle CSV(.gz); null = bundled BTCUSDT 1h")
    timeframe: str = Field("1h", pattern=r"^[1-9][0-9]*[mhdwM]$")
    train_start: UtcDatetime | None = Field(None, description="first bar used, inclusive (UTC)")
    train_end: UtcDatetime = Field(DEFAULT_TRAIN_END, description="end, exclusive (UTC)")
    sequence_length: int = Field(120, ge=2, le=10_000)
    model: Literal["ridge", "mlp"] = "ridge"
    alphas: list[float] = Field(
        default_factory=lambda: [1.0, 10.0, 100.0, 1000.0, 10000.0],
        min_length=1,
        description="L2 strengths tried (ridge: alpha; mlp: weight decay); best on validation",
    )
    hidden: list[int] = Field(default_factory=lambda: [32], description="mlp hidden layer sizes")
    max_iter: int = Field(200, ge=1, description="mlp epochs")
    residual: bool = Field(True, description="learn the change from the window's last close")
    validation_fraction: float = Field(0.2, gt=0, lt=1, description="held-out tail of the period")
    seed: int = 0
    output_dir: Path = Field(Path("models"), description="where <name>.onnx and <name>.json go")
    name: str = Field("ml_basic_btcusdt_1h", pattern=r"^[A-Za-z0-9_.-]+$")
    min_confidence: float = Field(
        0.3, ge=0, le=1, description="only for the metadata: share of bars that would trade"
    )

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.train_start is not None and self.train_end <= self.train_start:
            raise field_error("train_end", "must be after train.train_start")
        if any(a <= 0 for a in self.alphas):
            raise field_error("alphas", "every alpha must be > 0")
        if any(h < 1 for h in self.hidden):
            raise field_error("hidden", "layer sizes must be >= 1")
        return self


@dataclass
class TrainResult:
    onnx: bytes
    metadata: dict[str, Any]

    @property
    def model_id(self) -> str:
        return str(self.metadata["model_id"])


def _stats(values: np.ndarray) -> dict[str, float]:
    q = np.quantile(values, [0.01, 0.5, 0.99])
    return {
        "mean": float(values.mean()),
        "std": float(values.std()),
        "min": float(values.min()),
        "p01": float(q[0]),
        "p50": float(q[1]),
        "p99": float(q[2]),
        "max": float(values.max()),
    }


def feature_statistics(bars: pd.DataFrame, normed_last: np.ndarray) -> dict[str, Any]:
    """Training-period distributions, the reference for the market_prediction drift view.

    Raw levels drift by construction (BTC's price range moves), so the log-return and the
    normalised last-row features, which the model actually sees, are stored too.
    """
    raw = {f: _stats(bars[f].to_numpy(dtype=np.float64)) for f in FEATURES}
    close = bars["close"].to_numpy(dtype=np.float64)
    log_ret = np.diff(np.log(close)) if len(close) > 1 else np.zeros(1)
    normalised = {f: _stats(normed_last[:, i].astype(np.float64)) for i, f in enumerate(FEATURES)}
    return {"raw": raw, "close_log_return": _stats(log_ret), "normalised_last_bar": normalised}


def _fit(
    cfg: TrainConfig, x: np.ndarray, y: np.ndarray, alpha: float
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Fit one model; return its dense layers [(W, b), …] for the ONNX export."""
    if cfg.model == "ridge":
        from sklearn.linear_model import Ridge

        ridge = Ridge(alpha=alpha, random_state=cfg.seed).fit(x, y)
        return [(ridge.coef_.reshape(-1, 1), np.atleast_1d(ridge.intercept_))]
    from sklearn.neural_network import MLPRegressor

    mlp = MLPRegressor(
        hidden_layer_sizes=tuple(cfg.hidden),
        alpha=alpha,
        max_iter=cfg.max_iter,
        random_state=cfg.seed,
        early_stopping=False,  # the held-out tail is ours; sklearn's split would shuffle it in
    ).fit(x, y)
    return [(w, b) for w, b in zip(mlp.coefs_, mlp.intercepts_, strict=True)]


def _forward(layers: list[tuple[np.ndarray, np.ndarray]], x: np.ndarray) -> np.ndarray:
    """numpy reference of the exported graph (float32, like onnxruntime)."""
    h = x.astype(np.float32)
    for i, (w, b) in enumerate(layers):
        h = h @ w.astype(np.float32) + b.astype(np.float32)
        if i < len(layers) - 1:
            h = np.maximum(h, 0)
    return h.reshape(-1).astype(np.float64)


def train_model(bars: pd.DataFrame, cfg: TrainConfig) -> TrainResult:
    """Train on `bars` (already limited to the training period) and build ONNX + metadata."""
    from atb import __version__
    from atb.ml.export import INPUT_NAME, OPSET, OUTPUT_NAME, dense_to_onnx

    length = cfg.sequence_length
    n_features = len(FEATURES)
    data = bars[list(FEATURES)].to_numpy(dtype=np.float64)
    windows = normalised_windows(data, length)
    target, valid = next_close_target(data, windows)
    idx = np.flatnonzero(valid)
    min_samples = 20
    if idx.size < min_samples:
        raise ValueError(
            f"train: only {idx.size} training windows in the period; need >= {min_samples} "
            f"(sequence_length {length} + 1 bars each)"
        )
    x_all = windows.values.reshape(len(windows), -1)
    last_close = windows.values[:, -1, CLOSE].astype(np.float64)
    split = round(idx.size * (1 - cfg.validation_fraction))
    split = min(max(split, 1), idx.size - 1)
    tr, va = idx[:split], idx[split:]
    res_index = (length - 1) * n_features + CLOSE
    base = last_close if cfg.residual else np.zeros_like(last_close)

    grid: list[dict[str, float]] = []
    best: tuple[float, float, list[tuple[np.ndarray, np.ndarray]]] | None = None
    for alpha in cfg.alphas:
        layers = _fit(cfg, x_all[tr], target[tr] - base[tr], alpha)
        pred_va = _forward(layers, x_all[va]) + base[va]
        mse = float(np.mean((pred_va - target[va]) ** 2))
        grid.append({"alpha": alpha, "val_mse": mse})
        if best is None or mse < best[0]:
            best = (mse, alpha, layers)
    assert best is not None
    _, alpha, layers = best

    # Fold the residual into the graph: for a linear model it is +1 on the last-close
    # weight (graph stays MatMul+Add); an MLP gets an explicit Gather+Add.
    residual_index: int | None = None
    if cfg.residual:
        if len(layers) == 1:
            w, b = layers[0]
            w = w.copy()
            w[res_index, 0] += 1.0
            layers = [(w, b)]
        else:
            residual_index = res_index

    def predict(rows: np.ndarray) -> np.ndarray:
        out = _forward(layers, x_all[rows])
        return out + last_close[rows] if residual_index is not None else out

    onnx_bytes = dense_to_onnx(
        layers,
        length,
        n_features,
        residual_index=residual_index,
        doc=f"atb ml_basic next-close model ({cfg.model}, alpha={alpha:g})",
    )

    pred_tr, pred_va = predict(tr), predict(va)
    metrics = _metrics(data, windows, target, tr, va, pred_tr, pred_va, last_close, cfg)
    metrics["selection"] = grid
    times = bars.index
    metadata: dict[str, Any] = {
        "model_id": model_id_of(onnx_bytes),
        "name": cfg.name,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "atb_version": __version__,
        "framework": "scikit-learn → hand-built ONNX (atb.ml.export)",
        "model": {
            "kind": cfg.model,
            "alpha": alpha,
            "hidden": cfg.hidden if cfg.model == "mlp" else [],
            "residual": cfg.residual,
            "seed": cfg.seed,
            "parameters": int(sum(w.size + b.size for w, b in layers)),
        },
        "onnx": {
            "opset": OPSET,
            "input": {"name": INPUT_NAME, "shape": ["batch", length, n_features]},
            "output": {"name": OUTPUT_NAME, "shape": ["batch", 1]},
            "dtype": "float32",
        },
        "sequence_length": length,
        "features": list(FEATURES),
        "normalisation": (
            "per window and feature: (x - min) / (max - min) over the window; 0.5 where max = min"
        ),
        "target": "next bar's close, normalised with the window's close min/max",
        "training_period": {
            "start": times[0].isoformat(),
            "end_exclusive": cfg.train_end.isoformat(),
            "last_bar": times[-1].isoformat(),
            "bars": len(bars),
            "windows": int(idx.size),
            "train_windows": int(tr.size),
            "validation_windows": int(va.size),
            "validation_start": times[int(va[0]) + length - 1].isoformat(),
            "timeframe": cfg.timeframe,
            "source": str(cfg.data_path) if cfg.data_path else "bundled BTCUSDT-1h.csv.gz",
        },
        "metrics": metrics,
        "feature_stats": feature_statistics(bars, windows.values[:, -1, :]),
    }
    return TrainResult(onnx_bytes, metadata)


def _metrics(
    data: np.ndarray,
    windows: Any,
    target: np.ndarray,
    tr: np.ndarray,
    va: np.ndarray,
    pred_tr: np.ndarray,
    pred_va: np.ndarray,
    last_close: np.ndarray,
    cfg: TrainConfig,
) -> dict[str, Any]:
    """Held-out metrics, each next to the naive "no change" baseline it must beat."""
    mse_va = float(np.mean((pred_va - target[va]) ** 2))
    base_va = float(np.mean((last_close[va] - target[va]) ** 2))
    moved = target[va] != last_close[va]  # bars where the close did not move have no direction
    hit = np.sign(pred_va - last_close[va])[moved] == np.sign(target[va] - last_close[va])[moved]
    close = data[cfg.sequence_length - 1 :, CLOSE][va]
    lo = windows.close_min[va]
    price = lo + pred_va * (windows.close_max[va] - lo)
    r = (price - close) / close
    abs_r = np.abs(r)
    return {
        "train_mse": float(np.mean((pred_tr - target[tr]) ** 2)),
        "val_mse": mse_va,
        "val_mse_no_change_baseline": base_va,
        "val_skill_vs_baseline": 1.0 - mse_va / base_va if base_va > 0 else 0.0,
        "val_directional_accuracy": float(hit.mean()) if hit.size else float("nan"),
        "val_mae_price_pct": float(
            np.mean(np.abs(price - data[cfg.sequence_length :, CLOSE][va]) / close) * 100
        ),
        "val_abs_r_quantiles": {
            "p50": float(np.quantile(abs_r, 0.5)),
            "p90": float(np.quantile(abs_r, 0.9)),
            "p99": float(np.quantile(abs_r, 0.99)),
        },
        "val_share_confident": float(np.mean(np.minimum(1.0, abs_r * 12) >= cfg.min_confidence)),
    }


class TrainModel(Node[TrainConfig]):
    """The `train` node: the main node of `mode=train`; run() trains and writes the files."""

    config_model: ClassVar[type[NodeConfig]] = TrainConfig
    config: TrainConfig

    def __init__(self, config: TrainConfig, ctx: RunContext, **needs: Any) -> None:
        super().__init__(config, ctx)

    def load_bars(self) -> pd.DataFrame:
        from atb.data.loader import load_bars, select_period

        cfg = self.config
        bars = load_bars(cfg.data_path, cfg.timeframe)
        start = pd.Timestamp(cfg.train_start) if cfg.train_start else None
        return select_period(bars, start, pd.Timestamp(cfg.train_end))

    def run(self) -> dict[str, Any]:
        from atb.ml.events import log_ml_event

        cfg = self.config
        try:
            import onnx  # noqa: F401
            import sklearn  # noqa: F401
        except ImportError as exc:
            raise RuntimeError(
                f"training needs the optional extra: pip install 'atb[train]' ({exc})"
            ) from exc
        bars = self.load_bars()
        result = train_model(bars, cfg)
        onnx_path, json_path = write_model(result, cfg.output_dir, cfg.name)
        m = result.metadata["metrics"]
        log_ml_event(
            "model_trained",
            model_id=result.model_id,
            path=str(onnx_path),
            metadata=str(json_path),
            train_start=result.metadata["training_period"]["start"],
            train_end=result.metadata["training_period"]["end_exclusive"],
            val_mse=round(m["val_mse"], 6),
            val_mse_baseline=round(m["val_mse_no_change_baseline"], 6),
            val_directional_accuracy=round(m["val_directional_accuracy"], 4),
        )
        return {"model_id": result.model_id, "path": str(onnx_path), "metrics": m}


def write_model(result: TrainResult, output_dir: Path, name: str) -> tuple[Path, Path]:
    output_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = output_dir / f"{name}.onnx"
    json_path = output_dir / f"{name}.json"
    onnx_path.write_bytes(result.onnx)
    json_path.write_text(json.dumps(result.metadata, indent=2) + "\n")
    return onnx_path, json_path
