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

Each gap comes with a seeded, stratified bootstrap interval (rows resampled within each
group, so both keep their size). A gap's check **fails** when its interval lies wholly
beyond ``±threshold``, **passes** when it lies wholly inside, and is **not assessable**
when it straddles a threshold: the test set cannot tell. A group with no rows, or fewer
than ``min_group_count``, makes fairness not assessable (never a silent zero, never a
pass). Optionally the model must beat the better naive baseline on test RMSLE.

The verdict: ``failed`` when any check failed, else ``not_assessable`` when any could not
be assessed, else ``passed``; ``passed`` (bool) is ``verdict == "passed"``.
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
PASSED, FAILED, NOT_ASSESSABLE = "passed", "failed", "not_assessable"
STATUS_INSUFFICIENT = "insufficient_data"
VERDICTS = (PASSED, FAILED, NOT_ASSESSABLE)


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


def bootstrap_gaps(
    residual_privileged: np.ndarray,
    residual_unprivileged: np.ndarray,
    *,
    n_resamples: int,
    confidence: float,
    seed: int,
) -> dict[str, dict[str, float]]:
    """Percentile intervals of the two gaps (unprivileged − privileged) and of each group's means.

    ``residual_*``: log1p(prediction) − log1p(actual) per row. The excess gap is the gap in
    mean residual (predicted gap − actual gap); the MAE gap the gap in mean |residual|.
    """
    rng = np.random.default_rng(seed)
    draws = {}
    for name, residual in ((PRIVILEGED, residual_privileged), (UNPRIVILEGED, residual_unprivileged)):
        rows = rng.integers(0, len(residual), size=(n_resamples, len(residual)))
        resampled = residual[rows]
        draws[name] = {"mean_residual": resampled.mean(axis=1), "mae_log": np.abs(resampled).mean(axis=1)}
    tail = (1.0 - confidence) / 2.0

    def interval(values: np.ndarray) -> dict[str, float]:
        low, high = np.quantile(values, [tail, 1.0 - tail])
        return {"low": float(low), "high": float(high), "std_error": float(values.std(ddof=1))}

    return {
        "excess_over_actual": interval(draws[UNPRIVILEGED]["mean_residual"] - draws[PRIVILEGED]["mean_residual"]),
        "mae_diff": interval(draws[UNPRIVILEGED]["mae_log"] - draws[PRIVILEGED]["mae_log"]),
        **{
            f"{group}_{metric}": interval(values)
            for group, metrics in draws.items()
            for metric, values in metrics.items()
        },
    }


def interval_verdict(low: float, high: float, threshold: float) -> str:
    """``passed`` inside ``[-threshold, threshold]``, ``failed`` wholly beyond it, else ``not_assessable``."""
    if -threshold <= low and high <= threshold:
        return PASSED
    if low > threshold or high < -threshold:
        return FAILED
    return NOT_ASSESSABLE


