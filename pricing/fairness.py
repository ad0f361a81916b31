"""Model-risk assessment: per-group error of the demand model, group gaps, and a verdict.

Groups come from a sensitive attribute (default ``is_registered``): the *privileged* group
is the rows whose attribute equals ``privileged_group``, the *unprivileged* group all
others. Per group (fairlearn ``MetricFrame``): count, MSE (log scale), MAE and RMSLE
(quantity scale), MAE on the log scale, mean prediction and mean actual (units).

Gaps, each unprivileged − privileged and measured on the ``log1p(quantity)`` scale (a gap of
0.1 is about 10 % in relative terms; on the quantity scale a gap would mostly reflect that
registered customers buy larger lots):

- ``mean_outcome_difference``: mean predicted log1p(quantity) gap between the groups.
  Demand really differs between groups, so the gate is on how far the model's gap departs
  from the real one: ``|mean_outcome_difference − actual_outcome_difference|`` ≤ threshold.
- ``mae_diff``: MAE on the log scale, gated as ``|mae_diff|`` ≤ threshold.

A group with no rows, or fewer than ``min_group_count``, fails the assessment with a reason
(never a silent zero). Optionally the model must beat the better naive baseline on test
RMSLE.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from fairlearn.metrics import MetricFrame

from pricing.errors import DataValidationError

SCALE = "log1p(quantity)"
PRIVILEGED, UNPRIVILEGED = "privileged", "unprivileged"


def _mse_log(y, p):
    return float(np.mean((np.log1p(p) - np.log1p(y)) ** 2))


def _mae(y, p):
    return float(np.mean(np.abs(np.asarray(p) - np.asarray(y))))


def _rmsle(y, p):
    return math.sqrt(_mse_log(y, p))


def _mae_log(y, p):
    return float(np.mean(np.abs(np.log1p(p) - np.log1p(y))))


def _mean_pred(y, p):
    return float(np.mean(p))


def _mean_actual(y, p):
    return float(np.mean(y))


def _mean_pred_log(y, p):
    return float(np.mean(np.log1p(p)))


def _mean_actual_log(y, p):
    return float(np.mean(np.log1p(y)))


def _count(y, p):
    return int(len(y))


GROUP_METRICS = {
    "count": _count,
    "mse": _mse_log,
    "mae": _mae,
    "rmsle": _rmsle,
    "mae_log": _mae_log,
    "mean_prediction": _mean_pred,
    "mean_actual": _mean_actual,
    "mean_prediction_log": _mean_pred_log,
    "mean_actual_log": _mean_actual_log,
}


def _clean(value: Any) -> Any:
    """JSON-safe number: NaN/inf become ``None``."""
    if value is None:
        return None
    if isinstance(value, (int, np.integer)):
        return int(value)
    value = float(value)
    return value if math.isfinite(value) else None


def group_metrics(y_true, y_pred, groups) -> dict[str, dict[str, Any]]:
    """Per-group metrics (``GROUP_METRICS``) via fairlearn's ``MetricFrame``; inputs in units."""
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.clip(np.asarray(y_pred, dtype=np.float64), 0.0, None)
    groups = np.asarray(groups)
    if len(y_true) == 0:
        return {}
    frame = MetricFrame(metrics=GROUP_METRICS, y_true=y_true, y_pred=y_pred, sensitive_features=pd.Series(groups, name="group"))
    table = frame.by_group
    return {
        str(group): {
            name: int(table.loc[group, name]) if name == "count" else _clean(table.loc[group, name])
            for name in GROUP_METRICS
        }
        for group in table.index
    }


