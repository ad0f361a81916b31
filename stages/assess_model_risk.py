"""dvc stage `assess_model_risk@<stockcode>`: per-group error, group gaps and a pass/fail verdict.

Records the verdict (`verdict`: passed / failed / not_assessable; `passed`, `reasons`) and
exits 0 either way: acting on it (approval
or rejection) belongs to orchestration.
"""
from __future__ import annotations

import json

import pandas as pd

from pricing.errors import DataValidationError
from pricing.fairness import assess
from pricing.layout import Layout, load_params
from stages.common import run_stage, stockcode_arg, write_json


def main(argv: list[str]) -> None:
    stockcode = stockcode_arg(argv)
    layout = Layout()
    params = load_params(layout.root)
    cfg = params["risk"]
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
    write_json(layout.risk_metrics(stockcode), {
        "stockcode": stockcode, "model_version": test_metrics.get("model_version"), **verdict,
    })
    status = verdict["verdict"].upper()
    print(f"assess_model_risk@{stockcode}: {status}", flush=True)
    for reason in verdict["reasons"]:
        print(f"  - {reason}", flush=True)


if __name__ == "__main__":
    run_stage(main)