def _worst(verdicts: tuple[str, ...]) -> str:
    if FAILED in verdicts:
        return FAILED
    return NOT_ASSESSABLE if NOT_ASSESSABLE in verdicts else PASSED


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
    bootstrap_resamples: int = 2000,
    confidence_level: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """The risk verdict: ``verdict``, ``passed``, ``reasons`` (why it did not pass) and numbers."""
    y_true = np.asarray(y_true, dtype=np.float64).reshape(-1)
    y_pred = np.asarray(y_pred, dtype=np.float64).reshape(-1)
    sensitive = pd.Series(sensitive).reset_index(drop=True)
    if not (len(y_true) == len(y_pred) == len(sensitive)):
        raise DataValidationError(
            f"{len(y_true)} targets, {len(y_pred)} predictions, {len(sensitive)} sensitive values"
        )
    if sensitive.isna().any():
        raise DataValidationError(f"sensitive attribute {attribute!r} has missing values")
    if not (isinstance(bootstrap_resamples, int) and bootstrap_resamples >= 100):
        raise DataValidationError(f"risk.bootstrap_resamples must be an integer >= 100, got {bootstrap_resamples!r}")
    if not 0.5 < float(confidence_level) < 1:
        raise DataValidationError(f"risk.confidence_level must be in (0.5, 1), got {confidence_level!r}")
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
                f"min_group_count={int(min_group_count)}: too few to tell whether the model is fair"
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
    mod_threshold, mae_threshold = float(mean_outcome_difference_threshold), float(mae_diff_threshold)

    intervals: dict[str, dict[str, float]] = {}
    if usable:
        residual = np.log1p(np.clip(y_pred, 0.0, None)) - np.log1p(y_true)
        intervals = bootstrap_gaps(
            residual[privileged_mask], residual[~privileged_mask],
            n_resamples=bootstrap_resamples, confidence=float(confidence_level), seed=int(seed),
        )
        for name in (PRIVILEGED, UNPRIVILEGED):
            groups[name]["intervals"] = {
                metric: intervals[f"{name}_{metric}"] for metric in ("mean_residual", "mae_log")
            }

    def check_verdict(key: str, threshold: float) -> str:
        if not usable:
            return NOT_ASSESSABLE
        return interval_verdict(intervals[key]["low"], intervals[key]["high"], threshold)

    excess_verdict = check_verdict("excess_over_actual", mod_threshold)
    mae_verdict = check_verdict("mae_diff", mae_threshold)
    level = f"{float(confidence_level):.0%}"
    checks: dict[str, Any] = {
        "mean_outcome_difference": {
            "verdict": excess_verdict,
            "value": _clean(mod),
            "actual_outcome_difference": _clean(actual),
            "excess_over_actual": _clean(excess),
            "interval": intervals.get("excess_over_actual"),
            "gated_value": None if excess is None else _clean(abs(excess)),
            "threshold": mod_threshold,
            "scale": SCALE,
            "definition": "mean predicted log1p(quantity), unprivileged − privileged; gate on the "
                          f"{level} bootstrap interval of value − actual_outcome_difference against ±threshold",
        },
        "mae_diff": {
            "verdict": mae_verdict,
            "value": _clean(mae_diff),
            "interval": intervals.get("mae_diff"),
            "gated_value": None if mae_diff is None else _clean(abs(mae_diff)),
            "threshold": mae_threshold,
            "scale": SCALE,
            "quantity_scale_value": _clean(mae_diff_units),
            "definition": f"MAE of log1p(quantity), unprivileged − privileged; gate on its {level} bootstrap "
                          "interval against ±threshold",
        },
    }
    if usable:
        explained = {
            "mean_outcome_difference": (
                excess_verdict, mod_threshold, intervals["excess_over_actual"],
                f"the predicted gap departs from the actual gap by {excess:+.3f} on the {SCALE} scale",
                f"predicted gap {mod:+.3f}, actual {actual:+.3f}",
            ),
            "mae_diff": (
                mae_verdict, mae_threshold, intervals["mae_diff"],
                f"mae_diff = {mae_diff:+.3f} on the {SCALE} scale",
                f"unprivileged MAE {groups[UNPRIVILEGED]['mae_log']:.3f}, privileged {groups[PRIVILEGED]['mae_log']:.3f}",
            ),
        }
        for name, (check, threshold, band, what, detail) in explained.items():
            stated = f"{what} ({level} interval [{band['low']:+.3f}, {band['high']:+.3f}]; {detail})"
            if check == FAILED:
                reasons.append(f"{name}: {stated}, wholly beyond ±{threshold}")
            elif check == NOT_ASSESSABLE:
                reasons.append(f"{name} not assessable: {stated} straddles ±{threshold}")

    baseline_check: dict[str, Any] = {"required": bool(require_beat_baseline)}
    baseline_failed = False
    if baseline_rmsle:
        best_name = min(baseline_rmsle, key=lambda n: baseline_rmsle[n])
        best_value = float(baseline_rmsle[best_name])
        beats = model_rmsle is not None and float(model_rmsle) < best_value
        baseline_check.update(
            model_rmsle=_clean(model_rmsle), best_baseline=best_name,
            best_baseline_rmsle=best_value, beats_best_baseline=bool(beats),
        )
        if require_beat_baseline and not beats:
            baseline_failed = True
            reasons.append(
                f"the network's test RMSLE {model_rmsle} does not beat the naive baseline "
                f"'{best_name}' ({best_value:.4f}); set risk.require_beat_baseline: false to relax"
            )
    elif require_beat_baseline:
        baseline_failed = True
        reasons.append("no baseline scores were given, so beating the naive baseline cannot be checked")

    fairness_verdict = _worst((excess_verdict, mae_verdict))
    verdict = FAILED if baseline_failed else fairness_verdict
    return {
        "verdict": verdict,
        # The lineage-wide word for "too little data to tell" (the drift verdict uses it too).
        "status": STATUS_INSUFFICIENT if verdict == NOT_ASSESSABLE else verdict,
        "passed": verdict == PASSED,
        "reasons": reasons,
        "counts": {"privileged": int(groups[PRIVILEGED]["count"]), "unprivileged": int(groups[UNPRIVILEGED]["count"]),
                   "min_group_count": int(min_group_count)},
        "fairness_verdict": fairness_verdict,
        "sensitive_attribute": attribute,
        "privileged_group": privileged_group.item() if isinstance(privileged_group, np.generic) else privileged_group,
        "unprivileged_values": unpriv_values,
        "min_group_count": int(min_group_count),
        "n_rows": int(len(y_true)),
        "bootstrap": {"resamples": int(bootstrap_resamples), "confidence_level": float(confidence_level),
                      "seed": int(seed), "method": "percentile, rows resampled within each group"},
        "groups": groups,
        "checks": checks,
        "baseline": baseline_check,
    }


