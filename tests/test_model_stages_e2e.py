"""Stages 4–6 (tune → inference + SHAP → risk).

Fast: the three stage CLIs in-process on synthetic `preprocess` outputs of the real shape.
Slow: `dvc repro assess_model_risk@85123A` on the real data in a throw-away project copy.
"""
import hashlib
import json

import joblib
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from panel_factory import write_catalogue_outputs
from bench.project_copy import ROOT, make_project_copy, run, stages_run
from sklearn.preprocessing import StandardScaler

from pricing.baselines import BASELINES
from pricing.errors import DataValidationError
from pricing.layout import SPLITS, Layout
from pricing.transform import fit_transformer, transform
from stages import assess_model_risk, inference_primary_model, tune_primary_model

STOCKCODE = "85123A"
TINY = {
    "tune": {"n_trials": 3, "timeout": 120, "num_epochs": 6, "patience": 3,
             "pruner_startup_trials": 2, "pruner_warmup_epochs": 2,
             "space": {"n_layers": [1, 2], "n_units": [4, 16], "batch_sizes": [64, 128]}},
    "inference": {"shap_background_size": 20, "shap_max_rows": 50, "beeswarm_top_features": 4},
    "risk": {"min_group_count": 5, "require_beat_baseline": False},
}


def merged_params(changes: dict) -> dict:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in changes.items():
        if isinstance(values, dict) and isinstance(params.get(section), dict):
            params[section] = {**params[section], **values}
        else:
            params[section] = values
    return params


NUMERIC = ["list_price", "list_price_to_reference", "product_reference_price", "hour",
           "customer_product_lines_before", "customer_product_mean_quantity"]
CATEGORICAL = ["is_registered"]


def write_synthetic_preprocess(root, stockcode=STOCKCODE, sizes=(300, 100, 100), seed=0):
    """Files of the shape `preprocess@<sc>` writes (a real fitted transformer), with a learnable
    list price → quantity relation: the list price changes from week to week."""
    layout = Layout(root)
    rng = np.random.default_rng(seed)
    n = sum(sizes)
    when = pd.Timestamp("2011-01-03") + pd.to_timedelta(np.sort(rng.uniform(0, 24 * 7 * 40, n)), unit="h")
    week = (when - when[0]).days // 7
    list_price = np.array([2.55, 2.95, 3.25])[week % 3]
    raw = pd.DataFrame({
        "list_price": list_price,
        "product_reference_price": 2.9,
        "hour": rng.integers(8, 18, size=n).astype(float),
        "customer_product_lines_before": rng.integers(0, 4, size=n),
        "customer_product_mean_quantity": rng.uniform(0, 20, size=n),
        "is_registered": (rng.random(n) < 0.8).astype(int),
    })
    raw["list_price_to_reference"] = raw["list_price"] / raw["product_reference_price"]
    raw = raw[[*NUMERIC, *CATEGORICAL]]
    lam = np.exp(3.0 - 0.8 * raw["list_price"] + 0.7 * raw["is_registered"])
    quantity = rng.poisson(lam) + 1
    transformer = fit_transformer(raw.iloc[: sizes[0]], NUMERIC, CATEGORICAL, ["list_price"])
    names = [str(name) for name in transformer.get_feature_names_out()]
    out = layout.preprocessed_dir(stockcode)
    out.mkdir(parents=True, exist_ok=True)
    start = 0
    for split, size in zip(SPLITS, sizes):
        part = raw.iloc[start : start + size].reset_index(drop=True)
        q = quantity[start : start + size]
        transform(transformer, part).to_parquet(layout.split_features(stockcode, split, True))
        part.to_parquet(layout.split_features(stockcode, split, False))
        pd.DataFrame({"quantity": q, "log1p_quantity": np.log1p(q.astype(float))}).to_parquet(
            layout.split_target(stockcode, split))
        pd.DataFrame({
            "invoice_no": [f"{split}{i}" for i in range(size)],
            "customer_id": [None] * size,
            "invoice_date": when[start : start + size],
            "stockcode": stockcode,
        }).to_parquet(layout.split_meta(stockcode, split))
        start += size
    joblib.dump(transformer, layout.transformer(stockcode))
    layout.feature_names(stockcode).write_text(json.dumps(names))
    return layout


