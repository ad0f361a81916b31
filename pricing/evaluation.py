"""Regression metrics of a demand model, on the quantity scale and the log scale.

The model predicts ``log1p(quantity)``; predictions go back with ``expm1`` (never ``exp``)
and are clipped at zero (a negative quantity is impossible). Reported:

- ``mae``:   mean |ŷ − y| in units (quantity scale);
- ``rmsle``: sqrt(mean((log1p ŷ − log1p y)²)) (quantity scale, relative error);
- ``mse``:   mean((log1p ŷ − log1p y)²), the training loss's scale (log scale).

With ŷ clipped at zero, ``mse == rmsle²``; both are kept because the tutorial reports both.
"""
from __future__ import annotations

import numpy as np

from pricing.errors import DataValidationError


def quantity_from_log(pred_log) -> np.ndarray:
    """Invert ``log1p`` with ``expm1``, clipping negative quantities to zero."""
    return np.expm1(np.clip(np.asarray(pred_log, dtype=np.float64), 0.0, None))


def regression_metrics(y_true, y_pred) -> dict[str, float]:
    """``mse`` (log scale), ``mae`` and ``rmsle`` (quantity scale), ``n_rows``; both inputs in units."""
    y_true = np.asarray(y_true, dtype=np.float64).reshape(-1)
    y_pred = np.clip(np.asarray(y_pred, dtype=np.float64).reshape(-1), 0.0, None)
    if len(y_true) != len(y_pred):
        raise DataValidationError(f"{len(y_true)} targets but {len(y_pred)} predictions")
    if len(y_true) == 0:
        raise DataValidationError("no rows to evaluate")
    if (y_true < 0).any() or not np.isfinite(y_true).all() or not np.isfinite(y_pred).all():
        raise DataValidationError("targets must be finite non-negative quantities, predictions finite")
    log_err = np.log1p(y_pred) - np.log1p(y_true)
    mse = float(np.mean(log_err**2))
    return {
        "mse": mse,
        "mae": float(np.mean(np.abs(y_pred - y_true))),
        "rmsle": float(np.sqrt(mse)),
        "n_rows": int(len(y_true)),
    }
