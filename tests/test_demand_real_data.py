"""The price response on the real five best sellers: ETL, preprocess and a small tuning budget,
then the demand curve as the lineage draws it (slow: ~1 min)."""
import json

import joblib
import numpy as np
import pandas as pd
import polars as pl
import pytest
import yaml
from bench.project_copy import ROOT

from pricing.demand import INSUFFICIENT_PRICE_VARIATION, judge_price_response, reprice
from pricing.etl import CleaningRules, run_etl
from pricing.features import price_feature_positions
from pricing.layout import SPLITS, Layout, load_params
from pricing.price_response import ResponseConfig, estimate_from_lines
from pricing.raw_data import load_raw
from pricing.recommend import Guardrails, served_response
from pricing.training import load_split, read_feature_names
from pricing.transform import transform
from pricing.tuning import tune
from stages import preprocess
from stages.inference_primary_model import demand_and_revenue

BEST_SELLERS = ["85123A", "85099B", "22423", "47566", "20725"]
SMALL_BUDGET = dict(n_trials=4, num_epochs=30, patience=5, pruner_startup_trials=2, pruner_warmup_epochs=2)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A work dir with the real processed data and every best seller preprocessed."""
    root = tmp_path_factory.mktemp("real")
    params = load_params(ROOT)
    etl = params["etl"]
    processed, _ = run_etl(
        load_raw(ROOT / params["data"]["input_path"]),
        CleaningRules(etl["non_product_codes"], etl["non_product_prefixes"]),
        etl["recent_window_days"], etl["days_since_cap"], etl["list_price_weeks"],
    )
    layout = Layout(root)
    layout.processed_df.parent.mkdir(parents=True)
    processed.write_parquet(layout.processed_df)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    layout.etl_metrics.parent.mkdir(parents=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        for stockcode in BEST_SELLERS:
            layout.drift_metrics(stockcode).write_text(json.dumps({"drift_detected": False, "status": "ok"}))
            preprocess.main([stockcode])
    return layout, params, processed


@pytest.fixture(scope="module")
def responses(project):
    layout, params, _ = project
    out = {}
    for stockcode in BEST_SELLERS:
        names = read_feature_names(layout, stockcode)
        splits = {split: load_split(layout, stockcode, split, names) for split in SPLITS}
        result = tune(splits["train"].x, splits["train"].y["log1p_quantity"], splits["val"].x,
                      splits["val"].y["log1p_quantity"], seed=0, price_index=price_feature_positions(names),
                      **SMALL_BUDGET)
        out[stockcode] = (result.model, splits, demand_and_revenue(layout, stockcode, result.model, splits,
                                                                   params["price_response"]))
    return out


def test_curves_of_the_best_sellers_never_rise_and_stay_inside_the_evidence(responses, project):
    _, params, _ = project
    for stockcode, (_, _, response) in responses.items():
        summary = response.summary()
        assert summary["largest_rise"]["lines_rising"] == 0, stockcode
        assert (np.diff(response.curve.demand) <= 1e-9).all(), stockcode
        verdict = judge_price_response(summary, params["price_response"]["elasticity_band"])
        assert verdict["checks"]["non_increasing"]["passed"] and verdict["checks"]["inside_evidence"]["passed"]
        evidenced = response.evidence.evidenced_prices
        if not response.flags:
            assert min(evidenced) <= response.recommended_price <= max(evidenced), stockcode


def test_85123a_has_no_list_price_change_and_says_so(responses):
    response = responses["85123A"][2]
    assert response.evidence.n_changes == 0 and response.evidence.current_price == 2.95
    assert response.flags == [INSUFFICIENT_PRICE_VARIATION] and response.recommended_price == 2.95


def test_85099b_and_47566_changed_their_list_price(responses):
    for stockcode, (low, high) in {"85099B": (1.95, 2.08), "47566": (4.65, 4.95)}.items():
        response = responses[stockcode][2]
        assert response.evidence.n_changes >= 1 and response.flags == []
        assert {low, high} <= set(response.evidence.evidenced_prices), stockcode


def test_recomputed_features_at_the_observed_price_equal_a_test_lines_features(responses, project):
    layout, _, _ = project
    for stockcode, (_, splits, _) in responses.items():
        test = splits["test"]
        columns = list(test.x_raw.columns)
        for row in (0, len(test.x_raw) // 2, len(test.x_raw) - 1):
            line = test.x_raw.iloc[[row]].reset_index(drop=True)
            again = reprice(line, float(line["list_price"].iloc[0])).to_pandas()[columns]
            pd.testing.assert_frame_equal(again, line, check_dtype=False)
            transformer = joblib.load(layout.transformer(stockcode))
            # the model input at the observed price is the line's own: the curve passes through
            # the model's prediction for the line
            assert np.array_equal(transform(transformer, again).to_numpy(), test.x.iloc[[row]].to_numpy())


def test_the_test_lines_list_price_never_reads_their_quantity(project):
    _, _, processed = project
    lines = processed.filter(pl.col("stockcode") == "85123A", pl.col("invoice_date") >= pl.datetime(2011, 3, 1))
    # tier prices differ by quantity, the list price of a week does not
    by_week = lines.group_by(pl.col("invoice_date").dt.truncate("1w")).agg(pl.col("list_price").n_unique())
    assert (by_week["list_price"] == 1).all()
    assert lines["unit_price"].n_unique() > 1


def test_the_portable_numpy_forward_equals_torch_on_the_best_sellers_test_splits(responses, project):
    """What the price API runs (pricing/portable.py, no torch) predicts what the network does."""
    from pricing.model import portable_network
    from pricing.portable import portable_model

    layout, _, _ = project
    for stockcode, (model, splits, _) in responses.items():
        test = splits["test"]
        names = read_feature_names(layout, stockcode)
        portable = portable_model(portable_network(model, names), joblib.load(layout.transformer(stockcode)),
                                  {"stockcode": stockcode})
        raw = test.x_raw[portable.raw_features].to_numpy(dtype=np.float64)
        gap = np.abs(portable.predict_log(portable.model_input(raw)) - model.predict_log(test.x)).max()
        assert gap < 1e-6, (stockcode, gap)


@pytest.fixture(scope="module")
def catalogue(project):
    _, params, processed = project
    return estimate_from_lines(processed, ResponseConfig.from_params(params["price_response_catalogue"]))


@pytest.mark.parametrize("stockcode", ["85123A", "85099B"])
def test_the_served_weekly_curve_falls_with_an_interval_and_the_recommendation_keeps_the_guardrails(
        responses, catalogue, project, stockcode):
    _, params, _ = project
    evidence = responses[stockcode][2].evidence
    evidenced = (min(evidence.evidenced_prices), max(evidence.evidenced_prices))
    served = served_response(catalogue.table, catalogue.price_points, stockcode, evidenced,
                             Guardrails.from_params(params["recommendation"]), 0.2, 25)
    units = np.array([p["weekly_units"] for p in served["curve"]])
    assert (np.diff(units) < 0).all()
    assert all(p["weekly_units_low"] < p["weekly_units"] < p["weekly_units_high"] for p in served["curve"])
    assert any(p["extrapolated"] for p in served["curve"]) and not all(p["extrapolated"] for p in served["curve"])
    row, recommendation = served["response"], served["recommendation"]
    assert row["elasticity_high"] < 0 and row["level"] in ("catalogue", "group", "product")
    assert row["own_changes"] == (0 if stockcode == "85123A" else 1)
    low, high = recommendation["guardrails"]["allowed"]
    assert low <= recommendation["recommended_price"] <= high and recommendation["reasons"]