@pytest.fixture
def synthetic_project(tmp_path, monkeypatch):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(merged_params(TINY), sort_keys=False))
    write_synthetic_preprocess(tmp_path)
    write_catalogue_outputs(Layout(tmp_path), STOCKCODE, current_price=2.95)
    monkeypatch.chdir(tmp_path)
    return Layout(tmp_path)


def run_chain():
    tune_primary_model.main([STOCKCODE])
    inference_primary_model.main([STOCKCODE])
    assess_model_risk.main([STOCKCODE])


def test_three_stages_on_synthetic_data(synthetic_project, capsys):
    layout = synthetic_project
    run_chain()
    printed = capsys.readouterr().out
    assert sum(line.startswith("trial ") for line in printed.splitlines()) == TINY["tune"]["n_trials"]

    payload = torch.load(layout.model_checkpoint(STOCKCODE), map_location="cpu", weights_only=True)
    assert payload["feature_names"] == json.loads(layout.feature_names(STOCKCODE).read_text())
    assert payload["transformer_md5"] == hashlib.md5(layout.transformer(STOCKCODE).read_bytes()).hexdigest()

    val = json.loads(layout.val_metrics(STOCKCODE).read_text())
    for key in ("mse", "mae", "rmsle", "model_version", "hparams", "optimizer", "batch_size", "lr"):
        assert key in val, key
    assert set(val["baselines"]) == set(BASELINES) and val["n_rows"] == 100
    history = pd.read_csv(layout.tuning_history(STOCKCODE))
    assert len(history) == TINY["tune"]["n_trials"] and {"trial", "val_mse", "best_val_mse"} <= set(history)

    test = json.loads(layout.test_metrics(STOCKCODE).read_text())
    assert test["n_rows"] == 100 and test["model_version"] == val["model_version"]
    assert set(test["baselines"]) == set(BASELINES)
    results = pd.read_parquet(layout.inference_results(STOCKCODE))
    assert len(results) == 100  # every test row, not the last batch
    y_test = pd.read_parquet(layout.split_target(STOCKCODE, "test"))
    assert np.array_equal(results["y_true"].to_numpy(), y_test["quantity"].to_numpy())
    assert {"y_true", "y_pred", "list_price", "is_registered"} <= set(results.columns)
    assert (results["y_pred"] >= 0).all()

    shap_values = pd.read_parquet(layout.shap_values(STOCKCODE))
    assert len(shap_values) == 50 and list(shap_values.columns[1:]) == payload["feature_names"]
    ranking = pd.read_csv(layout.shap_importance(STOCKCODE))
    recomputed = shap_values.drop(columns="test_row").abs().mean()
    for feature, value in zip(ranking["feature"], ranking["mean_abs_shap"]):
        assert value == pytest.approx(recomputed[feature], rel=1e-4)
    beeswarm = pd.read_csv(layout.shap_beeswarm(STOCKCODE))
    assert len(beeswarm) == 50 * 4
    assert test["shap"]["max_additivity_error"] < 1e-3

    risk = json.loads(layout.risk_metrics(STOCKCODE).read_text())
    # The groups are those of the predictions inference wrote, counted again here: 85 and 15.
    registered = results["is_registered"].astype(int).value_counts()
    assert (risk["counts"]["privileged"], risk["counts"]["unprivileged"]) == (registered[1], registered[0]) == (85, 15)
    # What the seeded synthetic data and the tiny budget give (a change to the gate that moves
    # it must say so here): both gaps' intervals straddle ±0.25 with 15 unregistered lines, so
    # the gate cannot tell — not a pass, and each check says why.
    assert risk["verdict"] == "not_assessable" and risk["passed"] is False
    assert [reason.split(":")[0] for reason in risk["reasons"]] == [
        "mean_outcome_difference not assessable", "mae_diff not assessable"]
    assert risk["groups"]["privileged"]["count"] + risk["groups"]["unprivileged"]["count"] == 100
    assert risk["model_version"] == val["model_version"]


def test_same_data_code_params_give_the_same_model_bytes(synthetic_project):
    path = synthetic_project.model_checkpoint(STOCKCODE)
    tune_primary_model.main([STOCKCODE])
    first = path.read_bytes()
    tune_primary_model.main([STOCKCODE])
    assert path.read_bytes() == first


