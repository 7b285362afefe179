"""Engineered inputs of the trained model: returns, ranges and volume changes of the window.

Every feature is a linear function of the normalised 120 × 5 window (differences and means
of its rows), so the whole set is one projection matrix: training computes features as
`window @ P`, and the export folds P into the model's first layer. The ONNX input stays
the plain normalised window, so the live loop, the backtest and any user-supplied model
share one contract, and nothing about the features can drift between training and use.

Units are those of the window normalisation (fractions of the window's range), which is
what makes them comparable between 2023 and 2024 price levels.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from atb.ml.features import FEATURES

_O, _H, _LO, _C, _V = (FEATURES.index(f) for f in ("open", "high", "low", "close", "volume"))

Feature = Callable[[np.ndarray], np.ndarray]  # (m, L, F) -> (m,)


def _ret(k: int) -> Feature:
    return lambda w: w[:, -1, _C] - w[:, -1 - k, _C]


def _range(k: int) -> Feature:
    return lambda w: (w[:, -k:, _H] - w[:, -k:, _LO]).mean(axis=1)


def _ma_gap(n: int) -> Feature:
    return lambda w: w[:, -n:, _C].mean(axis=1) - w[:, -1, _C]


def _volume_change(k: int, ref: int) -> Feature:
    return lambda w: w[:, -k:, _V].mean(axis=1) - w[:, -ref:, _V].mean(axis=1)


def feature_set(sequence_length: int) -> dict[str, Feature]:
    """Named features for windows of `sequence_length` bars (lags longer than it are dropped)."""
    length = sequence_length
    out: dict[str, Feature] = {}
    for k in sorted({k for k in (1, 2, 3, 6, 12, 24, 48, length - 1) if 1 <= k < length}):
        out[f"return_{k}"] = _ret(k)
    for k in sorted({k for k in (1, 3, 12, 24) if k <= length}):
        out[f"range_{k}"] = _range(k)
    out["body_1"] = lambda w: w[:, -1, _C] - w[:, -1, _O]
    out["upper_wick_1"] = lambda w: w[:, -1, _H] - w[:, -1, _C]
    out["lower_wick_1"] = lambda w: w[:, -1, _C] - w[:, -1, _LO]
    for n in sorted({n for n in (5, 20, 60, length) if 2 <= n <= length}):
        out[f"ma_gap_{n}"] = _ma_gap(n)
    ref = min(48, length)
    for k in sorted({k for k in (1, 3, 12) if k < ref}):
        out[f"volume_change_{k}"] = _volume_change(k, ref)
    out["volume_1"] = lambda w: w[:, -1, _V]
    out["close_in_range"] = lambda w: w[:, -1, _C]
    return out


def projection(sequence_length: int) -> tuple[list[str], np.ndarray]:
    """(names, P) with P shaped (L·F, n_features): features = flattened_window @ P.

    Built by applying each feature to the unit basis of the flattened window, which is
    exact because every feature is linear without a constant term.
    """
    n_in = sequence_length * len(FEATURES)
    basis = np.eye(n_in).reshape(n_in, sequence_length, len(FEATURES))
    features = feature_set(sequence_length)
    matrix = np.column_stack([fn(basis) for fn in features.values()])
    return list(features), matrix
