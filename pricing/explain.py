"""SHAP explanations of the demand network (DeepSHAP on the ``log1p(quantity)`` output).

The background is a seeded sample of train rows; the explained rows are the test split (a
seeded sample when it exceeds ``max_rows``). Importance is mean |SHAP| per feature, sorted
with its names in one table, so a name can never drift away from its value.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from pricing.errors import DataValidationError


@dataclass
class Explanation:
    values: pd.DataFrame  # one row per explained row, one column per feature (SHAP, log1p scale)
    row_index: np.ndarray  # positions (in the explained split) of those rows
    expected_value: float  # mean model output over the background (log1p scale)
    max_additivity_error: float  # max |f(x) − E f − Σ SHAP| over explained rows
    background_size: int


def seeded_rows(n_rows: int, size: int, seed: int) -> np.ndarray:
    """``min(size, n_rows)`` distinct row positions drawn with ``seed``, in ascending order."""
    if size >= n_rows:
        return np.arange(n_rows)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_rows, size=size, replace=False))


def explain(
    model: torch.nn.Module,
    background: np.ndarray | pd.DataFrame,
    rows: np.ndarray | pd.DataFrame,
    feature_names: Sequence[str],
    *,
    seed: int,
    background_size: int = 100,
    max_rows: int | None = None,
) -> Explanation:
    """DeepSHAP values of ``model`` for ``rows`` against a seeded sample of ``background``."""
    import shap  # heavy import, only when explaining

    background = np.asarray(background, dtype=np.float32)
    rows = np.asarray(rows, dtype=np.float32)
    names = [str(n) for n in feature_names]
    if background.shape[1] != len(names) or rows.shape[1] != len(names):
        raise DataValidationError(
            f"{len(names)} feature names for arrays of {background.shape[1]} / {rows.shape[1]} columns"
        )
    if len(background) == 0 or len(rows) == 0:
        raise DataValidationError("SHAP needs at least one background row and one row to explain")
    bg_idx = seeded_rows(len(background), int(background_size), seed)
    row_idx = (
        np.arange(len(rows)) if max_rows is None else seeded_rows(len(rows), int(max_rows), seed + 1)
    )
    model.eval()
    bg = torch.from_numpy(background[bg_idx])
    x = torch.from_numpy(rows[row_idx])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        explainer = shap.DeepExplainer(model, bg)
        values = explainer.shap_values(x, check_additivity=False)
    values = np.asarray(values, dtype=np.float64).reshape(len(row_idx), len(names))
    expected = float(np.asarray(explainer.expected_value, dtype=np.float64).reshape(-1)[0])
    with torch.no_grad():
        out = model(x).reshape(-1).double().numpy()
    additivity = float(np.max(np.abs(out - expected - values.sum(axis=1))))
    return Explanation(
        values=pd.DataFrame(values, columns=names),
        row_index=row_idx,
        expected_value=expected,
        max_additivity_error=additivity,
        background_size=len(bg_idx),
    )


def importance(shap_values: pd.DataFrame) -> pd.DataFrame:
    """Mean |SHAP| per feature: columns ``feature``, ``mean_abs_shap``, ``rank`` (1 = most important).

    Names and values are sorted together (ties broken by name) — never sorted separately.
    """
    table = pd.DataFrame({
        "feature": list(shap_values.columns),
        "mean_abs_shap": shap_values.abs().mean(axis=0).to_numpy(dtype=np.float64),
    })
    table = table.sort_values(["mean_abs_shap", "feature"], ascending=[False, True], kind="mergesort")
    table["rank"] = np.arange(1, len(table) + 1)
    return table.reset_index(drop=True)


def beeswarm_points(
    shap_values: pd.DataFrame, feature_values: pd.DataFrame, top_features: int | None = None
) -> pd.DataFrame:
    """Long table for a beeswarm: one point per (row, feature) of the ``top_features`` most
    important features — ``feature``, ``feature_rank`` (1 = top, a numeric y for DVC's scatter
    template), ``shap_value``, ``feature_value`` (the model input) and ``row``."""
    if list(shap_values.columns) != list(feature_values.columns) or len(shap_values) != len(feature_values):
        raise DataValidationError("SHAP values and feature values must have the same shape and columns")
    ranks = importance(shap_values)
    if top_features is not None:
        ranks = ranks.head(int(top_features))
    parts = []
    for feature, rank in zip(ranks["feature"], ranks["rank"]):
        parts.append(pd.DataFrame({
            "feature": feature,
            "feature_rank": int(rank),
            "shap_value": shap_values[feature].to_numpy(dtype=np.float64),
            "feature_value": feature_values[feature].to_numpy(dtype=np.float64),
            "row": np.arange(len(shap_values)),
        }))
    return pd.concat(parts, ignore_index=True)
