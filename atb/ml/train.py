"""Train the model ml_basic ships with: `python -m atb mode=train`.

Inputs are engineered from the per-window normalised 120×5 candle window (returns,
ranges, wicks, moving-average gaps, volume changes: `atb.ml.engineered`), standardised on
the training rows; a ridge regression (or a small ReLU MLP) on them predicts the change of
the next close from the window's last close. The loss is weighted so it is the squared
error of the *return* (a window's normalised units are its close range; without the weight
the quietest windows dominate the fit). The feature projection and the standardisation
are linear, so they fold into the first layer and the ONNX input stays the plain window.

Only windows whose target bar lies before `train_end` (2024-01-01) are fitted, and the
default backtest starts there, so the default run has no look-ahead. The hyper-parameter
is chosen on a held-out tail of the training period. The bars from `train_end` on are a
holdout that is only scored, never used for a choice: its metrics (MSE vs "no change",
directional accuracy vs a coin flip and vs "always up") go to the metadata JSON, and the
backtest summary prints them next to buy & hold.

The metadata also stores the quantiles of the fitted model's |r| on its training windows:
`strategy.confidence_scale: auto` maps one of them (the 90th by default) to confidence 1.

Needs the `atb[train]` extra (onnx, scikit-learn), imported only when training runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from atb.config.base import NodeConfig, UtcDatetime, field_error
from atb.ml.calibration import CALIBRATION_QUANTILES, quantile_key
from atb.ml.engineered import projection
from atb.ml.features import CLOSE, FEATURES, next_close_target, normalised_windows
from atb.ml.model import model_id_of
from atb.runtime.node import Node

DEFAULT_TRAIN_END = datetime(2024, 1, 1, tzinfo=UTC)
Layers = list[tuple[np.ndarray, np.ndarray]]


class TrainConfig(NodeConfig):
    data_path: Path | None = Field(None, description="candle CSV(.gz); null = bundled BTCUSDT 1h")
    timeframe: str = Field("1h", pattern=r"^[1-9][0-9]*[mhdwM]$")
    train_start: UtcDatetime | None = Field(None, description="first bar used, inclusive (UTC)")
    train_end: UtcDatetime = Field(DEFAULT_TRAIN_END, description="end, exclusive (UTC)")
    holdout_end: UtcDatetime | None = Field(
        None, description="end of the scored-only holdout, exclusive (UTC); null = end of data"
    )
    sequence_length: int = Field(120, ge=2, le=10_000)
    model: Literal["ridge", "mlp"] = "ridge"
    alphas: list[float] = Field(
        default_factory=lambda: [1.0, 10.0, 100.0, 1000.0, 10000.0, 100000.0],
        min_length=1,
        description="L2 strengths tried (ridge: alpha; mlp: weight decay); best on validation",
    )
    hidden: list[int] = Field(default_factory=lambda: [32], description="mlp hidden layer sizes")
    max_iter: int = Field(200, ge=1, description="mlp epochs")
    residual: bool = Field(True, description="learn the change from the window's last close")
    return_weighted: bool = Field(
        True, description="weight the loss so it is the squared error of the return"
    )
    validation_fraction: float = Field(0.2, gt=0, lt=1, description="held-out tail of the period")
    seed: int = 0
    output_dir: Path = Field(Path("models"), description="where <name>.onnx and <name>.json go")
    name: str = Field("ml_basic_btcusdt_1h", pattern=r"^[A-Za-z0-9_.-]+$")

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.train_start is not None and self.train_end <= self.train_start:
            raise field_error("train_end", "must be after train.train_start")
        if self.holdout_end is not None and self.holdout_end <= self.train_end:
            raise field_error("holdout_end", "must be after train.train_end")
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
    cfg: TrainConfig, z: np.ndarray, y: np.ndarray, weight: np.ndarray, alpha: float
) -> Layers:
    """Fit one model on standardised features z; return its dense layers [(W, b), …]."""
    if cfg.model == "ridge":
        from sklearn.linear_model import Ridge

        ridge = Ridge(alpha=alpha, random_state=cfg.seed).fit(z, y, sample_weight=weight)
        return [(ridge.coef_.reshape(-1, 1), np.atleast_1d(ridge.intercept_))]
    from sklearn.neural_network import MLPRegressor

    mlp = MLPRegressor(
        hidden_layer_sizes=tuple(cfg.hidden),
        alpha=alpha,
        max_iter=cfg.max_iter,
        random_state=cfg.seed,
        early_stopping=False,  # the held-out tail is ours; sklearn's split would shuffle it in
    ).fit(z, y, sample_weight=weight)
    return [(w, b) for w, b in zip(mlp.coefs_, mlp.intercepts_, strict=True)]


def _fold_inputs(layers: Layers, proj: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> Layers:
    """Fold `z = (window @ proj - mean) / scale` into the first layer: the graph then takes
    the normalised window itself, which is the contract every ml_basic model shares."""
    w0, b0 = layers[0]
    folded = (proj / scale) @ w0
    bias = b0 - (mean / scale) @ w0
    return [(folded, bias), *layers[1:]]


def _forward(layers: Layers, x: np.ndarray) -> np.ndarray:
    """numpy reference of the exported graph (float32, like onnxruntime)."""
    h = x.astype(np.float32)
    for i, (w, b) in enumerate(layers):
        h = h @ w.astype(np.float32) + b.astype(np.float32)
        if i < len(layers) - 1:
            h = np.maximum(h, 0)
    return h.reshape(-1).astype(np.float64)


def train_model(bars: pd.DataFrame, cfg: TrainConfig) -> TrainResult:
    """Train on the bars before `cfg.train_end`; score (never fit or select on) the rest.

    `bars` may extend past train_end: those bars form the holdout. A window is a training
    row only if the bar it predicts is before train_end.
    """
    from atb import __version__
    from atb.ml.export import INPUT_NAME, OPSET, OUTPUT_NAME, dense_to_onnx

    length = cfg.sequence_length
    n_features = len(FEATURES)
    train_end = pd.Timestamp(cfg.train_end)
    data = bars[list(FEATURES)].to_numpy(dtype=np.float64)
    windows = normalised_windows(data, length)
    target, valid = next_close_target(data, windows)
    m = len(windows)
    # window k ends at bar k+L-1 and predicts bar k+L
    end_times = bars.index[length - 1 :]
    target_before_end = np.zeros(m, dtype=bool)
    target_before_end[: m - 1] = bars.index[length:] < train_end
    idx = np.flatnonzero(valid & target_before_end)
    holdout = np.flatnonzero(valid & (end_times >= train_end))
    min_samples = 20
    if idx.size < min_samples:
        raise ValueError(
            f"train: only {idx.size} training windows in the period; need >= {min_samples} "
            f"(sequence_length {length} + 1 bars each)"
        )
    x_all = windows.values.reshape(m, -1)
    last_close = windows.values[:, -1, CLOSE].astype(np.float64)
    close = data[length - 1 :, CLOSE]
    span = windows.close_max - windows.close_min
    split = round(idx.size * (1 - cfg.validation_fraction))
    split = min(max(split, 1), idx.size - 1)
    tr, va = idx[:split], idx[split:]
    res_index = (length - 1) * n_features + CLOSE
    base = last_close if cfg.residual else np.zeros_like(last_close)

    names, proj = projection(length)
    feats = x_all.astype(np.float64) @ proj
    mean = feats[tr].mean(axis=0)
    scale = feats[tr].std(axis=0)
    scale[~(scale > 0)] = 1.0  # a feature constant over training carries nothing: keep it 0
    z = (feats - mean) / scale
    # (span/close)² turns the squared error of a normalised close into that of a return.
    weight = (span / close) ** 2 if cfg.return_weighted else np.ones(m)
    weight = weight / weight[tr].mean()

    grid: list[dict[str, float]] = []
    best: tuple[float, float, Layers] | None = None
    for alpha in cfg.alphas:
        layers = _fold_inputs(
            _fit(cfg, z[tr], target[tr] - base[tr], weight[tr], alpha), proj, mean, scale
        )
        pred_va = _forward(layers, x_all[va]) + base[va]
        mse = float(np.average((pred_va - target[va]) ** 2, weights=weight[va]))
        grid.append({"alpha": alpha, "val_mse": mse})
        if best is None or mse < best[0]:
            best = (mse, alpha, layers)
    assert best is not None
    _, alpha, layers = best
    feature_weights: dict[str, float] | None = None
    if cfg.model == "ridge":
        # the standardised-feature coefficients, for a reader of the metadata
        coef = _fit(cfg, z[tr], target[tr] - base[tr], weight[tr], alpha)[0][0].reshape(-1)
        feature_weights = {n: float(c) for n, c in zip(names, coef, strict=True)}

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
        doc=f"atb ml_basic next-close model ({cfg.model} on engineered features, alpha={alpha:g})",
    )

    def returns(rows: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(predicted r, realised r) of `rows`: what the strategy trades on, and what came."""
        lo = windows.close_min[rows]
        price = lo + pred * span[rows]
        nxt = data[rows + length, CLOSE]
        return (price - close[rows]) / close[rows], (nxt - close[rows]) / close[rows]

    pred_tr, pred_va = predict(tr), predict(va)
    metrics: dict[str, Any] = {
        "train_mse": float(np.mean((pred_tr - target[tr]) ** 2)),
        "val_mse": float(np.mean((pred_va - target[va]) ** 2)),
        "val_mse_no_change_baseline": float(np.mean((last_close[va] - target[va]) ** 2)),
    }
    metrics["val_skill_vs_baseline"] = (
        1.0 - metrics["val_mse"] / metrics["val_mse_no_change_baseline"]
        if metrics["val_mse_no_change_baseline"] > 0
        else 0.0
    )
    validation = forecast_scores(*returns(va, pred_va))
    metrics["val_directional_accuracy"] = validation["directional_accuracy"]
    metrics["validation_returns"] = validation
    metrics["selection"] = grid

    fitted = np.concatenate([tr, va])
    r_fit, _ = returns(fitted, np.concatenate([pred_tr, pred_va]))
    abs_r = np.abs(r_fit)
    calibration = {
        "what": "|r| = |predicted - close| / close of the shipped model on its training windows",
        "windows": int(fitted.size),
        "abs_r_quantiles": {
            quantile_key(q): float(np.quantile(abs_r, q)) for q in CALIBRATION_QUANTILES
        },
    }

    holdout_block: dict[str, Any] | None = None
    if holdout.size:
        scored = holdout[holdout < m - 1]  # the last window has no next bar
        holdout_block = {
            "start": end_times[int(holdout[0])].isoformat(),
            "end_exclusive": (
                pd.Timestamp(cfg.holdout_end).isoformat() if cfg.holdout_end is not None else None
            ),
            "last_bar": bars.index[-1].isoformat(),
            "note": "scored only: never used to fit or to choose anything",
            **forecast_scores(*returns(scored, predict(scored))),
        }

    train_bars = bars.loc[bars.index < train_end]
    times = train_bars.index
    metadata: dict[str, Any] = {
        "model_id": model_id_of(onnx_bytes),
        "name": cfg.name,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "atb_version": __version__,
        "framework": "scikit-learn → hand-built ONNX (atb.ml.export)",
        "model": {
            "kind": cfg.model,
            "inputs": "engineered",
            "alpha": alpha,
            "hidden": cfg.hidden if cfg.model == "mlp" else [],
            "residual": cfg.residual,
            "return_weighted": cfg.return_weighted,
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
        "engineered_features": names,
        "feature_weights": feature_weights,
        "normalisation": (
            "per window and feature: (x - min) / (max - min) over the window; 0.5 where max = min"
        ),
        "target": "next bar's close, normalised with the window's close min/max",
        "training_period": {
            "start": times[0].isoformat(),
            "end_exclusive": cfg.train_end.isoformat(),
            "last_bar": times[-1].isoformat(),
            "bars": len(train_bars),
            "windows": int(idx.size),
            "train_windows": int(tr.size),
            "validation_windows": int(va.size),
            "validation_start": end_times[int(va[0])].isoformat(),
            "timeframe": cfg.timeframe,
            "source": str(cfg.data_path) if cfg.data_path else "bundled BTCUSDT-1h.csv.gz",
        },
        "metrics": metrics,
        "calibration": calibration,
        "holdout": holdout_block,
        "feature_stats": feature_statistics(train_bars, windows.values[idx, -1, :]),
    }
    return TrainResult(onnx_bytes, metadata)


def forecast_scores(r_pred: np.ndarray, r_true: np.ndarray) -> dict[str, Any]:
    """A forecast of returns next to the naive forecasts it must beat.

    MSE against "no change" (r = 0); directional accuracy, over bars whose close moved,
    against a coin flip (50 %) and against always saying "up" (the share of up bars), with
    the coin flip's z-score so a reader can tell an edge from noise.
    """
    mse = float(np.mean((r_pred - r_true) ** 2))
    mse_none = float(np.mean(r_true**2))
    moved = r_true != 0
    n = int(moved.sum())
    hit = float(np.mean(np.sign(r_pred[moved]) == np.sign(r_true[moved]))) if n else float("nan")
    up = float(np.mean(r_true[moved] > 0)) if n else float("nan")
    return {
        "windows": int(r_true.size),
        "mse": mse,
        "mse_no_change": mse_none,
        "skill_vs_no_change": 1.0 - mse / mse_none if mse_none > 0 else 0.0,
        "directional_accuracy": hit,
        "directional_n": n,
        "coin_flip_accuracy": 0.5,
        "always_up_accuracy": up,
        "z_vs_coin_flip": (hit - 0.5) / (0.5 / np.sqrt(n)) if n else float("nan"),
    }


class TrainModel(Node[TrainConfig]):
    """The `train` node: the main node of `mode=train`; run() trains and writes the files."""

    def load_bars(self) -> pd.DataFrame:
        """Bars from train_start to holdout_end: training period plus the scored holdout."""
        from atb.data.loader import load_bars, select_period

        cfg = self.config
        bars = load_bars(cfg.data_path, cfg.timeframe)
        start = pd.Timestamp(cfg.train_start) if cfg.train_start else None
        end = pd.Timestamp(cfg.holdout_end) if cfg.holdout_end else None
        return select_period(bars, start, end)

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
        meta = result.metadata
        m = meta["metrics"]
        hold = meta["holdout"] or {}
        log_ml_event(
            "model_trained",
            model_id=result.model_id,
            path=str(onnx_path),
            metadata=str(json_path),
            train_start=meta["training_period"]["start"],
            train_end=meta["training_period"]["end_exclusive"],
            val_mse=round(m["val_mse"], 6),
            val_mse_baseline=round(m["val_mse_no_change_baseline"], 6),
            val_directional_accuracy=round(m["val_directional_accuracy"], 4),
            abs_r_p90=meta["calibration"]["abs_r_quantiles"]["p90"],
            holdout_skill_vs_no_change=_round(hold.get("skill_vs_no_change"), 5),
            holdout_directional_accuracy=_round(hold.get("directional_accuracy"), 4),
            holdout_always_up_accuracy=_round(hold.get("always_up_accuracy"), 4),
        )
        return {"model_id": result.model_id, "path": str(onnx_path), "metrics": m}


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def write_model(result: TrainResult, output_dir: Path, name: str) -> tuple[Path, Path]:
    output_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = output_dir / f"{name}.onnx"
    json_path = output_dir / f"{name}.json"
    onnx_path.write_bytes(result.onnx)
    json_path.write_text(json.dumps(result.metadata, indent=2) + "\n")
    return onnx_path, json_path
