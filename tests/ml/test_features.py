"""Window normalisation: matches a per-window reference; flat features become 0.5."""

from __future__ import annotations

import numpy as np
import pytest

from atb.ml.features import (
    FLAT_VALUE,
    denormalise_close,
    iter_normalised_windows,
    next_close_target,
    normalised_windows,
)


def reference(data: np.ndarray, length: int) -> np.ndarray:
    out = []
    for end in range(length, len(data) + 1):
        w = data[end - length : end]
        lo, hi = w.min(axis=0), w.max(axis=0)
        span = hi - lo
        out.append(np.where(span > 0, (w - lo) / np.where(span > 0, span, 1), 0.5))
    return np.array(out)


def test_matches_per_window_reference() -> None:
    rng = np.random.default_rng(1)
    data = rng.uniform(1, 1e5, (300, 5))
    w = normalised_windows(data, 120)
    assert w.values.shape == (181, 120, 5)
    assert w.values.dtype == np.float32
    np.testing.assert_allclose(w.values, reference(data, 120), atol=1e-6)
    # window k ends at bar k + L - 1, and the last row of each window is that bar
    np.testing.assert_array_equal(w.minimum[0], data[:120].min(axis=0))
    np.testing.assert_array_equal(w.maximum[-1], data[-120:].max(axis=0))


def test_flat_feature_is_half() -> None:
    data = np.column_stack(
        [np.linspace(1, 2, 150), np.full(150, 7.0), np.linspace(1, 2, 150), np.full(150, 3.0),
         np.zeros(150)]
    )  # fmt: skip
    w = normalised_windows(data, 120)
    assert np.all(w.values[:, :, 1] == FLAT_VALUE)
    assert np.all(w.values[:, :, 3] == FLAT_VALUE)
    assert np.all(w.values[:, :, 4] == FLAT_VALUE)  # zero volume everywhere: flat, not NaN
    assert np.isfinite(w.values).all()
    # A flat close maps any prediction back to that price: r = 0, so no trade.
    pred = np.linspace(0, 1, len(w))
    np.testing.assert_array_equal(denormalise_close(pred, w), 3.0)


def test_flat_only_in_some_windows() -> None:
    data = np.ones((130, 5))
    data[125:, :] = 2.0  # only windows reaching bar 125 see a range
    w = normalised_windows(data, 120)
    assert np.all(w.values[:6] == FLAT_VALUE)  # windows ending at bars 119..124
    assert w.values[6, -1, 0] == 1.0 and w.values[6, 0, 0] == 0.0


def test_too_few_bars_gives_no_windows() -> None:
    w = normalised_windows(np.ones((119, 5)), 120)
    assert len(w) == 0 and w.values.shape == (0, 120, 5)
    assert len(normalised_windows(np.ones((120, 5)), 120)) == 1


def test_bad_input_shape() -> None:
    with pytest.raises(ValueError, match="2-D"):
        normalised_windows(np.ones(10), 3)


def test_next_close_target() -> None:
    close = np.array([1.0, 3.0, 2.0, 5.0, 4.0])
    data = np.column_stack([close] * 5)
    w = normalised_windows(data, 3)  # windows end at bars 2, 3, 4
    target, valid = next_close_target(data, w)
    # window [1,3,2] -> next close 5 normalised by (5-1)/(3-1) = 2; window [3,2,5] -> (4-2)/3
    np.testing.assert_allclose(target[:2], [2.0, 2 / 3])
    assert valid.tolist() == [True, True, False]


@pytest.mark.parametrize("batch", [1, 7, 1000, 10_000])
def test_batches_equal_all_at_once(batch: int) -> None:
    data = np.random.default_rng(2).uniform(1, 1e4, (1300, 5))
    data[200:330, 1] = 5.0  # a flat stretch inside some batches
    whole = normalised_windows(data, 120)
    starts, parts = zip(*iter_normalised_windows(data, 120, batch), strict=True)
    assert list(starts) == list(range(0, len(whole), batch))
    np.testing.assert_array_equal(np.concatenate([p.values for p in parts]), whole.values)
    np.testing.assert_array_equal(np.concatenate([p.minimum for p in parts]), whole.minimum)
    np.testing.assert_array_equal(np.concatenate([p.maximum for p in parts]), whole.maximum)
    assert max(len(p) for p in parts) == min(batch, len(whole))


def test_batches_of_too_little_data() -> None:
    assert list(iter_normalised_windows(np.ones((50, 5)), 120, 16)) == []
    with pytest.raises(ValueError, match="batch_size"):
        list(iter_normalised_windows(np.ones((200, 5)), 120, 0))


@pytest.mark.parametrize(("n", "length"), [(10, 3), (7, 7), (500, 120), (121, 120), (5, 1)])
def test_sliding_extreme_matches_a_direct_reduce(n: int, length: int) -> None:
    from numpy.lib.stride_tricks import sliding_window_view

    from atb.ml.features import sliding_extreme

    a = np.random.default_rng(n).normal(size=(5, n))
    a[1, min(3, n - 1)] = np.nan  # NaN reaches only the windows that hold it
    view = sliding_window_view(a, length, axis=1)
    np.testing.assert_array_equal(sliding_extreme(a, length, np.minimum), view.min(axis=-1))
    np.testing.assert_array_equal(sliding_extreme(a, length, np.maximum), view.max(axis=-1))
