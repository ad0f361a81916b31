"""The price API on a model the real lineage approved (the README's main command on a copy of
this project and the real data, tiny budget; built once per module): it loads from the
registry store and the DVC remote the lineage pushed to, serves the lineage's own demand curve
through the NumPy forward, and refuses the model once one byte of it changes in the remote."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests

from app import create_app
from stores.settings import ApiSettings
from pricing import registry
from pricing.layout import Layout
from tests.api_lineage import SC, approve_real_model
from tests.api_models import artifact_hash, tamper
from tests.api_server import api_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def approved(tmp_path_factory, shared_dvc_cache):
    return approve_real_model(tmp_path_factory.mktemp("api-real"), dvc_cache=shared_dvc_cache)


def client_for(registry, remote):
    return create_app(ApiSettings(registry=str(registry), dvc_remote=str(remote), reload_seconds=3600)).test_client()


def test_serves_the_approved_model_with_the_lineages_curve(approved):
    client = client_for(approved.registry, approved.remote)
    assert client.get("/ready").json["models"] == {SC: approved.record.model_version}
    # The weekly curve inference drew, as the record's lineage holds it in the DVC remote (a
    # signed-off candidate's lineage is served, not landed in the checkout).
    md5 = registry.output_md5(approved.record.lineage["stages"], Layout(Path(".")).demand_curve(SC).as_posix())
    curve = pd.read_csv(approved.remote / "files" / "md5" / md5[:2] / md5[2:])
    # ask at the lineage's own grid: evenly spaced, from its first price to its last
    body = client.get(f"/v1/predict-price/{SC}", query_string={
        "unitprice_min": curve["price"].min(), "unitprice_max": curve["price"].max(),
        "num_price_bins": len(curve)}).json
    assert body["model_version"] == approved.record.model_version
    prices = [p["unit_price"] for p in body["prices"]]
    for column in ("weekly_units", "weekly_units_low", "weekly_units_high"):
        served = np.interp(curve["price"], prices, [p[column] for p in body["prices"]])
        np.testing.assert_allclose(served, curve[column], rtol=1e-3)  # a power curve, interpolated
    # 85123A's list price never changed: its own data cannot tell (flagged); the weekly
    # recommendation comes from the catalogue's elasticity, extrapolated, with its reasons
    assert body["flags"][0] == "insufficient_price_variation"
    recommendation = body["recommendation"]
    assert recommendation["basis"] == "weekly" and recommendation["elasticity_level"] == "catalogue"
    assert recommendation["elasticity_interval"][1] < 0 and recommendation["reasons"]
    assert body["optimal_unit_price"] == curve.loc[curve["recommended_revenue"].notna(), "price"].item()
    assert (np.diff([p["weekly_units"] for p in body["prices"]]) < 0).all()


def test_default_range_and_models_route_on_the_real_record(approved):
    client = client_for(approved.registry, approved.remote)
    body = client.get(f"/v1/predict-price/{SC}").json
    assert len(body["prices"]) == 100 and body["evidence"]["list_price_changes"] == 0
    current = body["recommendation"]["current_price"]
    assert [p["extrapolated"] for p in body["prices"]] == [abs(p["unit_price"] - current) > 1e-9 for p in body["prices"]]
    (model,) = client.get("/v1/models").json["models"]
    assert model["model_md5"] == approved.record.model_md5 and f"inference_primary_model@{SC}" in model["stages"]


def test_real_http_on_the_real_model(approved):
    with api_server(approved.registry, approved.remote) as base:
        body = requests.get(f"{base}/v1/predict-price/{SC}", params={"num_price_bins": 100}, timeout=30).json()
    assert body["model_version"] == approved.record.model_version and len(body["prices"]) == 100


@pytest.mark.parametrize("path", ["npz", "json"])
def test_one_byte_changed_in_the_remote_is_refused(approved, tmp_path, path):
    remote = tmp_path / "remote"
    shutil.copytree(approved.remote, remote)
    layout = Layout()
    target = layout.portable_model_arrays(SC) if path == "npz" else layout.portable_model_spec(SC)
    digest = artifact_hash(approved.record, target)
    tamper(remote, digest)
    client = client_for(approved.registry, remote)
    ready = client.get("/ready")
    assert ready.status_code == 503
    assert digest in ready.json["failures"][0]["error"] and "refused" in ready.json["failures"][0]["error"]
    assert client.get(f"/v1/predict-price/{SC}").status_code == 503
