"""SHAP: names stay aligned with values (checked on models whose answer is known)."""
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from pricing.explain import beeswarm_points, explain, importance, seeded_rows
from pricing.model import DemandNet

# deliberately not in alphabetical order, so any sort of names alone would misalign them
NAMES = ["zeta", "alpha", "mid", "beta", "omega"]


def data(n, seed):
    return np.random.default_rng(seed).normal(size=(n, len(NAMES))).astype(np.float32)


def one_feature_model(index):
    """A ReLU network whose output depends on input ``index`` only."""
    torch.manual_seed(0)
    model = DemandNet(len(NAMES), [6], 0.0)
    with torch.no_grad():
        first = model.net[0].weight
        keep = first[:, index].clone()
        first.zero_()
        first[:, index] = keep
    return model.eval()


@pytest.mark.parametrize("index", [1, 3])
def test_only_the_used_feature_gets_importance(index):
    model = one_feature_model(index)
    result = explain(model, data(80, 0), data(30, 1), NAMES, seed=0, background_size=40)
    assert list(result.values.columns) == NAMES
    others = result.values.drop(columns=NAMES[index]).to_numpy()
    assert np.abs(others).max() < 1e-6
    ranking = importance(result.values)
    assert ranking.loc[0, "feature"] == NAMES[index]
    assert ranking.loc[0, "mean_abs_shap"] > 0 and ranking["mean_abs_shap"].iloc[1:].max() < 1e-6
    assert result.max_additivity_error < 1e-4
    assert result.background_size == 40


def test_linear_model_values_and_ranking_by_hand():
    weights = np.array([0.5, -3.0, 0.0, 1.0, 2.0], dtype=np.float32)
    model = nn.Linear(len(NAMES), 1)
    with torch.no_grad():
        model.weight.copy_(torch.tensor(weights).reshape(1, -1))
        model.bias.fill_(0.3)
    background, rows = data(50, 2), data(20, 3)
    result = explain(model, background, rows, NAMES, seed=0, background_size=1000)
    expected = weights * (rows - background.mean(axis=0))  # exact SHAP of a linear model
    assert result.values.to_numpy() == pytest.approx(expected, abs=1e-5)
    ranking = importance(result.values)
    manual = np.abs(expected).mean(axis=0)
    assert ranking["feature"].tolist() == [NAMES[i] for i in np.argsort(-manual)]
    for feature, value in zip(ranking["feature"], ranking["mean_abs_shap"]):
        assert value == pytest.approx(manual[NAMES.index(feature)], abs=1e-5)
    assert ranking["rank"].tolist() == [1, 2, 3, 4, 5]


def test_background_and_rows_are_seeded():
    assert np.array_equal(seeded_rows(100, 10, 4), seeded_rows(100, 10, 4))
    assert not np.array_equal(seeded_rows(100, 10, 4), seeded_rows(100, 10, 5))
    assert np.array_equal(seeded_rows(5, 10, 4), np.arange(5))
    model = one_feature_model(1)
    a = explain(model, data(200, 0), data(50, 1), NAMES, seed=3, background_size=20, max_rows=10)
    b = explain(model, data(200, 0), data(50, 1), NAMES, seed=3, background_size=20, max_rows=10)
    assert np.array_equal(a.values.to_numpy(), b.values.to_numpy())
    assert len(a.values) == 10 and len(set(a.row_index)) == 10


def test_beeswarm_points_follow_the_ranking():
    shap_values = pd.DataFrame({"a": [0.1, -0.1], "b": [2.0, -1.0], "c": [0.0, 0.5]})
    inputs = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0], "c": [5.0, 6.0]})
    points = beeswarm_points(shap_values, inputs, top_features=2)
    assert points["feature"].tolist() == ["b", "b", "c", "c"]
    assert points["feature_rank"].tolist() == [1, 1, 2, 2]
    assert points["shap_value"].tolist() == [2.0, -1.0, 0.0, 0.5]
    assert points["feature_value"].tolist() == [3.0, 4.0, 5.0, 6.0]
