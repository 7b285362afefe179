"""`strategy.confidence_scale: auto`: the model's own |r| scale, measured when it was trained.

ml_basic's rule turns the expected return r into confidence = min(1, |r|·scale) (and the
same for strength). The original fixed scale 12 suited its own model's error scale; a
different model predicts returns of a different size, so one constant would either never
trade or always trade at full size. Training stores the quantiles of the fitted model's
|r| on its training windows in the metadata JSON; `auto` sets scale = 1 / that quantile
(the 90th by default, `strategy.auto_quantile`): the model's 10 % most confident
training-period predictions get confidence 1, and min_confidence 0.3 means "at least
0.3 × that quantile".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

CALIBRATION_QUANTILES: tuple[float, ...] = (0.5, 0.75, 0.9, 0.95, 0.99)
DEFAULT_QUANTILE = 0.9


def quantile_key(q: float) -> str:
    """Metadata key of a stored quantile: 0.9 -> "p90"."""
    return f"p{round(q * 100):02d}"


def training_abs_r_quantile(metadata: dict[str, Any], quantile: float, path: Path) -> float:
    """The stored quantile of training |r|, or a one-line error naming what to set instead."""
    from atb.ml.model import KEY, ModelError

    key = quantile_key(quantile)
    stored = metadata.get("calibration", {}).get("abs_r_quantiles", {})
    value = stored.get(key) if isinstance(stored, dict) else None
    if not isinstance(value, int | float) or not value > 0:
        raise ModelError(
            f"{KEY}: strategy.confidence_scale=auto needs the {key} of the model's training "
            f"|r| (calibration.abs_r_quantiles.{key} in '{path.with_suffix('.json')}'), which "
            "this model does not have; retrain it with `python -m atb mode=train`, or set "
            "strategy.confidence_scale and strategy.strength_scale to numbers (12 and 10 are "
            "the original rule)"
        )
    return float(value)
