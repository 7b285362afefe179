"""Write dense models (linear or ReLU MLP) as a small hand-built ONNX graph.

Building the graph with `onnx.helper` keeps training dependency-light (no torch, no
skl2onnx) and the file tiny. Graph: input [batch, L, F] → Reshape [batch, L·F] →
(MatMul → Add → Relu)* → MatMul → Add → output [batch, 1], plus an optional residual
that adds one input feature (the window's last normalised close) to the output, so a
model can learn the change from the last close instead of the close itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

OPSET = 17
# IR 8 / opset 17 load in every onnxruntime since 1.13, so the shipped model does not
# force users onto the newest runtime.
IR_VERSION = 8
INPUT_NAME = "window"
OUTPUT_NAME = "next_close_norm"


def dense_to_onnx(
    layers: Sequence[tuple[np.ndarray, np.ndarray]],
    sequence_length: int,
    n_features: int,
    residual_index: int | None = None,
    doc: str = "",
) -> bytes:
    """Serialise `layers` [(W (in, out), b (out,)), …] applied to the flattened window.

    ReLU follows every layer but the last; the last layer must have one output.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if not layers:
        raise ValueError("at least one layer is required")
    flat = sequence_length * n_features
    if layers[0][0].shape[0] != flat:
        raise ValueError(f"first layer takes {layers[0][0].shape[0]} inputs, window has {flat}")
    if layers[-1][0].shape[1] != 1:
        raise ValueError("last layer must have exactly one output")

    inits = [numpy_helper.from_array(np.array([-1, flat], dtype=np.int64), "flat_shape")]
    nodes = [helper.make_node("Reshape", [INPUT_NAME, "flat_shape"], ["x0"], name="flatten")]
    current = "x0"
    for i, (w, b) in enumerate(layers):
        w32 = np.ascontiguousarray(w, dtype=np.float32)
        b32 = np.ascontiguousarray(np.reshape(b, (-1,)), dtype=np.float32)
        inits += [numpy_helper.from_array(w32, f"W{i}"), numpy_helper.from_array(b32, f"b{i}")]
        nodes.append(helper.make_node("MatMul", [current, f"W{i}"], [f"mm{i}"], name=f"matmul{i}"))
        last = i == len(layers) - 1
        added = "dense_out" if last else f"z{i}"
        nodes.append(helper.make_node("Add", [f"mm{i}", f"b{i}"], [added], name=f"add{i}"))
        if not last:
            nodes.append(helper.make_node("Relu", [added], [f"x{i + 1}"], name=f"relu{i}"))
            current = f"x{i + 1}"
    if residual_index is None:
        nodes.append(helper.make_node("Identity", ["dense_out"], [OUTPUT_NAME], name="out"))
    else:
        inits.append(numpy_helper.from_array(np.array([residual_index], np.int64), "res_idx"))
        nodes.append(
            helper.make_node("Gather", ["x0", "res_idx"], ["residual"], axis=1, name="last_close")
        )
        nodes.append(helper.make_node("Add", ["dense_out", "residual"], [OUTPUT_NAME], name="res"))

    graph = helper.make_graph(
        nodes,
        "atb_ml_basic",
        [
            helper.make_tensor_value_info(
                INPUT_NAME, TensorProto.FLOAT, ["batch", sequence_length, n_features]
            )
        ],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", 1])],
        initializer=inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="atb",
        doc_string=doc,
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())
