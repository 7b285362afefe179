"""ONNX model loading and inference: correct numbers, and clear errors for bad files."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from ml_helpers import F, L, WriteModel
from onnx import TensorProto, helper
from pydantic import ValidationError

from atb.ml.model import DEFAULT_MODEL, ModelError, OnnxModel
from atb.runtime.context import RunContext
from atb.strategies.ml_basic import MlBasic, MlBasicConfig


def windows(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, (n, L, F)).astype(np.float32)


def numpy_forward(layers: list[tuple[np.ndarray, np.ndarray]], x: np.ndarray) -> np.ndarray:
    h = x.reshape(len(x), -1).astype(np.float64)
    for i, (w, b) in enumerate(layers):
        h = h @ w + b
        if i < len(layers) - 1:
            h = np.maximum(h, 0)
    return h.reshape(-1)


def test_linear_matches_numpy(write_model: WriteModel) -> None:
    rng = np.random.default_rng(3)
    layers = [(rng.normal(0, 0.05, (L * F, 1)), np.array([0.25]))]
    model = OnnxModel.load(write_model(layers), L, F, batch_size=7)  # several uneven batches
    x = windows(50)
    np.testing.assert_allclose(model.predict(x), numpy_forward(layers, x), rtol=1e-5, atol=1e-5)


def test_mlp_with_residual_matches_numpy(write_model: WriteModel) -> None:
    rng = np.random.default_rng(4)
    layers = [
        (rng.normal(0, 0.05, (L * F, 8)), rng.normal(0, 0.1, 8)),
        (rng.normal(0, 0.3, (8, 1)), np.array([0.1])),
    ]
    res = (L - 1) * F + 3
    model = OnnxModel.load(write_model(layers, residual_index=res), L, F)
    x = windows(64)
    expected = numpy_forward(layers, x) + x.reshape(64, -1)[:, res]
    np.testing.assert_allclose(model.predict(x), expected, rtol=1e-5, atol=1e-5)


def test_empty_input(write_model: WriteModel) -> None:
    model = OnnxModel.load(write_model(), L, F)
    assert model.predict(np.empty((0, L, F), np.float32)).shape == (0,)


def test_model_id_is_sha256_prefix(write_model: WriteModel) -> None:
    path = write_model()
    model = OnnxModel.load(path, L, F)
    assert model.model_id == hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def _graph_model(
    path: Path, in_shape: list[str | int], out_shape: list[str | int], op: str
) -> Path:
    """A one-node model with arbitrary declared shapes (e.g. a fixed batch)."""
    nodes = [helper.make_node(op, ["x"], ["y"], axes=[1, 2], keepdims=0)]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    return path


def test_fixed_batch_model_is_padded(tmp_path: Path) -> None:
    # ReduceMean over the window: a model exported with batch fixed at 4
    path = _graph_model(tmp_path / "fixed.onnx", [4, L, F], [4], "ReduceMean")
    model = OnnxModel.load(path, L, F)
    x = windows(10)
    np.testing.assert_allclose(model.predict(x), x.mean(axis=(1, 2)), rtol=1e-5)


# --- bad model files -------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"strategy\.model_path: model file .*nope\.onnx.* exist"):
        OnnxModel.load(tmp_path / "nope.onnx", L, F)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="does not exist"):
        MlBasicConfig.model_validate(
            {"_target_": "atb.strategies.ml_basic.MlBasic", "model_path": tmp_path / "x.onnx"}
        )


def test_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.onnx"
    path.write_bytes(b"\x08\x07this is not a protobuf \xff\xfe" * 10)
    with pytest.raises(ModelError, match=r"strategy\.model_path: .*corrupt\.onnx.* not a loadable"):
        OnnxModel.load(path, L, F)


def test_truncated_file(write_model: WriteModel, tmp_path: Path) -> None:
    good = write_model().read_bytes()
    path = tmp_path / "truncated.onnx"
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(ModelError, match="not a loadable ONNX model"):
        OnnxModel.load(path, L, F)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.onnx"
    path.write_bytes(b"")
    with pytest.raises(ModelError, match="not a loadable ONNX model"):
        OnnxModel.load(path, L, F)


def test_directory_is_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="is not a file"):
        OnnxModel.load(tmp_path, L, F)


def test_wrong_sequence_length(write_model: WriteModel) -> None:
    path = write_model(sequence_length=60)
    with pytest.raises(ModelError) as info:
        OnnxModel.load(path, L, F)
    msg = str(info.value)
    assert msg.startswith("strategy.model_path: ")
    assert "[batch, 60, 5]" in msg and "[batch, 120, 5]" in msg
    assert "strategy.sequence_length=120" in msg


def test_flat_input_rank_rejected(tmp_path: Path) -> None:
    # a model taking the flattened [batch, 600] window does not fit the contract
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["x"], ["y"], axes=[1], keepdims=0)],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", L * F])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path / "flat.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(ModelError, match=r"shaped \[batch, 600\].*\[batch, 120, 5\]"):
        OnnxModel.load(path, L, F)


def test_wrong_output_shape(tmp_path: Path) -> None:
    # ReduceMean over the time axis only: one value per feature, not one per window
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["x"], ["y"], axes=[1], keepdims=0)],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", L, F])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", F])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path / "out.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(ModelError, match=r"output 'y' is shaped \[batch, 5\]"):
        OnnxModel.load(path, L, F)


def test_two_inputs_rejected(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["y"])],
        "g",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, ["batch", L, F]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, ["batch", L, F]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", L, F])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path / "two.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(ModelError, match="has 2 inputs"):
        OnnxModel.load(path, L, F)


def test_metadata_sequence_length_mismatch(write_model: WriteModel) -> None:
    path = write_model()
    path.with_suffix(".json").write_text(json.dumps({"sequence_length": 60}))
    cfg = MlBasicConfig.model_validate(
        {"_target_": "atb.strategies.ml_basic.MlBasic", "model_path": path}
    )
    with pytest.raises(ModelError, match="trained on 60-bar windows"):
        MlBasic(cfg, RunContext()).start()


def test_corrupt_metadata(write_model: WriteModel) -> None:
    path = write_model()
    path.with_suffix(".json").write_text("{not json")
    with pytest.raises(ModelError, match="cannot read model metadata"):
        OnnxModel.load(path, L, F)


def test_bad_model_fails_the_run_clearly(tmp_path: Path) -> None:
    """Through the runner: the error names the node, the phase and strategy.model_path."""
    from atb.config.validate import validate_config
    from atb.runtime.errors import NodeError
    from atb.runtime.runner import Runner

    path = tmp_path / "corrupt.onnx"
    path.write_bytes(b"garbage")
    validated = validate_config(
        {
            "mode": "backtest",
            "runner": {"main": "strategy", "write_outputs": False},
            "strategy": {"_target_": "atb.strategies.ml_basic.MlBasic", "model_path": str(path)},
        }
    )
    with pytest.raises(NodeError) as info:
        Runner(validated, RunContext()).run()
    assert "node 'strategy' failed to start" in str(info.value)
    assert "strategy.model_path:" in str(info.value)


# --- the shipped model -----------------------------------------------------------------


def test_shipped_model_and_metadata() -> None:
    assert DEFAULT_MODEL.stat().st_size < 2_000_000
    model = OnnxModel.load(None, L, F)
    meta = model.metadata
    assert meta["model_id"] == model.model_id
    assert meta["sequence_length"] == L
    assert meta["features"] == ["open", "high", "low", "close", "volume"]
    period = meta["training_period"]
    # trained on 2023 only: the default backtest (from 2024-01-01) has no look-ahead
    assert period["end_exclusive"].startswith("2024-01-01")
    assert period["last_bar"] < "2024-01-01"
    for key in ("val_mse", "val_mse_no_change_baseline", "val_directional_accuracy"):
        assert np.isfinite(meta["metrics"][key])
    assert set(meta["feature_stats"]["raw"]) == set(meta["features"])
    onnx.checker.check_model(onnx.load(str(DEFAULT_MODEL)))


def test_output_size_checked_at_run_time(tmp_path: Path) -> None:
    # Flattening the whole batch gives one output dim that no static check can pin down:
    # only the real result shows it is not one value per window.
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", L, F])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n"])],
        initializer=[helper.make_tensor("shape", TensorProto.INT64, [1], [-1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path / "sym.onnx"
    path.write_bytes(model.SerializeToString())
    loaded = OnnxModel.load(path, L, F)
    with pytest.raises(ModelError, match="expected one value per window"):
        loaded.predict(windows(3))
