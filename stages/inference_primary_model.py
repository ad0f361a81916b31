"""dvc stage `inference_primary_model@<stockcode>`: test metrics, predictions, SHAP, demand curve.

Loads the checkpoint safely (CPU, weights only), refuses one whose feature names or
transformer hash differ from the current preprocess outputs, predicts every test row, and
explains the predictions with DeepSHAP against a seeded background of train rows. Checks
that the portable (NumPy) model predicts what the network does. Draws the product's demand
and revenue curves over its list price (``pricing/demand.py``) on its most recent lines, with
the evidence and the recommended price; the risk stage judges them.
"""
from __future__ import annotations

import hashlib

import joblib
import numpy as np
import pandas as pd
import polars as pl

from pricing.baselines import baseline_metrics, baseline_summary
from pricing.demand import context_lines, price_evidence, price_response
from pricing.errors import DataValidationError
from pricing.evaluation import quantity_from_log, regression_metrics
from pricing.explain import beeswarm_points, explain, importance
from pricing.layout import SPLITS, Layout, load_params
from pricing.features import LIST_PRICE
from pricing.model import load_checkpoint
from pricing.portable import PortableModel
from pricing.recommend import Guardrails, served_response
from pricing.stockcodes import normalise_stockcode
from pricing.training import file_md5, load_split, read_feature_names, seed_everything
from pricing.transform import transform
from pricing.versions import model_version
from stages.common import atomic_path, run_stage, stockcode_arg, write_json


def write_parquet(frame: pd.DataFrame, target) -> None:
    with atomic_path(target) as tmp:
        frame.to_parquet(tmp, index=False)


def write_csv(frame: pd.DataFrame, target) -> None:
    with atomic_path(target) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6g")


def weekly_curve_table(weekly: dict) -> pd.DataFrame:
    """The weekly curve for `dvc plots show`, the recommended price marked by its own series."""
    table = pd.DataFrame(weekly["curve"])
    table["extrapolated"] = table["extrapolated"].astype(int)
    chosen = weekly["recommendation"]["recommended_price"]
    table["recommended_revenue"] = table["weekly_revenue"].where(np.isclose(table["price"], chosen))
    return table


# The NumPy forward runs the same float32 weights; only summation order may differ.
PORTABLE_TOLERANCE = 1e-5


def portable_difference(layout: Layout, stockcode: str, model, test) -> float:
    """Max |portable − torch| on the test split (log1p scale); refuses a portable model that differs."""
    for path in (layout.portable_model_arrays(stockcode), layout.portable_model_spec(stockcode)):
        if not path.exists():
            raise DataValidationError(f"{path} is missing: run tune_primary_model@{stockcode} first")
    portable = PortableModel.load(layout.portable_model_arrays(stockcode), layout.portable_model_spec(stockcode))
    raw = test.x_raw[portable.raw_features].to_numpy(dtype=np.float64)
    gap = float(np.abs(portable.predict_log(portable.model_input(raw)) - model.predict_log(test.x)).max())
    if gap > PORTABLE_TOLERANCE:
        raise DataValidationError(f"the portable model differs from the checkpoint by {gap:.2e}: re-tune")
    return gap


def demand_and_revenue(layout: Layout, stockcode: str, model, splits, cfg):
    """The price response of the product's most recent lines, over the evidence of all its lines."""
    transformer = joblib.load(layout.transformer(stockcode))
    columns = list(splits["test"].x_raw.columns)

    def predict(raw: np.ndarray) -> np.ndarray:
        return quantity_from_log(model.predict_log(transform(transformer, pd.DataFrame(raw, columns=columns))))

    if any(part.meta is None for part in splits.values()):
        raise DataValidationError(f"the price evidence needs the line dates: re-run preprocess@{stockcode}")
    evidence = price_evidence(
        np.concatenate([part.x_raw[LIST_PRICE].to_numpy() for part in splits.values()]),
        pd.concat([part.meta["invoice_date"] for part in splits.values()]),
        min_weeks=int(cfg["min_weeks_at_price"]),
    )
    return price_response(
        context_lines(splits["test"].x_raw, int(cfg["context_lines"])), evidence, predict, columns,
        n_points=int(cfg["grid_points"]), diagnostic_span=float(cfg["diagnostic_span"]),
    )


def weekly_response(layout: Layout, stockcode: str, evidence, params) -> dict:
    """The product's served price response: its row of the catalogue stage, its weekly curve and
    the recommended price inside the guardrails."""
    for path in (layout.price_response_table, layout.price_points):
        if not path.exists():
            raise DataValidationError(f"{path} is missing: run estimate_price_response first")
    evidenced = evidence.evidenced_range
    return served_response(
        pl.read_parquet(layout.price_response_table), pl.read_parquet(layout.price_points),
        normalise_stockcode(stockcode), evidenced, Guardrails.from_params(params.get("recommendation")),
        float(params["price_response"]["diagnostic_span"]), int(params["price_response"]["grid_points"]))


