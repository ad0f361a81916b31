"""The price API's weekly answer: a model approved with a weekly response (the catalogue stage's
elasticity x the product's level) answers weekly units with their interval, the elasticity with
its level, and the lineage's recommendation with its reasons; prices beyond the product's own
list prices are answered by the elasticity, marked, never flat."""
from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pytest

from app import create_app
from stores.settings import ApiSettings
from tests.api_models import publish, weekly_response

SC = "85123A"
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


@pytest.fixture
def client(tmp_path):
    store, remote = tmp_path / "registry", tmp_path / "remote"
    publish(store, remote, SC, now=T0, weekly=weekly_response(2.75, (2.5, 2.75)))
    return create_app(ApiSettings(registry=str(store), dvc_remote=str(remote), reload_seconds=0.0)).test_client()


def test_the_answer_is_weekly_units_with_an_interval_falling_beyond_the_evidence(client):
    body = client.get(f"/v1/predict-price/{SC}?unitprice_min=2.0&unitprice_max=3.5&num_price_bins=16").json
    points = body["prices"]
    units = np.array([p["weekly_units"] for p in points])
    assert (np.diff(units) < 0).all()  # non-flat on both sides of the evidence
    for point in points:
        assert point["weekly_units_low"] < point["weekly_units"] < point["weekly_units_high"]
        assert point["weekly_revenue"] == pytest.approx(point["unit_price"] * point["weekly_units"])
        assert point["extrapolated"] == (not 2.5 <= point["unit_price"] <= 2.75)
    at_current = min(points, key=lambda p: abs(p["unit_price"] - 2.75))
    # the interval widens away from the current price: the elasticity's uncertainty grows with the step
    width = lambda p: p["weekly_units_high"] / p["weekly_units_low"]  # noqa: E731
    assert width(points[0]) > width(at_current) and width(points[-1]) > width(at_current)
    weekly = body["weekly_response"]
    assert weekly["level"] == "catalogue" and weekly["elasticity_interval"] == [-1.8, -1.2]


def test_the_recommendation_is_the_lineages_with_its_reasons(client):
    body = client.get(f"/v1/predict-price/{SC}").json
    recommendation = body["recommendation"]
    assert recommendation["basis"] == "weekly" and recommendation["decision"] == "move"
    assert body["optimal_unit_price"] == recommendation["unit_price"] == 2.53  # 8 % down: the ladder's step
    assert recommendation["reasons"][0].startswith("guardrail:")
    assert recommendation["gain_interval"][0] > 0 and recommendation["elasticity_level"] == "catalogue"
    assert body["max_predicted_sales"] == pytest.approx(2.53 * recommendation["weekly_units"])
    models = client.get("/v1/models").json["models"]
    assert models[0]["recommended_price"] == 2.53 and models[0]["elasticity_level"] == "catalogue"


def test_an_unclear_gain_holds_the_current_price(tmp_path):
    store, remote = tmp_path / "registry", tmp_path / "remote"
    publish(store, remote, SC, now=T0, weekly=weekly_response(2.75, (2.5, 2.75), elasticity=-1.0, spread=0.6))
    client = create_app(ApiSettings(registry=str(store), dvc_remote=str(remote), reload_seconds=0.0)).test_client()
    recommendation = client.get(f"/v1/predict-price/{SC}").json["recommendation"]
    assert recommendation["decision"] == "hold" and recommendation["unit_price"] == 2.75
    assert recommendation["gain_interval"][0] < 0 < recommendation["gain_interval"][1]
    assert recommendation["reasons"][-1].startswith("interval:")
