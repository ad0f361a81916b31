"""dvc stage `assess_model_risk@<stockcode>`: per-group error, group gaps, price response; a verdict.

Records the verdict (`verdict`: passed / failed / not_assessable; `passed`, `reasons`) and
exits 0 either way: acting on it (approval or rejection) belongs to orchestration. The
price-response check (``price_response`` section) judges the demand curve inference drew:
demand never rising with the list price, the elasticity inside
``price_response.elasticity_band``, the recommendation inside the evidence; its reasons join
the fairness reasons, and a failed price response fails the verdict.
"""
from __future__ import annotations

import json

import pandas as pd

from pricing.demand import judge_price_response
from pricing.errors import DataValidationError
from pricing.fairness import assess
from pricing.layout import Layout, load_params
from pricing.price_response import judge_weekly_response
from stages.common import run_stage, stockcode_arg, write_json


def main(argv: list[str]) -> None:
    stockcode = stockcode_arg(argv)
    layout = Layout()
    params = load_params(layout.root)
    cfg, price_cfg = params["risk"], params["price_response"]
    results_path, metrics_path = layout.inference_results(stockcode), layout.test_metrics(stockcode)
    for path in (results_path, metrics_path):
        if not path.exists():
            raise DataValidationError(f"{path} is missing: run inference_primary_model@{stockcode} first")
    results = pd.read_parquet(results_path)
    test_metrics = json.loads(metrics_path.read_text())
    attribute = cfg["sensitive_attribute"]
    if attribute not in results.columns:
        raise DataValidationError(
            f"{results_path} has no column {attribute!r}: re-run inference_primary_model@{stockcode}"
        )
    verdict = assess(
        results["y_true"], results["y_pred"], results[attribute],
        attribute=attribute,
        privileged_group=cfg["privileged_group"],
        min_group_count=int(cfg["min_group_count"]),
        mean_outcome_difference_threshold=float(cfg["mean_outcome_difference_threshold"]),
        mae_diff_threshold=float(cfg["mae_diff_threshold"]),
        model_rmsle=test_metrics["rmsle"],
        baseline_rmsle={name: m["rmsle"] for name, m in test_metrics.get("baselines", {}).items()},
        require_beat_baseline=bool(cfg.get("require_beat_baseline", True)),
        bootstrap_resamples=int(cfg["bootstrap_resamples"]),
        confidence_level=float(cfg["confidence_level"]),
        seed=int(params["seed"]),
    )
    if "price_response" not in test_metrics:
        raise DataValidationError(f"{metrics_path} has no price_response: re-run inference_primary_model@{stockcode}")
    if "weekly_response" not in test_metrics:
        raise DataValidationError(f"{metrics_path} has no weekly_response: re-run inference_primary_model@{stockcode}")
    # The served response is the weekly one (the catalogue stage's elasticity x the product's
    # level); the network's per-line curve is context, its checks recorded beside it.
    weekly = test_metrics["weekly_response"]
    price = judge_weekly_response(weekly["response"], price_cfg["elasticity_band"])
    line = judge_price_response(
        test_metrics["price_response"], price_cfg["elasticity_band"], float(price_cfg["rise_tolerance"])
    )
    monotone = line["checks"]["non_increasing"]
    if not monotone["passed"]:  # a network whose per-line demand rises with price is unsound, whatever else
        price["reasons"].append(line["reasons"][0])
        price["status"], price["passed"] = "failed", False
    price["checks"]["non_increasing"] = monotone
    price["line_response"] = line
    price["recommendation"] = weekly["recommendation"]["decision"]
    price["recommended_price"] = weekly["recommendation"]["recommended_price"]
    verdict = {**verdict, "passed": verdict["passed"] and price["passed"],
               "reasons": [*verdict["reasons"], *price["reasons"]], "price_response": price}
    if not price["passed"]:  # an unsound price response fails the gate, whatever fairness says
        verdict["verdict"] = verdict["status"] = "failed"
    write_json(layout.risk_metrics(stockcode), {
        "stockcode": stockcode, "model_version": test_metrics.get("model_version"), **verdict,
    })
    status = verdict["verdict"].upper()
    print(f"assess_model_risk@{stockcode}: {status} (price response: {price['status']}, recommended "
          f"list price {price['recommended_price']:.2f})", flush=True)
    for reason in verdict["reasons"]:
        print(f"  - {reason}", flush=True)


if __name__ == "__main__":
    run_stage(main)
