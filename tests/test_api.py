"""The price API through Flask's test client: every route and error, CORS, the reload, refusals.

Models are hand-made (tests/api_models.py): real npz/json/parquet files in a real registry
store and DVC-layout remote, with their real md5s."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from app import create_app
from app.predict import DEFAULT_PRICE_BINS, MAX_PRICE_BINS
from stores.settings import ApiSettings
from pricing import registry
from tests.api_models import PARAMS, artifact_hash, object_path, publish, tamper
from pricing.layout import Layout

SC = "85123A"
FLAT = "22423"  # its list price never changed
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


@pytest.fixture
def places(tmp_path):
    return tmp_path / "registry", tmp_path / "remote"


def make_app(places, reload_seconds=0.0, cors=()):
    store, remote = places
    return create_app(ApiSettings(registry=str(store), dvc_remote=str(remote), reload_seconds=reload_seconds,
                               cors_origins=list(cors)))


@pytest.fixture
def served(places):
    store, remote = places
    first = publish(store, remote, SC, now=T0)
    publish(store, remote, FLAT, price_weeks=((3.0, 20),), now=T0)
    return first, make_app(places).test_client()


def error_of(response, status):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.is_json, response.get_data(as_text=True)
    return response.json["error"]


# -- health, ready, models ---------------------------------------------------------------------
def test_health_answers_alive(served):
    _, client = served
    assert client.get("/health").json == {"status": "alive"}


def test_ready_lists_the_loaded_models(served):
    first, client = served
    body = client.get("/ready").json
    assert body["status"] == "ready" and body["models"][SC] == first.model_version and FLAT in body["models"]
    assert body["failures"] == []


def test_ready_is_503_with_why_when_no_model_is_approved(places):
    store, remote = places
    publish(store, remote, SC, decision=registry.REJECTED, now=T0)
    response = make_app(places).test_client().get("/ready")
    assert response.status_code == 503
    assert response.json["status"] == "not_ready" and "no approved model" in response.json["reason"]
    assert response.json["unapproved"] == {SC: "rejected"}


def test_models_lists_version_and_lineage_summary(served):
    first, client = served
    (model,) = [m for m in client.get("/v1/models").json["models"] if m["stockcode"] == SC]
    assert model["model_version"] == first.model_version and model["model_md5"] == first.model_md5
    assert model["lineage"] == {k: first.lineage[k] for k in ("data", "code", "params")}
    assert f"tune_primary_model@{SC}" in model["stages"] and model["test_metrics"]["rmsle"] == 0.5


# -- predict ------------------------------------------------------------------------------------
def test_default_range_is_the_evidence_and_the_recommendation_lies_inside(served):
    first, client = served
    body = client.get(f"/v1/predict-price/{SC}").json
    assert body["model_version"] == first.model_version
    assert (body["unitprice_min"], body["unitprice_max"]) == (2.5, 2.75) == tuple(body["evidence_range"])
    assert len(body["prices"]) == body["num_price_bins"] == DEFAULT_PRICE_BINS
    assert not any(p["extrapolated"] for p in body["prices"]) and body["extrapolated_points"] == 0
    assert 2.5 <= body["optimal_unit_price"] <= 2.75 and body["flags"] == []
    assert body["evidence"]["list_price_changes"] == 1
    quantity = np.array([p["quantity"] for p in body["prices"]])
    assert (np.diff(quantity) <= 1e-9).all() and quantity[0] > quantity[-1]  # the hand-made demand falls
    for point in body["prices"]:
        assert point["predicted_sales"] == pytest.approx(point["unit_price"] * point["quantity"])
    # the best grid revenue inside the evidence is no better than the recommendation (within grid spacing)
    assert max(p["predicted_sales"] for p in body["prices"]) == pytest.approx(body["max_predicted_sales"], rel=0.05)


def test_a_range_beyond_the_evidence_marks_the_outside_as_extrapolated(served):
    _, client = served
    body = client.get(f"/v1/predict-price/{SC}?unitprice_min=2.0&unitprice_max=3.5&num_price_bins=31").json
    prices = body["prices"]
    assert len(prices) == 31 and prices[0]["unit_price"] == 2.0 and prices[-1]["unit_price"] == 3.5
    for point in prices:
        assert point["extrapolated"] == (not 2.5 <= point["unit_price"] <= 2.75)
    assert body["extrapolated_points"] == sum(p["extrapolated"] for p in prices) > 0
    assert "extrapolated" in body["flags"] and 2.5 <= body["optimal_unit_price"] <= 2.75


def test_an_answer_is_computed_once_per_model_and_range(served):
    _, client = served
    app = client.application
    model = app.extensions["pricelineage"].models[SC]
    first = client.get(f"/v1/predict-price/{SC}?num_price_bins=9").json
    assert client.get(f"/v1/predict-price/{SC}?num_price_bins=9").json == first
    client.get(f"/v1/predict-price/{SC}?num_price_bins=10")
    assert sorted(key[2] for key in model._answers) == [9, 10]


def test_no_list_price_change_recommends_the_current_price_flagged(served):
    _, client = served
    body = client.get(f"/v1/predict-price/{FLAT}?num_price_bins=5").json
    assert body["flags"][0] == "insufficient_price_variation" and body["optimal_unit_price"] == 3.0
    assert body["recommendation"]["flags"] == ["insufficient_price_variation"]
    span = PARAMS["price_response"]["diagnostic_span"]  # the lineage's own diagnostic range
    assert body["unitprice_min"] == pytest.approx(3.0 * (1 - span)) and body["unitprice_max"] == pytest.approx(3.0 * (1 + span))
    assert [p["extrapolated"] for p in body["prices"]] == [True, True, False, True, True]


@pytest.mark.parametrize("query, parameter, words", [
    ("unitprice_min=abc", "unitprice_min", "must be a number"),
    ("unitprice_max=-1", "unitprice_max", "positive finite"),
    ("unitprice_max=nan", "unitprice_max", "positive finite"),
    ("unitprice_min=3&unitprice_max=2", "unitprice_min", "must be below"),
    ("unitprice_min=2.9", "unitprice_min", "must be below unitprice_max (2.75)"),
    ("num_price_bins=1", "num_price_bins", f"between 2 and {MAX_PRICE_BINS}"),
    (f"num_price_bins={MAX_PRICE_BINS + 1}", "num_price_bins", f"between 2 and {MAX_PRICE_BINS}"),
    ("num_price_bins=2.5", "num_price_bins", "must be an integer"),
    ("unitprice_max=1000", "unitprice_max", "10x the highest observed"),
    ("unitprice_mix=2", "unitprice_mix", "unknown parameter"),
])
def test_bad_parameters_are_400_naming_the_parameter(served, query, parameter, words):
    _, client = served
    error = error_of(client.get(f"/v1/predict-price/{SC}?{query}"), 400)
    assert error["parameter"] == parameter and words in error["message"], error


def test_unknown_stockcode_is_404_and_a_malformed_one_400(served):
    _, client = served
    assert error_of(client.get("/v1/predict-price/99999Z"), 404)["code"] == "unknown_stockcode"
    assert error_of(client.get("/v1/predict-price/a%20b"), 400)["parameter"] == "stockcode"


def test_a_never_approved_stockcode_is_503(places):
    store, remote = places
    publish(store, remote, SC, now=T0)
    publish(store, remote, "20725", decision=registry.REJECTED, now=T0)
    error = error_of(make_app(places).test_client().get("/v1/predict-price/20725"), 503)
    assert error["code"] == "no_approved_model" and "rejected" in error["message"]


def test_errors_are_json_never_html(served):
    _, client = served
    assert error_of(client.get("/no/such/route"), 404)["code"] == "not_found"
    assert error_of(client.delete(f"/v1/predict-price/{SC}"), 405)["code"] == "method_not_allowed"


def test_a_server_fault_is_a_json_500_without_a_trace(places):
    app = make_app(places)

    @app.get("/boom")
    def boom():
        raise RuntimeError("secret detail")

    response = app.test_client().get("/boom")
    error = error_of(response, 500)
    assert "secret detail" not in response.get_data(as_text=True) and "Traceback" not in response.get_data(as_text=True)
    assert error["code"] == "internal_error"


# -- several stockcodes in one call ----------------------------------------------------------------
def test_post_answers_each_stockcode_in_order(served):
    first, client = served
    body = client.post("/v1/predict-price", json={"requests": [
        {"stockcode": SC, "num_price_bins": 3}, {"stockcode": FLAT}, {"stockcode": "99999Z"}]}).json
    one, flat, unknown = body["results"]
    assert one["status"] == 200 and one["model_version"] == first.model_version and len(one["prices"]) == 3
    assert flat["status"] == 200 and flat["flags"][0] == "insufficient_price_variation"
    assert unknown["status"] == 404 and unknown["stockcode"] == "99999Z"


@pytest.mark.parametrize("body, parameter", [
    ({"requests": [{"stockcode": SC}, {"stockcode": SC, "num_price_bins": "x"}]}, "requests[1].num_price_bins"),
    ({"requests": [{"stockcode": 5}]}, "requests[0].stockcode"),
    ({"requests": []}, "requests"),
    ({"stockcodes": [SC]}, "requests"),
    ({"requests": [{"stockcode": SC}], "extra": 1}, "extra"),
    ({"requests": [{"stockcode": SC, "unitprice_min": 2.7, "unitprice_max": 2.6}]}, "requests[0].unitprice_min"),
])
def test_post_bad_bodies_are_400_naming_the_field(served, body, parameter):
    _, client = served
    assert error_of(client.post("/v1/predict-price", json=body), 400)["parameter"] == parameter


def test_post_needs_a_json_body(served):
    _, client = served
    response = client.post("/v1/predict-price", data="not json", content_type="text/plain")
    assert error_of(response, 415)["parameter"] == "Content-Type"


# -- OpenAPI, CORS, the page ---------------------------------------------------------------------
def test_openapi_document_lists_every_route(served):
    _, client = served
    document = client.get("/openapi.json").json
    assert document["openapi"].startswith("3.")
    assert set(document["paths"]) == {"/health", "/ready", "/v1/models", "/v1/predict-price/{stockcode}",
                                      "/v1/predict-price", "/v1/recommendations", "/openapi.json"}
    names = [p["name"] for p in document["paths"]["/v1/predict-price/{stockcode}"]["get"]["parameters"]]
    assert names == ["stockcode", "unitprice_min", "unitprice_max", "num_price_bins"]
    listed = document["paths"]["/v1/recommendations"]["get"]["parameters"]
    assert [p["name"] for p in listed] == ["decision", "act_on", "page", "page_size"]
    assert "pooled" in listed[0]["schema"]["enum"] and listed[3]["schema"]["maximum"] == 500


def test_cors_allows_only_the_configured_origins(places):
    store, remote = places
    publish(store, remote, SC, now=T0)
    client = make_app(places, cors=["https://tool.example.com"]).test_client()
    allowed = client.get(f"/v1/predict-price/{SC}", headers={"Origin": "https://tool.example.com"})
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://tool.example.com"
    other = client.get(f"/v1/predict-price/{SC}", headers={"Origin": "https://evil.example.com"})
    assert "Access-Control-Allow-Origin" not in other.headers
    preflight = client.options(f"/v1/predict-price/{SC}", headers={
        "Origin": "https://tool.example.com", "Access-Control-Request-Method": "GET"})
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://tool.example.com"
    default = make_app(places).test_client()  # none configured: none allowed
    assert "Access-Control-Allow-Origin" not in default.get("/health", headers={"Origin": "https://tool.example.com"}).headers


def test_the_page_offers_the_served_stockcodes_and_its_own_chart_script(served):
    _, client = served
    page = client.get("/").get_data(as_text=True)
    assert f"<option selected>{FLAT}</option>" in page and f"<option>{SC}</option>" in page
    assert 'src="static/price-chart.js"' in page and "http" not in page.split("<body>")[1].split("</body>")[0].replace(
        "http://www.w3.org", "")
    script = client.get("/static/price-chart.js")
    assert script.status_code == 200 and "createElementNS" in script.get_data(as_text=True)


# -- reload: newer approvals, rejections, failures ------------------------------------------------
def test_a_newer_approval_is_picked_up_and_a_rejection_leaves_it_served(places):
    store, remote = places
    first = publish(store, remote, SC, now=T0)
    client = make_app(places, reload_seconds=0).test_client()
    assert client.get(f"/v1/predict-price/{SC}").json["model_version"] == first.model_version
    newer = publish(store, remote, SC, slope=0.4, now=T0 + timedelta(days=7))
    assert newer.model_version != first.model_version
    assert client.get(f"/v1/predict-price/{SC}").json["model_version"] == newer.model_version
    publish(store, remote, SC, slope=0.9, decision=registry.REJECTED, now=T0 + timedelta(days=14))
    assert client.get(f"/v1/predict-price/{SC}").json["model_version"] == newer.model_version
    assert client.get("/ready").json["models"] == {SC: newer.model_version}


def test_reload_waits_for_its_interval(places):
    store, remote = places
    first = publish(store, remote, SC, now=T0)
    client = make_app(places, reload_seconds=3600).test_client()
    publish(store, remote, SC, slope=0.4, now=T0 + timedelta(days=7))
    assert client.get(f"/v1/predict-price/{SC}").json["model_version"] == first.model_version


def test_a_tampered_newer_model_is_refused_and_the_old_one_keeps_serving(places):
    store, remote = places
    first = publish(store, remote, SC, now=T0)
    client = make_app(places, reload_seconds=0).test_client()
    newer = publish(store, remote, SC, slope=0.4, now=T0 + timedelta(days=7))
    arrays = artifact_hash(newer, Layout().portable_model_arrays(SC))
    tamper(remote, arrays)
    assert client.get(f"/v1/predict-price/{SC}").json["model_version"] == first.model_version
    ready = client.get("/ready").json
    assert ready["status"] == "ready" and ready["models"] == {SC: first.model_version}
    (failure,) = ready["failures"]
    assert failure["model_version"] == newer.model_version and failure["still_serving"] == first.model_version
    assert arrays in failure["error"] and "refused" in failure["error"]


@pytest.mark.parametrize("artifact", ["npz", "json", "dir", "parquet"])
def test_a_tampered_artifact_is_never_loaded(places, artifact):
    store, remote = places
    record = publish(store, remote, SC, now=T0)
    layout = Layout()
    data_dir = artifact_hash(record, layout.preprocessed_dir(SC))
    digest = {
        "npz": artifact_hash(record, layout.portable_model_arrays(SC)),
        "json": artifact_hash(record, layout.portable_model_spec(SC)),
        "dir": data_dir,
        "parquet": next(item["md5"] for item in json.loads(object_path(remote, data_dir).read_bytes())
                        if item["relpath"] == "X_test_raw.parquet"),
    }[artifact]
    tamper(remote, digest)
    client = make_app(places).test_client()
    ready = client.get("/ready")
    assert ready.status_code == 503 and ready.json["reason"] == "every approved model failed to load"
    assert digest in ready.json["failures"][0]["error"] and ready.json["failures"][0]["still_serving"] is None
    error = error_of(client.get(f"/v1/predict-price/{SC}"), 503)
    assert error["code"] == "model_not_loaded" and "refused" in error["message"]


def test_a_missing_artifact_is_named(places):
    store, remote = places
    record = publish(store, remote, SC, now=T0)
    digest = artifact_hash(record, Layout().portable_model_spec(SC))
    object_path(remote, digest).unlink()
    failure = make_app(places).test_client().get("/ready").json["failures"][0]
    assert f"object {digest} is not in the DVC remote" in failure["error"]


def test_an_unreachable_store_is_503_with_why(tmp_path):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the store should be")
    response = make_app((blocked, tmp_path / "remote")).test_client().get("/ready")
    assert response.status_code == 503