def main(argv: list[str]) -> None:
    stockcode = stockcode_arg(argv)
    layout = Layout()
    params = load_params(layout.root)
    seed, cfg, price_cfg = int(params["seed"]), params["inference"], params["price_response"]
    attribute = params["risk"]["sensitive_attribute"]
    seed_everything(seed, params.get("tune", {}).get("torch_threads", 1))

    checkpoint_path = layout.model_checkpoint(stockcode)
    if not checkpoint_path.exists():
        raise DataValidationError(f"{checkpoint_path} is missing: run tune_primary_model@{stockcode} first")
    data = checkpoint_path.read_bytes()
    model, payload = load_checkpoint(checkpoint_path)
    names = read_feature_names(layout, stockcode)
    if payload["feature_names"] != names:
        raise DataValidationError("the checkpoint's feature names differ from feature_names.json: re-tune")
    transformer_md5 = file_md5(layout.transformer(stockcode))
    if payload["transformer_md5"] != transformer_md5:
        raise DataValidationError(
            f"the checkpoint expects transformer md5 {payload['transformer_md5']}, found {transformer_md5}: re-tune"
        )
    splits = {split: load_split(layout, stockcode, split, names) for split in SPLITS}
    train, test = splits["train"], splits["test"]
    if attribute not in test.x_raw.columns:
        raise DataValidationError(f"sensitive attribute {attribute!r} is not among the raw test features")

    pred_log = model.predict_log(test.x)  # every test row, in one pass
    y_pred = quantity_from_log(pred_log)
    y_true = test.y["quantity"].to_numpy()
    metrics = regression_metrics(y_true, y_pred)
    baselines = baseline_metrics(train.x_raw, train.y["quantity"], test.x_raw, test.y["quantity"])
    portable_gap = portable_difference(layout, stockcode, model, test)
    response = demand_and_revenue(layout, stockcode, model, splits, price_cfg)
    summary = response.summary()
    weekly = weekly_response(layout, stockcode, response.evidence, params)

    results = pd.DataFrame({
        "y_true": y_true,
        "y_pred": y_pred,
        "y_pred_log1p": np.clip(pred_log, 0.0, None),
        LIST_PRICE: test.x_raw[LIST_PRICE].to_numpy(dtype=np.float64),
        attribute: test.x_raw[attribute].to_numpy(),
    })
    if test.meta is not None:
        for column in ("invoice_no", "invoice_date", "customer_id"):
            if column in test.meta.columns:
                results[column] = test.meta[column].to_numpy()

    explanation = explain(
        model,
        model.clip_inputs(train.x).numpy(),
        model.clip_inputs(test.x).numpy(),  # what the network actually sees
        names,
        seed=seed,
        background_size=int(cfg["shap_background_size"]),
        max_rows=cfg.get("shap_max_rows"),
    )
    explained_inputs = pd.DataFrame(
        model.clip_inputs(test.x).numpy()[explanation.row_index], columns=names
    )
    shap_frame = explanation.values.copy()
    shap_frame.insert(0, "test_row", explanation.row_index)
    ranking = importance(explanation.values)
    points = beeswarm_points(explanation.values, explained_inputs, cfg.get("beeswarm_top_features"))

    payload_out = {
        "stockcode": stockcode,
        "split": "test",
        **metrics,  # mse (log scale), mae, rmsle (quantity scale), n_rows
        "model_version": model_version(hashlib.md5(data).hexdigest()),
        "baselines": baselines,
        "portable_model": {"max_abs_difference_log1p": portable_gap, "tolerance": PORTABLE_TOLERANCE},
        # the network's per-line response over the evidence (context; the gate judges the weekly one)
        "price_response": summary,
        "weekly_response": weekly,
        "shap": {
            "explainer": "DeepExplainer",
            "output_scale": "log1p(quantity)",
            "background_size": explanation.background_size,
            "explained_rows": int(len(explanation.row_index)),
            "expected_value": explanation.expected_value,
            "max_additivity_error": explanation.max_additivity_error,
            "top_features": ranking["feature"].head(5).tolist(),
        },
    }
    write_parquet(results, layout.inference_results(stockcode))
    write_parquet(shap_frame, layout.shap_values(stockcode))
    write_csv(ranking, layout.shap_importance(stockcode))
    write_csv(points, layout.shap_beeswarm(stockcode))
    write_csv(weekly_curve_table(weekly), layout.demand_curve(stockcode))
    write_json(layout.test_metrics(stockcode), payload_out)
    recommendation = weekly["recommendation"]
    print(
        f"inference_primary_model@{stockcode}: {metrics['n_rows']} test rows, rmsle {metrics['rmsle']:.4f}, "
        f"mae {metrics['mae']:.2f}, log-mse {metrics['mse']:.4f} (baselines: {baseline_summary(baselines)}); "
        f"top SHAP features: {', '.join(ranking['feature'].head(3))}; {recommendation['decision']} at "
        f"{recommendation['recommended_price']:.2f} (current {recommendation['current_price']:.2f}; elasticity "
        f"{recommendation['elasticity']:.2f}, {recommendation['elasticity_level']} level; "
        f"{summary['evidence']['list_price_changes']} own list-price changes)",
        flush=True,
    )


if __name__ == "__main__":
    run_stage(main)
