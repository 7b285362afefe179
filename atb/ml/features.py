"""The model input contract: the last `sequence_length` candles, min-max normalised per window.

Each window is normalised on its own (per feature, over that window only), so a model
trained on 2023 prices sees the same value range on 2024 prices; a feature that is flat
over the window (max = min) becomes 0.5 rather than a division by zero. Prediction and
training share these functions, which is what keeps the two from drifting apart.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

FEATURES: tuple[str, ...] = ("open", "high", "low", "close", "volume")
CLOSE = FEATURES.index("close")
FLAT_VALUE = 0.5


@dataclass(frozen=True)
class Windows:
    """Normalised windows plus the per-window ranges needed to map predictions back.

    values[k] is the window ending at bar k + sequence_length - 1, shaped
    (sequence_length, n_features), float32 because that is what the model consumes.
    """

    values: np.ndarray  # (m, L, F) float32
    minimum: np.ndarray  # (m, F) float64
    maximum: np.ndarray  # (m, F) float64

    def __len__(self) -> int:
        return int(self.values.shape[0])

    @property
    def close_min(self) -> np.ndarray:
        return self.minimum[:, CLOSE]

    @property
    def close_max(self) -> np.ndarray:
        return self.maximum[:, CLOSE]


def normalised_windows(data: np.ndarray, sequence_length: int) -> Windows:
    """All complete windows of `data` (n, F), each min-max normalised per feature.

    Materialises every window (m × L × F float32): fine for a year of hourly bars and for
    training; long histories go through `iter_normalised_windows` instead.
    """
    m = _window_count(data, sequence_length)
    return _normalise_range(data, sequence_length, 0, max(m, 0))


def iter_normalised_windows(
    data: np.ndarray, sequence_length: int, batch_size: int
) -> Iterator[tuple[int, Windows]]:
    """(first window index, Windows) for consecutive batches of at most `batch_size` windows.

    Each window is normalised on its own, so a batch holds exactly the values the
    all-at-once call gives for those windows; peak memory is one batch, not the history
    (1M one-minute bars × 120 × 5 float32 would be 2.4 GB at once).
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    m = _window_count(data, sequence_length)
    for start in range(0, m, batch_size):
        yield start, _normalise_range(data, sequence_length, start, min(m, start + batch_size))


def _window_count(data: np.ndarray, sequence_length: int) -> int:
    if data.ndim != 2:
        raise ValueError(f"expected a 2-D (bars, features) array, got shape {data.shape}")
    if sequence_length < 1:
        raise ValueError("sequence_length must be >= 1")
    return int(data.shape[0] - sequence_length + 1)


def _normalise_range(data: np.ndarray, sequence_length: int, start: int, stop: int) -> Windows:
    """Windows start..stop-1 (window k covers bars k..k+L-1), normalised.

    Cost is what a batch must cost: window min/max in O(bars) (`sliding_extreme`), then
    per feature one float64 subtraction into a small scratch buffer and one scaled,
    rounding write into the [m, L, F] float32 output; no full-size temporaries, no
    transpose pass.
    """
    n_features = data.shape[1]
    length = sequence_length
    m = stop - start
    if m <= 0:
        empty = np.empty((0, n_features))
        return Windows(np.empty((0, length, n_features), np.float32), empty, empty)
    columns = np.ascontiguousarray(data[start : stop + length - 1].T, dtype=np.float64)
    minimum = sliding_extreme(columns, length, np.minimum)  # (F, m)
    maximum = sliding_extreme(columns, length, np.maximum)
    span = maximum - minimum
    flat = ~(span > 0)  # NaN spans count as flat too: no inf scale from a bad candle
    scale = np.where(flat, 0.0, 1.0 / np.where(flat, 1.0, span))
    out = np.empty((m, length, n_features), dtype=np.float32)
    scratch = np.empty((m, length), dtype=np.float64)
    for f in range(n_features):
        windows = sliding_window_view(columns[f], length)  # (m, L) view, rows contiguous
        np.subtract(windows, minimum[f][:, None], out=scratch)
        np.multiply(scratch, scale[f][:, None], out=out[:, :, f], casting="unsafe")
        if flat[f].any():
            out[flat[f], :, f] = FLAT_VALUE
    return Windows(out, minimum.T.copy(), maximum.T.copy())


def sliding_extreme(columns: np.ndarray, length: int, op: np.ufunc) -> np.ndarray:
    """Min (op=np.minimum) or max of every `length`-long window along axis 1, in O(n).

    van Herk / Gil-Werman: cut each row into blocks of `length`; a window spans at most
    two blocks, so its extreme is op(suffix-extreme of its start in the first block,
    prefix-extreme of its end in the second). Exact (no arithmetic), and NaN propagates
    only to the windows that contain it, like a direct reduce.
    """
    rows, n = columns.shape
    m = n - length + 1
    blocks = -(-n // length)
    fill = np.inf if op is np.minimum else -np.inf
    padded = np.full((rows, blocks * length), fill)
    padded[:, :n] = columns
    shaped = padded.reshape(rows, blocks, length)
    prefix = op.accumulate(shaped, axis=2).reshape(rows, -1)
    suffix = op.accumulate(shaped[:, :, ::-1], axis=2)[:, :, ::-1].reshape(rows, -1)
    return np.asarray(op(suffix[:, :m], prefix[:, length - 1 : length - 1 + m]))


def denormalise_close(pred: np.ndarray, windows: Windows) -> np.ndarray:
    """Map normalised close predictions back to prices with each window's close range.

    A flat close window maps every prediction to that flat price, so r = 0 (HOLD):
    there is no scale to interpret the prediction against.
    """
    lo = windows.close_min
    return lo + pred.astype(np.float64) * (windows.close_max - lo)


def next_close_target(data: np.ndarray, windows: Windows) -> tuple[np.ndarray, np.ndarray]:
    """Training target: the close after each window, normalised with that window's close range.

    Returns (target, valid): the last window has no next bar, and a flat close window has
    no scale, so both are marked invalid instead of producing NaN/inf targets.
    """
    m = len(windows)
    sequence_length = data.shape[0] - m + 1
    target = np.full(m, np.nan)
    nxt = data[sequence_length:, CLOSE]  # close of the bar after window k, for k < m - 1
    lo = windows.close_min[: m - 1]
    span = windows.close_max[: m - 1] - lo
    ok = span > 0
    target[: m - 1][ok] = (nxt[ok] - lo[ok]) / span[ok]
    valid = np.isfinite(target)
    return target, valid