# -- the formulation across products ---------------------------------------------------------
POOLED_CHECKS = {"mean_outcome_difference": "excess_over_actual", "mae_diff": "value"}
BASIS_OWN, BASIS_POOLED = "own_data", "pooled"


def pool_gaps(members: Mapping[str, Mapping[str, Any]], *, confidence_level: float, min_products: int,
              thresholds: Mapping[str, float]) -> dict[str, Any]:
    """The model formulation's fairness across products: each gap's random-effects estimate
    (statsmodels ``combine_effects``, Paule-Mandel between-product variance) over the products'
    own gap estimates and bootstrap standard errors, judged as one product's gap is (wholly
    inside ±threshold: passed; wholly beyond: failed; else not_assessable). ``members``: product
    label -> its risk stage metrics; only products whose groups were big enough to measure count.
    Fewer than ``min_products`` of them: not_assessable."""
    from statsmodels.stats.meta_analysis import combine_effects  # heavy; only the decision needs it

    checks: dict[str, Any] = {}
    for check, field in POOLED_CHECKS.items():
        effects, variances, labels = [], [], []
        for label, metrics in members.items():
            detail = ((metrics.get("checks") or {}).get(check)) or {}
            interval = detail.get("interval") or {}
            value, error = detail.get(field), interval.get("std_error")
            if isinstance(value, (int, float)) and isinstance(error, (int, float)) and error > 0:
                effects.append(float(value)), variances.append(float(error) ** 2), labels.append(label)
        threshold = float(thresholds[check])
        entry: dict[str, Any] = {"products": len(labels), "threshold": threshold}
        if len(labels) < int(min_products):
            entry.update(verdict=NOT_ASSESSABLE,
                         why=f"{len(labels)} products with a measured gap, fewer than min_pool_products={min_products}")
        else:
            combined = combine_effects(np.array(effects), np.array(variances), method_re="iterated",
                                       alpha=1 - float(confidence_level))
            row = combined.summary_frame().loc["random effect"]
            low, high = float(row["ci_low"]), float(row["ci_upp"])
            entry.update(estimate=float(row["eff"]), std_error=float(row["sd_eff"]), low=low, high=high,
                         between_product_variance=float(combined.tau2), verdict=interval_verdict(low, high, threshold))
        checks[check] = entry
    return {"verdict": _worst(tuple(c["verdict"] for c in checks.values())), "members": sorted(members),
            "min_products": int(min_products), "confidence_level": float(confidence_level), "checks": checks}


def judge_with_peers(own: Mapping[str, Any], pooled: Mapping[str, Any] | None) -> dict[str, Any]:
    """The fairness verdict of one candidate: its own data where that can tell, the formulation's
    pooled verdict where it cannot. A gap clearly beyond the threshold on the product's own data
    fails it; so does a formulation whose pooled gap is beyond; own data that cannot tell with a
    pooled pass is a pass on the pooled basis. Not beating the baseline stays a failure."""
    overall = own.get("verdict") or (PASSED if own.get("passed") is True else FAILED)
    own_fairness = own.get("fairness_verdict") or overall
    baseline_failed = overall == FAILED and own_fairness != FAILED
    reasons = list(own.get("reasons") or [])
    pooled_verdict = (pooled or {}).get("verdict")
    basis = BASIS_OWN
    if own_fairness == FAILED:
        fairness = FAILED
    elif pooled_verdict == FAILED:
        fairness = FAILED
        reasons.append(f"the formulation's gap pooled over {len(pooled['members'])} products is beyond the threshold: "
                       + _pooled_text(pooled))
    elif own_fairness == PASSED:
        fairness = PASSED
    elif pooled_verdict == PASSED:
        fairness, basis = PASSED, BASIS_POOLED
        told = f"fairness: own test split cannot tell; judged with its peers: {_pooled_text(pooled)}"
        reasons = [*reasons, told] if baseline_failed else [told]
    else:
        fairness = NOT_ASSESSABLE
        if pooled is not None:
            reasons.append("judged with its peers, neither can tell: " + _pooled_text(pooled))
    verdict = FAILED if baseline_failed else fairness
    if verdict == PASSED and basis == BASIS_OWN:
        reasons = []
    return {"passed": verdict == PASSED, "verdict": verdict, "fairness_verdict": fairness, "basis": basis,
            "reasons": reasons, "pooled": dict(pooled) if pooled is not None else None}


def _pooled_text(pooled: Mapping[str, Any]) -> str:
    parts = []
    for check, entry in pooled["checks"].items():
        if "low" in entry:
            parts.append(f"{check} [{entry['low']:+.3f}, {entry['high']:+.3f}] vs ±{entry['threshold']} over "
                         f"{entry['products']} products ({entry['verdict']})")
        else:
            parts.append(f"{check}: {entry['why']}")
    return "; ".join(parts)