def assess(
    y_true,
    y_pred,
    sensitive,
    *,
    attribute: str,
    privileged_group: Any,
    min_group_count: int,
    mean_outcome_difference_threshold: float,
    mae_diff_threshold: float,
    model_rmsle: float | None = None,
    baseline_rmsle: Mapping[str, float] | None = None,
    require_beat_baseline: bool = True,
) -> dict[str, Any]:
    """The risk verdict: ``passed``, ``reasons`` (why it failed; empty when it passed) and numbers."""
    y_true = np.asarray(y_true, dtype=np.float64).reshape(-1)
    y_pred = np.asarray(y_pred, dtype=np.float64).reshape(-1)
    sensitive = pd.Series(sensitive).reset_index(drop=True)
    if not (len(y_true) == len(y_pred) == len(sensitive)):
        raise DataValidationError(
            f"{len(y_true)} targets, {len(y_pred)} predictions, {len(sensitive)} sensitive values"
        )
    if sensitive.isna().any():
        raise DataValidationError(f"sensitive attribute {attribute!r} has missing values")
    privileged_mask = (sensitive == privileged_group).to_numpy()
    labels = np.where(privileged_mask, PRIVILEGED, UNPRIVILEGED)
    by_group = group_metrics(y_true, y_pred, labels)
    reasons: list[str] = []

    unpriv_values = sorted({str(v) for v in sensitive[~privileged_mask].unique()})
    descriptions = {
        PRIVILEGED: f"{attribute} == {privileged_group!r}",
        UNPRIVILEGED: f"{attribute} != {privileged_group!r}",
    }
    groups: dict[str, Any] = {}
    usable = True
    for name in (PRIVILEGED, UNPRIVILEGED):
        metrics = by_group.get(name)
        count = 0 if metrics is None else int(metrics["count"])
        if count == 0:
            reasons.append(f"group '{name}' ({descriptions[name]}) has no rows: fairness cannot be assessed")
            usable = False
            metrics = {key: (0 if key == "count" else None) for key in GROUP_METRICS}
        elif count < int(min_group_count):
            reasons.append(
                f"group '{name}' ({descriptions[name]}) has {count} rows, fewer than "
                f"min_group_count={int(min_group_count)}: its metrics are too noisy to judge"
            )
            usable = False
        groups[name] = {"definition": descriptions[name], **metrics}

    def gap(key: str) -> float | None:
        a, b = groups[UNPRIVILEGED].get(key), groups[PRIVILEGED].get(key)
        return None if a is None or b is None else float(a - b)

    mod = gap("mean_prediction_log")
    actual = gap("mean_actual_log")
    excess = None if mod is None or actual is None else mod - actual
    mae_diff = gap("mae_log")
    mae_diff_units = gap("mae")

    checks: dict[str, Any] = {
        "mean_outcome_difference": {
            "value": _clean(mod),
            "actual_outcome_difference": _clean(actual),
            "excess_over_actual": _clean(excess),
            "gated_value": None if excess is None else _clean(abs(excess)),
            "threshold": float(mean_outcome_difference_threshold),
            "scale": SCALE,
            "definition": "mean predicted log1p(quantity), unprivileged − privileged; gate: "
                          "|value − actual_outcome_difference| <= threshold",
        },
        "mae_diff": {
            "value": _clean(mae_diff),
            "gated_value": None if mae_diff is None else _clean(abs(mae_diff)),
            "threshold": float(mae_diff_threshold),
            "scale": SCALE,
            "quantity_scale_value": _clean(mae_diff_units),
            "definition": "MAE of log1p(quantity), unprivileged − privileged; gate: |value| <= threshold",
        },
    }
    if usable:
        if abs(excess) > float(mean_outcome_difference_threshold):
            reasons.append(
                f"mean_outcome_difference departs from the actual gap by {excess:+.3f} on the "
                f"{SCALE} scale (predicted gap {mod:+.3f}, actual {actual:+.3f}); "
                f"threshold {float(mean_outcome_difference_threshold)}"
            )
        if abs(mae_diff) > float(mae_diff_threshold):
            reasons.append(
                f"|mae_diff| = {abs(mae_diff):.3f} on the {SCALE} scale exceeds the threshold "
                f"{float(mae_diff_threshold)} (unprivileged MAE {groups[UNPRIVILEGED]['mae_log']:.3f}, "
                f"privileged {groups[PRIVILEGED]['mae_log']:.3f})"
            )

    baseline_check: dict[str, Any] = {"required": bool(require_beat_baseline)}
    if baseline_rmsle:
        best_name = min(baseline_rmsle, key=lambda n: baseline_rmsle[n])
        best_value = float(baseline_rmsle[best_name])
        beats = model_rmsle is not None and float(model_rmsle) < best_value
        baseline_check.update(
            model_rmsle=_clean(model_rmsle), best_baseline=best_name,
            best_baseline_rmsle=best_value, beats_best_baseline=bool(beats),
        )
        if require_beat_baseline and not beats:
            reasons.append(
                f"the network's test RMSLE {model_rmsle} does not beat the naive baseline "
                f"'{best_name}' ({best_value:.4f}); set risk.require_beat_baseline: false to relax"
            )
    elif require_beat_baseline:
        reasons.append("no baseline scores were given, so beating the naive baseline cannot be checked")

    return {
        "passed": not reasons,
        "reasons": reasons,
        "sensitive_attribute": attribute,
        "privileged_group": privileged_group.item() if isinstance(privileged_group, np.generic) else privileged_group,
        "unprivileged_values": unpriv_values,
        "min_group_count": int(min_group_count),
        "n_rows": int(len(y_true)),
        "groups": groups,
        "checks": checks,
        "baseline": baseline_check,
    }
