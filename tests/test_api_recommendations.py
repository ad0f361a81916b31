"""``GET /v1/recommendations``: the newest catalogue report, read by its hash from the DVC remote,
paged and filtered; refusals named; a report whose bytes changed is refused, and one read before
keeps answering."""
from __future__ import annotations

import pytest

from app import create_app
from pricing.registry import APPROVED, POOLED, REJECTED
from stores.registry_store import RegistryStore
from stores.settings import ApiSettings
from tests.api_models import report_row_of as row, store_report, tamper


ROWS = ([row(f"P{n:03d}", POOLED, True, -10.0) for n in range(250)] + [row("85123A", APPROVED, True, -2.0)]
        + [row("47566", REJECTED, False)])


@pytest.fixture
def places(tmp_path):
    return RegistryStore(tmp_path / "registry"), tmp_path / "remote"


def client_of(places, reload_seconds=0.0):
    store, remote = places
    return create_app(ApiSettings(registry=store.location, dvc_remote=str(remote), reload_seconds=reload_seconds,
                                  cors_origins=[])).test_client()


def test_the_newest_report_pages_and_filters(places):
    store, remote = places
    store_report(store, remote, ROWS[:3], "run-1")
    newest = store_report(store, remote, ROWS, "run-2")
    client = client_of(places)
    first = client.get("/v1/recommendations").json
    assert (first["run_key"], first["report"], first["products"], first["matched"]) == ("run-2", newest["name"], 252, 252)
    assert (first["page"], first["page_size"], first["pages"], len(first["rows"])) == (1, 100, 3, 100)
    last = client.get("/v1/recommendations?page=3").json
    assert [r["stockcode"] for r in last["rows"]][-2:] == ["85123A", "47566"] and len(last["rows"]) == 52
    assert client.get("/v1/recommendations?page=4").json["rows"] == []
    held = client.get("/v1/recommendations?act_on=false").json
    assert held["matched"] == 1 and held["rows"][0]["stockcode"] == "47566" and held["rows"][0]["act_on"] is False
    approved = client.get(f"/v1/recommendations?decision={APPROVED}&page_size=5").json
    assert approved["matched"] == 1 and approved["rows"][0]["move_pct"] == -2.0
    assert client.get("/v1/recommendations?decision=none").json["matched"] == 0


@pytest.mark.parametrize("query, parameter, words", [
    ("page=0", "page", "page must be at least 1, got 0"),
    ("page_size=501", "page_size", "page_size must be 1 to 500, got 501"),
    ("page=%D9%A3", "page", "ASCII decimal digits"),
    ("decision=approve", "decision", "decision must be one of approved, candidate"),
    ("act_on=yes", "act_on", "act_on must be true or false"),
    ("pagesize=10", "pagesize", "unknown parameter 'pagesize'"),
    ("page=1&page=2", "page", "page is given more than once"),
])
def test_bad_parameters_are_refused_by_name(places, query, parameter, words):
    store, remote = places
    store_report(store, remote, ROWS[:3], "run-1")
    response = client_of(places).get(f"/v1/recommendations?{query}")
    assert response.status_code == 400, response.json
    assert response.json["error"]["parameter"] == parameter and words in response.json["error"]["message"]


def test_no_report_yet_is_a_404_that_says_so(places):
    response = client_of(places).get("/v1/recommendations")
    assert response.status_code == 404 and response.json["error"]["code"] == "no_report"
    assert "no catalogue run has stored a report" in response.json["error"]["message"]


def test_a_changed_byte_is_refused_and_the_report_read_before_keeps_answering(places):
    store, remote = places
    store_report(store, remote, ROWS[:3], "run-1")
    client = client_of(places)
    assert client.get("/v1/recommendations").json["run_key"] == "run-1"
    newer = store_report(store, remote, ROWS, "run-2")
    tamper(remote, newer["table_md5"], at=10)
    kept = client.get("/v1/recommendations")
    assert kept.status_code == 200 and kept.json["run_key"] == "run-1"
    fresh = client_of(places).get("/v1/recommendations")  # nothing read before: nothing to answer with
    assert fresh.status_code == 503 and fresh.json["error"]["code"] == "report_unavailable"
    assert "not the recorded one: refused" in fresh.json["error"]["message"]


def test_a_product_priced_from_the_pool_has_no_model_to_serve_and_says_where_its_price_is(places):
    from pricing import registry

    store, remote = places
    store.put(registry.make_record(stockcode="SMALL1", decision=POOLED, model_path=None, stages={}, git={},
                                   metrics={"lines": 40}, verdicts={}, reasons=["40 lines, too few to train"],
                                   platform_info={}))
    response = client_of(places).get("/v1/predict-price/SMALL1")
    assert response.status_code == 503 and response.json["error"]["code"] == "no_approved_model"
    assert "latest decision: pooled" in response.json["error"]["message"]
    assert "is in the catalogue run's report" in response.json["error"]["message"]