def test_inference_refuses_a_checkpoint_for_another_transformer(synthetic_project):
    layout = synthetic_project
    tune_primary_model.main([STOCKCODE])
    joblib.dump(StandardScaler().fit([[0.0], [1.0]]), layout.transformer(STOCKCODE))
    with pytest.raises(DataValidationError, match="transformer md5"):
        inference_primary_model.main([STOCKCODE])


def test_risk_stage_records_a_failure_and_still_returns(synthetic_project):
    layout = synthetic_project
    params = yaml.safe_load(layout.params_file.read_text())
    params["risk"].update(min_group_count=10_000)
    layout.params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    run_chain()  # no exception: the verdict is data
    risk = json.loads(layout.risk_metrics(STOCKCODE).read_text())
    assert risk["passed"] is False
    assert any("fewer than min_group_count=10000" in reason for reason in risk["reasons"])


def test_missing_inputs_are_a_validation_error(tmp_path, monkeypatch):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(merged_params(TINY)))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataValidationError, match="preprocess@85123A"):
        tune_primary_model.main([STOCKCODE])


# -- slow: the real thing through dvc ------------------------------------------------------
GENERATED = ["dvc.lock", "data/original_df.parquet", "data/processed_df.parquet", "data/preprocessed",
             "data/dfn_inference_results_*", "data/shap_values_*", "metrics", "plots", "reports", "models"]


def as_clean_clone(project):
    """Drop pipeline outputs the work tree may hold untracked (copied by make_project_copy):
    git refuses nothing, but dvc will not write an output that git tracks."""
    listed = run(["git", "ls-files", "--", *GENERATED], project).stdout.split()
    if listed:
        run(["git", "rm", "-r", "-q", "--cached", "--", *listed], project)
        for name in listed:
            (project / name).unlink(missing_ok=True)
        run(["git", "-c", "user.name=test", "-c", "user.email=test@example.com", "commit", "-qm", "clean"],
            project)
    return project


@pytest.mark.slow
def test_dvc_repro_assess_model_risk_end_to_end(tmp_path):
    project = as_clean_clone(make_project_copy(tmp_path / "project", {"stockcodes": [STOCKCODE], **TINY}))
    repro = run(["dvc", "repro", f"assess_model_risk@{STOCKCODE}"], project)
    ran = stages_run(repro.stdout)
    for stage in ("tune_primary_model", "inference_primary_model", "assess_model_risk"):
        assert f"{stage}@{STOCKCODE}" in ran
    layout = Layout(project)
    for path in (
        layout.model_checkpoint(STOCKCODE), layout.val_metrics(STOCKCODE), layout.tuning_history(STOCKCODE),
        layout.test_metrics(STOCKCODE), layout.inference_results(STOCKCODE), layout.shap_values(STOCKCODE),
        layout.shap_importance(STOCKCODE), layout.shap_beeswarm(STOCKCODE), layout.risk_metrics(STOCKCODE),
    ):
        assert path.is_file() and path.stat().st_size > 0, path
    n_test = len(pd.read_parquet(layout.split_target(STOCKCODE, "test")))
    assert len(pd.read_parquet(layout.inference_results(STOCKCODE))) == n_test
    assert json.loads(layout.test_metrics(STOCKCODE).read_text())["n_rows"] == n_test
    assert run(["dvc", "status"], project).stdout.strip() == "Data and pipelines are up to date."

    metrics = run(["dvc", "metrics", "show", "--json"], project).stdout
    for path in (layout.val_metrics(STOCKCODE), layout.test_metrics(STOCKCODE), layout.risk_metrics(STOCKCODE)):
        assert str(path.relative_to(project)) in metrics
    plots = run(["dvc", "plots", "show", "--json"], project).stdout
    for path in (layout.tuning_history(STOCKCODE), layout.shap_importance(STOCKCODE), layout.shap_beeswarm(STOCKCODE)):
        assert str(path.relative_to(project)) in plots
    # a second repro is a no-op
    assert stages_run(run(["dvc", "repro", f"assess_model_risk@{STOCKCODE}"], project).stdout) == []


