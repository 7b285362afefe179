"""Training: deterministic, 2023-only by default, and the exported ONNX equals the fit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from atb.ml.features import FEATURES, normalised_windows
from atb.ml.model import OnnxModel, model_id_of
from atb.ml.train import TrainConfig, TrainModel, train_model, write_model
from atb.runtime.context import RunContext

TARGET = "atb.ml.train.TrainModel"
SMALL = {"sequence_length": 24, "alphas": [1.0, 100.0]}


def config(**kw: Any) -> TrainConfig:
    return TrainConfig.model_validate({"_target_": TARGET, **kw})


@pytest.fixture(scope="module")
def slice_2023() -> pd.DataFrame:
    from atb.data.loader import load_bars

    bars: pd.DataFrame = cast(pd.DataFrame, load_bars())
    return bars.loc["2023-06-01":"2023-06-30"]  # ~720 bars: trains in milliseconds


def test_ridge_is_deterministic_and_exported_exactly(
    slice_2023: pd.DataFrame, tmp_path: Path
) -> None:
    cfg = config(**SMALL)
    a = train_model(slice_2023, cfg)
    b = train_model(slice_2023, cfg)
    assert a.onnx == b.onnx and a.model_id == b.model_id == model_id_of(a.onnx)
    meta = a.metadata
    assert meta["model"]["alpha"] in (1.0, 100.0)
    assert [g["alpha"] for g in meta["metrics"]["selection"]] == [1.0, 100.0]
    assert meta["features"] == list(FEATURES) and meta["sequence_length"] == 24

    onnx_path, json_path = write_model(a, tmp_path, "m")
    assert json.loads(json_path.read_text())["model_id"] == a.model_id
    model = OnnxModel.load(onnx_path, 24, len(FEATURES))
    data = slice_2023[list(FEATURES)].to_numpy()
    w = normalised_windows(data, 24)
    pred = model.predict(w.values)
    # the residual is folded into the weights: the output is a near-"no change" forecast
    last = w.values[:, -1, 3].astype(np.float64)
    assert np.abs(pred - last).mean() < 0.5
    # the metadata's validation MSE is the exported model's, recomputed from scratch
    nxt = data[24:, 3]
    lo, hi = w.close_min[:-1], w.close_max[:-1]
    target = (nxt - lo) / (hi - lo)
    n_val = meta["training_period"]["validation_windows"]
    val_mse = float(np.mean((pred[:-1][-n_val:] - target[-n_val:]) ** 2))
    assert val_mse == pytest.approx(meta["metrics"]["val_mse"], rel=1e-4)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_mlp_exports_with_residual_gather(slice_2023: pd.DataFrame) -> None:
    cfg = config(model="mlp", hidden=[4], max_iter=20, alphas=[0.001], sequence_length=24)
    a = train_model(slice_2023, cfg)
    b = train_model(slice_2023, cfg)
    assert a.onnx == b.onnx  # fixed seed: same bytes
    assert a.metadata["model"]["parameters"] == 24 * 5 * 4 + 4 + 4 + 1
    import onnx

    ops = [n.op_type for n in onnx.load_from_string(a.onnx).graph.node]
    assert ops.count("Relu") == 1 and "Gather" in ops


def test_too_little_data(slice_2023: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="training windows"):
        train_model(slice_2023.iloc[:30], config(**SMALL))


def test_config_checks() -> None:
    from atb.config.base import format_validation_error

    with pytest.raises(ValidationError) as info:
        config(train_start="2024-02-01", train_end="2024-01-01")
    assert format_validation_error(info.value, "train") == [
        "train.train_end: must be after train.train_start"
    ]
    with pytest.raises(ValidationError, match="alpha"):
        config(alphas=[0.0])
    assert config().train_end == pd.Timestamp("2024-01-01", tz="UTC")


def test_node_trains_only_before_train_end(tmp_path: Path) -> None:
    cfg = config(**SMALL, train_start="2023-12-01", output_dir=tmp_path / "out", name="small")
    result = TrainModel(cfg, RunContext(mode="train")).run()
    meta = json.loads((tmp_path / "out" / "small.json").read_text())
    assert meta["model_id"] == result["model_id"]
    assert meta["training_period"]["start"].startswith("2023-12-01")
    assert meta["training_period"]["last_bar"].startswith("2023-12-31T23:00")
    assert (tmp_path / "out" / "small.onnx").is_file()


@pytest.mark.e2e
def test_python_m_atb_mode_train(tmp_path: Path) -> None:
    env = {**os.environ, "ATB_OUTPUT_DIR": str(tmp_path / "outputs")}
    proc = subprocess.run(
        [
            sys.executable, "-m", "atb", "mode=train", "train.train_start=2023-11-01",
            "train.alphas=[10.0]", f"train.output_dir={tmp_path / 'models'}",
            f"db.url=sqlite:///{tmp_path / 'atb.db'}",
        ],
        capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    meta = json.loads((tmp_path / "models" / "ml_basic_btcusdt_1h.json").read_text())
    assert meta["training_period"]["end_exclusive"].startswith("2024-01-01")
    assert "model_trained" in proc.stdout + proc.stderr


def test_shipped_model_is_what_mode_train_produces() -> None:
    """The shipped file must come from the current training code and default settings.

    Weights are compared numerically (not byte for byte) so a different BLAS cannot fail it;
    on failure, regenerate: python -m atb mode=train train.output_dir=atb/ml/models
    """
    import onnx
    from onnx import numpy_helper

    from atb.ml.model import DEFAULT_MODEL

    shipped = json.loads(DEFAULT_MODEL.with_suffix(".json").read_text())
    # refit only the alpha the default grid selected (the selection itself is in metadata)
    node = TrainModel(config(alphas=[shipped["model"]["alpha"]]), RunContext(mode="train"))
    fresh = train_model(node.load_bars(), node.config)
    grid = [g["alpha"] for g in shipped["metrics"]["selection"]]
    assert grid == TrainConfig.model_fields["alphas"].get_default(call_default_factory=True)
    assert fresh.metadata["model"] == shipped["model"]
    assert fresh.metadata["training_period"] == shipped["training_period"]

    def weights(model: Any) -> dict[str, np.ndarray]:
        return {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}

    ours = weights(onnx.load_from_string(fresh.onnx))
    theirs = weights(onnx.load(str(DEFAULT_MODEL)))
    assert ours.keys() == theirs.keys()
    for name, value in ours.items():
        np.testing.assert_allclose(value, theirs[name], rtol=1e-4, atol=1e-6, err_msg=name)


@pytest.fixture(scope="module")
def around_train_end() -> pd.DataFrame:
    from atb.data.loader import load_bars

    bars: pd.DataFrame = cast(pd.DataFrame, load_bars())
    return bars.loc["2023-11-01":"2024-01-31"]  # 2 months to fit, January as the holdout


def test_holdout_bars_never_reach_the_fit(around_train_end: pd.DataFrame) -> None:
    """Scrambling every bar from train_end on changes the holdout scores, not the model."""
    cfg = config(**SMALL)
    a = train_model(around_train_end, cfg)
    scrambled = around_train_end.copy()
    after = scrambled.index >= pd.Timestamp("2024-01-01", tz="UTC")
    noise = np.random.default_rng(0).uniform(0.9, 1.1, (int(after.sum()), 1))
    scrambled.loc[after, list(FEATURES)] = scrambled.loc[after, list(FEATURES)].to_numpy() * noise
    b = train_model(scrambled, cfg)
    assert a.onnx == b.onnx
    assert a.metadata["calibration"] == b.metadata["calibration"]
    assert a.metadata["holdout"] != b.metadata["holdout"]
    assert a.metadata["training_period"]["last_bar"].startswith("2023-12-31T23:00")


def test_holdout_and_calibration_are_the_exported_models(
    around_train_end: pd.DataFrame, tmp_path: Path
) -> None:
    """The metadata's holdout scores and |r| quantiles, recomputed through onnxruntime."""
    cfg = config(**SMALL)
    result = train_model(around_train_end, cfg)
    meta = result.metadata
    model = OnnxModel.load(write_model(result, tmp_path, "m")[0], 24, len(FEATURES))
    data = around_train_end[list(FEATURES)].to_numpy()
    w = normalised_windows(data, 24)
    price = w.close_min + model.predict(w.values) * (w.close_max - w.close_min)
    close = data[23:, 3]
    r = (price - close) / close
    ends = around_train_end.index[23:]
    hold = np.flatnonzero(ends >= pd.Timestamp("2024-01-01", tz="UTC"))[:-1]
    realised = (data[hold + 24, 3] - close[hold]) / close[hold]
    h = meta["holdout"]
    assert h["start"].startswith("2024-01-01T00:00") and h["windows"] == hold.size
    moved = realised != 0
    hit = np.mean(np.sign(r[hold][moved]) == np.sign(realised[moved]))
    assert h["directional_accuracy"] == pytest.approx(hit)
    assert h["always_up_accuracy"] == pytest.approx(np.mean(realised[moved] > 0))
    assert h["mse"] == pytest.approx(np.mean((r[hold] - realised) ** 2), rel=1e-4)
    assert h["mse_no_change"] == pytest.approx(np.mean(realised**2))
    assert h["coin_flip_accuracy"] == 0.5
    fitted = np.arange(meta["training_period"]["windows"])  # the first windows, in order
    p90 = meta["calibration"]["abs_r_quantiles"]["p90"]
    assert p90 == pytest.approx(np.quantile(np.abs(r[fitted]), 0.9), rel=1e-4)
    assert meta["engineered_features"][0] == "return_1"
    assert set(meta["feature_weights"]) == set(meta["engineered_features"])
