"""One product's fault stays that product's: a record of the wrong shape, a store or remote
that does not answer, a record filed under another product; the others keep serving, the
refresh keeps its rhythm, and ``/ready`` says when the store itself is empty or unreachable.

Models are hand-made (tests/api_models.py) in a real folder registry store and DVC remote;
the faults are real bytes in that store (a record rewritten with a wrong field type, a file
copied, a folder removed) or a real S3 client against an endpoint nobody listens on."""
from __future__ import annotations

import dataclasses
import logging
import shutil
import socket
from datetime import datetime, timedelta, timezone

import pytest
import requests

from app import create_app
from stores.settings import ApiSettings
from pricing import registry
from stores import registry_store
from tests.api_models import publish
from tests.api_server import api_server

SC = "85123A"
FLAT = "22423"  # its list price never changed
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
LATER = (T0 + timedelta(days=7)).isoformat()


@pytest.fixture
def places(tmp_path):
    # The store one folder down: replacing that folder by a file makes the store unreachable.
    return tmp_path / "mount" / "registry", tmp_path / "remote"


def make_app(places, reload_seconds=0.0):
    store, remote = places
    return create_app(ApiSettings(registry=str(store), dvc_remote=str(remote), reload_seconds=reload_seconds))


def two_products(places):
    store, remote = places
    return publish(store, remote, SC, now=T0), publish(store, remote, FLAT, price_weeks=((3.0, 20),), now=T0)


def file_newer(store, record: registry.Record, **fields) -> registry.Record:
    """``record`` again, decided later, with ``fields`` replaced: the bytes the store then holds
    are what a buggy or hand-edited writer would leave (valid JSON, wrong types)."""
    changed = dataclasses.replace(record, decided_at=LATER, **fields)
    registry_store.RegistryStore(store).put(changed)
    return changed


def stage_as_string(record):
    stages = dict(record.lineage["stages"])
    stages[f"tune_primary_model@{record.stockcode}"] = "tune_primary_model"
    return {"lineage": {**record.lineage, "stages": stages}}


WRONG_SHAPES = {
    "lineage a string": lambda record: {"lineage": "x"},
    "one stage entry a string": stage_as_string,
    "stages a list": lambda record: {"lineage": {**record.lineage, "stages": ["preprocess"]}},
    "metrics a string": lambda record: {"metrics": "x"},
    "verdicts a list": lambda record: {"verdicts": ["fairness"]},
}


def failure_of(body, stockcode):
    (failure,) = [f for f in body["failures"] if f["stockcode"] == stockcode]
    return failure


@pytest.mark.parametrize("shape", sorted(WRONG_SHAPES))
def test_a_record_of_the_wrong_shape_fails_its_product_alone_at_start_up(places, shape, caplog):
    good, flat = two_products(places)
    bad = file_newer(places[0], flat, **WRONG_SHAPES[shape](flat))
    with caplog.at_level(logging.ERROR, logger="app.models"):
        client = make_app(places, reload_seconds=3600).test_client()  # start-up survives
    ready = client.get("/ready")
    assert ready.status_code == 200 and ready.json["models"] == {SC: good.model_version}
    failure = failure_of(ready.json, FLAT)
    assert failure["model_version"] == bad.model_version and "AttributeError" in failure["error"]
    assert any(FLAT in r.getMessage() and "AttributeError" in r.getMessage() for r in caplog.records)
    assert client.get(f"/v1/predict-price/{SC}?num_price_bins=5").status_code == 200
    error = client.get(f"/v1/predict-price/{FLAT}").json["error"]
    assert error["code"] == "model_not_loaded" and "AttributeError" in error["message"]
    models = client.get("/v1/models")
    assert models.status_code == 200 and [m["stockcode"] for m in models.json["models"]] == [SC]


def test_a_record_of_the_wrong_shape_while_running_keeps_every_model_and_the_refresh_going(places):
    good, flat = two_products(places)
    client = make_app(places, reload_seconds=0).test_client()
    assert client.get(f"/v1/predict-price/{FLAT}").status_code == 200
    bad = file_newer(places[0], flat, lineage="x")
    catalogue = client.application.extensions["pricelineage"]
    ready = client.get("/ready")  # every request refreshes (reload 0): it meets the bad record
    assert ready.status_code == 200, ready.get_data(as_text=True)
    assert ready.json["models"] == {SC: good.model_version, FLAT: flat.model_version}
    failure = failure_of(ready.json, FLAT)
    assert failure["model_version"] == bad.model_version and failure["still_serving"] == flat.model_version
    refreshed_at = catalogue.last_refresh
    assert client.get(f"/v1/predict-price/{FLAT}").json["model_version"] == flat.model_version
    assert client.get(f"/v1/predict-price/{SC}").json["model_version"] == good.model_version
    assert catalogue.last_refresh > refreshed_at