def test_price_response_in_the_lineage(synthetic_project):
    layout = synthetic_project
    params = yaml.safe_load(layout.params_file.read_text())
    params["tune"].update(num_epochs=80, patience=10)  # enough to learn the synthetic price effect
    layout.params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    run_chain()
    from pricing.model import load_checkpoint
    from pricing.portable import PortableModel
    from pricing.training import load_split, read_feature_names

    # the portable (NumPy) model predicts what the torch network does, on the test split
    names = read_feature_names(layout, STOCKCODE)
    test = load_split(layout, STOCKCODE, "test", names)
    model, _ = load_checkpoint(layout.model_checkpoint(STOCKCODE))
    portable = PortableModel.load(layout.portable_model_arrays(STOCKCODE), layout.portable_model_spec(STOCKCODE))
    raw = test.x_raw[portable.raw_features].to_numpy(dtype=float)
    assert np.abs(portable.predict_log(portable.model_input(raw)) - model.predict_log(test.x)).max() < 1e-6
    np.testing.assert_allclose(portable.model_input(raw), test.x.to_numpy(), atol=1e-12)

    # the served curve: weekly units over the list price, falling, with an interval, the part
    # beyond the product's own list prices marked
    curve = pd.read_csv(layout.demand_curve(STOCKCODE))
    assert (np.diff(curve["weekly_units"]) < 0).all()
    assert (curve["weekly_units_low"] < curve["weekly_units"]).all() and (curve["weekly_units"] < curve["weekly_units_high"]).all()
    assert curve["recommended_revenue"].notna().sum() == 1
    inside = curve["price"].between(2.55, 3.25)
    assert (curve["extrapolated"] == (~inside).astype(int)).all()
    metrics = json.loads(layout.test_metrics(STOCKCODE).read_text())
    assert metrics["price_response"]["evidence"]["list_price_changes"] > 10
    weekly = metrics["weekly_response"]
    assert weekly["evidenced_range"] == [2.55, 3.25] and weekly["response"]["level"] == "catalogue"
    recommendation = weekly["recommendation"]
    low, high = recommendation["guardrails"]["allowed"]
    assert low <= recommendation["recommended_price"] <= high and recommendation["reasons"]
    risk = json.loads(layout.risk_metrics(STOCKCODE).read_text())
    price = risk["price_response"]
    assert price["checks"]["non_increasing"]["passed"] and price["checks"]["elasticity_interval"]["passed"]
    assert price["status"] == "passed" and price["level"] == "catalogue" and price["elasticity_interval"][1] < 0


def test_a_checkpoint_whose_demand_rises_with_price_is_rejected(synthetic_project):
    """A hand-built plain network whose demand rises with the list price: the risk stage must
    reject it with the price response named, whatever its other scores."""
    from pricing.model import build_model, checkpoint_bytes, hparams_of, portable_network
    from pricing.portable import portable_model
    from pricing.training import file_md5, load_split, read_feature_names

    layout = synthetic_project
    tune_primary_model.main([STOCKCODE])  # a real checkpoint first, then replace it by hand
    names = read_feature_names(layout, STOCKCODE)
    hp = hparams_of(len(names), [2], [0.0], False)
    model = build_model(hp)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        first, last = model.net[0], model.net[2]
        first.weight[0, names.index("list_price")] = 1.0  # demand rises with the list price
        first.bias[0] = 3.0
        last.weight[0, 0] = 1.0
    model.set_input_range(load_split(layout, STOCKCODE, "train", names).x).eval()
    md5 = file_md5(layout.transformer(STOCKCODE))
    layout.model_checkpoint(STOCKCODE).write_bytes(checkpoint_bytes(model, hp, names, md5, STOCKCODE))
    portable_model(portable_network(model, names), joblib.load(layout.transformer(STOCKCODE)),
                   {"stockcode": STOCKCODE}).save(layout.portable_model_arrays(STOCKCODE),
                                                  layout.portable_model_spec(STOCKCODE))
    inference_primary_model.main([STOCKCODE])
    assess_model_risk.main([STOCKCODE])
    risk = json.loads(layout.risk_metrics(STOCKCODE).read_text())
    assert risk["passed"] is False and risk["price_response"]["status"] == "failed"
    assert not risk["price_response"]["checks"]["non_increasing"]["passed"]
    assert any("price response unsound: predicted demand rises with the list price" in r for r in risk["reasons"])
