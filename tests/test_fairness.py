"""Risk assessment: per-group numbers by hand, the empty- and tiny-group failures, the gates."""
import json
import math

import numpy as np
import pytest

from pricing.fairness import assess, group_metrics

DEFAULTS = dict(attribute="is_registered", privileged_group=1, min_group_count=2,
                mean_outcome_difference_threshold=0.25, mae_diff_threshold=0.25,
                model_rmsle=0.5, baseline_rmsle={"train_median": 1.0, "price_median": 0.7})


def run(y_true, y_pred, groups, **overrides):
    verdict = assess(y_true, y_pred, groups, **{**DEFAULTS, **overrides})
    json.dumps(verdict, allow_nan=False)  # a JSON metrics file, never NaN
    return verdict


def test_group_metrics_by_hand():
    # registered (1): y 1, 3 ; pred 1, 7   | unregistered (0): y 3 ; pred 1
    metrics = group_metrics([1, 3, 3], [1, 7, 1], [1, 1, 0])
    reg, unreg = metrics["1"], metrics["0"]
    assert reg["count"] == 2 and unreg["count"] == 1
    assert isinstance(reg["count"], int)
    assert reg["mae"] == pytest.approx(2.0) and unreg["mae"] == pytest.approx(2.0)
    assert reg["mse"] == pytest.approx(math.log(2) ** 2 / 2)
    assert unreg["mse"] == pytest.approx(math.log(2) ** 2)  # log1p(1) − log1p(3) = −ln 2
    assert reg["rmsle"] == pytest.approx(math.sqrt(reg["mse"]))
    assert reg["mean_prediction"] == pytest.approx(4.0) and unreg["mean_prediction"] == pytest.approx(1.0)
    assert reg["mae_log"] == pytest.approx(math.log(2) / 2) and unreg["mae_log"] == pytest.approx(math.log(2))


def test_gaps_by_hand_and_a_pass():
    # privileged: exact predictions; unprivileged: each off by the same factor e^0.1 upwards
    y = np.array([3.0, 7.0, 1.0, 1.0, 3.0])
    groups = [1, 1, 0, 0, 0]
    pred = y.copy()
    pred[2:] = np.expm1(np.log1p(y[2:]) + 0.1)
    verdict = run(y, pred, groups)
    checks = verdict["checks"]
    actual_gap = np.log1p([1, 1, 3]).mean() - np.log1p([3, 7]).mean()
    assert checks["mean_outcome_difference"]["actual_outcome_difference"] == pytest.approx(actual_gap)
    assert checks["mean_outcome_difference"]["value"] == pytest.approx(actual_gap + 0.1)
    assert checks["mean_outcome_difference"]["excess_over_actual"] == pytest.approx(0.1)
    assert checks["mae_diff"]["value"] == pytest.approx(0.1)
    assert checks["mae_diff"]["scale"] == "log1p(quantity)"
    assert verdict["groups"]["privileged"]["count"] == 2
    assert verdict["groups"]["unprivileged"]["count"] == 3
    assert verdict["passed"] is True and verdict["reasons"] == []


def test_a_model_biased_against_one_group_fails_both_gates():
    y = np.array([3.0, 7.0, 1.0, 1.0, 3.0])
    pred = y.copy()
    pred[2:] = np.expm1(np.log1p(y[2:]) + 0.5)  # unprivileged over-predicted by ~65 %
    verdict = run(y, pred, [1, 1, 0, 0, 0])
    assert verdict["passed"] is False
    assert any("mean_outcome_difference" in r for r in verdict["reasons"])
    assert any("mae_diff" in r for r in verdict["reasons"])


def test_an_empty_group_fails_with_a_reason_not_a_zero():
    verdict = run([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [1, 1, 1])
    assert verdict["passed"] is False
    assert any("'unprivileged'" in r and "no rows" in r for r in verdict["reasons"])
    unprivileged = verdict["groups"]["unprivileged"]
    assert unprivileged["count"] == 0 and unprivileged["mae"] is None
    assert verdict["checks"]["mae_diff"]["value"] is None
    assert verdict["checks"]["mean_outcome_difference"]["value"] is None


def test_a_tiny_group_fails_with_its_count():
    verdict = run([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0], [1, 1, 1, 0], min_group_count=3)
    assert verdict["passed"] is False
    assert any("has 1 rows, fewer than min_group_count=3" in r for r in verdict["reasons"])
    assert verdict["groups"]["unprivileged"]["mae"] == pytest.approx(0.0)  # numbers still reported


def test_the_network_must_beat_the_better_baseline_unless_relaxed():
    y, groups = [1.0, 2.0, 3.0, 4.0], [1, 1, 0, 0]
    failed = run(y, y, groups, model_rmsle=0.71)
    assert failed["passed"] is False
    assert any("price_median" in r for r in failed["reasons"])
    assert failed["baseline"]["beats_best_baseline"] is False
    relaxed = run(y, y, groups, model_rmsle=0.71, require_beat_baseline=False)
    assert relaxed["passed"] is True
    assert run(y, y, groups, model_rmsle=0.69)["passed"] is True


def test_privileged_group_can_be_any_value():
    verdict = run([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0], ["uk", "uk", "fr", "de"],
                  attribute="country", privileged_group="uk")
    assert verdict["groups"]["unprivileged"]["count"] == 2
    assert verdict["unprivileged_values"] == ["de", "fr"]