def test_the_server_starts_and_serves_the_others_when_one_record_is_bad(places):
    good, flat = two_products(places)
    file_newer(places[0], flat, **stage_as_string(flat))
    with api_server(*places) as base:
        ready = requests.get(f"{base}/ready", timeout=10)
        assert ready.status_code == 200 and ready.json()["models"] == {SC: good.model_version}
        assert "AttributeError" in failure_of(ready.json(), FLAT)["error"]
        one = requests.get(f"{base}/v1/predict-price/{SC}", params={"num_price_bins": 5}, timeout=10)
        assert one.status_code == 200 and one.json()["model_version"] == good.model_version
        assert requests.get(f"{base}/v1/predict-price/{FLAT}", timeout=10).status_code == 503


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_remote_that_does_not_answer_fails_each_product_and_the_app_still_starts(places, monkeypatch):
    """botocore's EndpointConnectionError is not an OSError: it used to escape load_model."""
    two_products(places)
    for name, value in {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{closed_port()}", "AWS_ACCESS_KEY_ID": "test",
                        "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
                        "AWS_MAX_ATTEMPTS": "1"}.items():
        monkeypatch.setenv(name, value)
    store, _ = places
    client = create_app(ApiSettings(registry=str(store), dvc_remote="s3://nobody-listens/dvc",
                                 reload_seconds=3600)).test_client()
    ready = client.get("/ready")
    assert ready.status_code == 503 and ready.json["reason"] == "every approved model failed to load"
    assert {f["stockcode"] for f in ready.json["failures"]} == {SC, FLAT}
    assert all("EndpointConnectionError" in f["error"] for f in ready.json["failures"])
    assert client.get(f"/v1/predict-price/{SC}").json["error"]["code"] == "model_not_loaded"


def test_a_store_that_becomes_unreachable_is_not_ready_and_the_models_keep_answering(places):
    good, _ = two_products(places)
    client = make_app(places).test_client()
    assert client.get("/ready").status_code == 200
    mount = places[0].parent
    shutil.rmtree(mount)
    mount.write_text("the store's mount is gone")  # listing the store now fails (NotADirectoryError)
    ready = client.get("/ready")
    assert ready.status_code == 503 and "NotADirectoryError" in ready.json["reason"]
    assert ready.json["registry_error"] == ready.json["reason"] and SC in ready.json["models"]
    assert client.get(f"/v1/predict-price/{SC}").json["model_version"] == good.model_version


def test_a_store_emptied_while_running_is_not_ready_and_serves_nothing(places):
    two_products(places)
    client = make_app(places).test_client()
    assert client.get("/ready").status_code == 200
    shutil.rmtree(places[0])
    ready = client.get("/ready")
    assert ready.status_code == 503 and "holds no decision" in ready.json["reason"]
    assert ready.json["models"] == {} and ready.json["failures"] == []
    assert client.get(f"/v1/predict-price/{SC}").json["error"]["code"] == "unknown_stockcode"


def test_a_product_whose_records_are_deleted_is_no_longer_served(places):
    good, _ = two_products(places)
    client = make_app(places).test_client()
    assert client.get(f"/v1/predict-price/{FLAT}").status_code == 200
    shutil.rmtree(places[0] / FLAT)
    ready = client.get("/ready")
    assert ready.status_code == 200 and ready.json["models"] == {SC: good.model_version}
    assert client.get(f"/v1/predict-price/{FLAT}").json["error"]["code"] == "unknown_stockcode"
    assert client.get(f"/v1/predict-price/{SC}").status_code == 200


def test_a_record_filed_under_another_stockcode_is_refused_for_it(places):
    store, remote = places
    good = publish(store, remote, SC, now=T0)
    (name,) = [path.name for path in (store / SC).iterdir()]
    (store / FLAT).mkdir()
    shutil.copy(store / SC / name, store / FLAT / name)  # 85123A's approval, filed under 22423
    client = make_app(places).test_client()
    ready = client.get("/ready").json
    assert ready["models"] == {SC: good.model_version}
    failure = failure_of(ready, FLAT)
    assert "about another stockcode" in failure["error"] and repr(SC) in failure["error"]
    error = client.get(f"/v1/predict-price/{FLAT}").json["error"]
    assert error["code"] == "model_not_loaded" and "about another stockcode" in error["message"]
