"""Fixtures for the ml tests: tiny ONNX models with known weights, bundled data."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import numpy as np
import pandas as pd
import pytest
from ml_helpers import F, L, WriteModel

from atb.ml.export import dense_to_onnx


@pytest.fixture
def write_model(tmp_path: Path) -> WriteModel:
    """Write a dense ONNX model (weights given or seeded-random) and return its path."""
    counter = iter(range(1000))

    def write(
        layers: list[tuple[np.ndarray, np.ndarray]] | None = None,
        sequence_length: int = L,
        residual_index: int | None = None,
        name: str | None = None,
    ) -> Path:
        if layers is None:
            rng = np.random.default_rng(0)
            layers = [(rng.normal(0, 0.01, (sequence_length * F, 1)), np.array([0.5]))]
        path = tmp_path / (name or f"model{next(counter)}.onnx")
        path.write_bytes(dense_to_onnx(layers, sequence_length, F, residual_index))
        return path

    return write


@pytest.fixture(scope="session")
def bundled() -> pd.DataFrame:
    from atb.data.loader import load_bars

    return cast(pd.DataFrame, load_bars())
