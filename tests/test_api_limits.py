"""The price API within Lambda's limits and strict about its input: the points one call may
ask for (so every answer fits Lambda's response limit, measured through the real handler), the
body's size and nesting, repeated or non-ASCII parameters, whole-string stockcodes, the lowest
price, the content type, events that are not HTTP requests, settings that must be finite.

Through Flask's test client, the real serverless-wsgi handler and waitress over real HTTP, on
hand-made models (tests/api_models.py) in a real folder store and remote."""
from __future__ import annotations

import json
import logging
import socket
from datetime import datetime, timezone

import pytest
import requests

from app import create_app
from app.factory import MAX_BATCH, MAX_BODY_BYTES, MAX_JSON_DEPTH
from app.predict import LAMBDA_RESPONSE_LIMIT_BYTES, MAX_POINTS_PER_CALL, MAX_PRICE_BINS, MIN_UNIT_PRICE
from app.serve import served_in_a_process
from stores.settings import RELOAD_ENV, ApiSettings, load_settings
from tests.api_lambda import body_of, event, imported_handler
from tests.api_models import api_env, publish
from tests.api_server import api_server

SC = "85123A"
# Thirty list prices held two weeks each: the widest evidence block an answer carries here.
WIDE = "84879"
WIDE_PRICES = tuple((round(2.0 + 0.05 * k, 2), 2) for k in range(30))
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def publish_both(store, remote):
    publish(store, remote, SC, now=T0)
    publish(store, remote, WIDE, price_weeks=WIDE_PRICES, now=T0)


@pytest.fixture
def client(tmp_path):
    publish_both(tmp_path / "registry", tmp_path / "remote")
    return create_app(ApiSettings(registry=str(tmp_path / "registry"), dvc_remote=str(tmp_path / "remote"),
                               reload_seconds=3600)).test_client()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    place = tmp_path_factory.mktemp("limits")
    publish_both(place / "registry", place / "remote")
    with api_server(place / "registry", place / "remote") as base:
        yield base


def error_of(response, status):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.is_json, response.get_data(as_text=True)
    return response.json["error"]


def batch(items: int, bins: int) -> dict:
    """``items`` requests of ``bins`` points, alternating products, each a range of its own
    (every answer computed, its prices long decimals)."""
    return {"requests": [{"stockcode": (SC, WIDE)[i % 2], "unitprice_min": 2.0 + 0.00137 * i,
                          "unitprice_max": 3.1 + 0.00291 * i, "num_price_bins": bins} for i in range(items)]}


# -- the points of one call, Lambda's response limit ------------------------------------------------
def http_api_post(body: dict) -> dict:
    payload = event("http_api_v2")  # POST /v1/predict-price on an HTTP API's $default stage
    text = json.dumps(body)
    payload.update(body=text, isBase64Encoded=False)
    payload["headers"]["content-length"] = str(len(text.encode()))
    return payload


@pytest.mark.parametrize("items, bins", [(MAX_BATCH, MAX_POINTS_PER_CALL // MAX_BATCH),
                                         (MAX_POINTS_PER_CALL // MAX_PRICE_BINS, MAX_PRICE_BINS)])
def test_an_answer_at_the_points_cap_fits_lambdas_response_limit(tmp_path, monkeypatch, items, bins):
    publish_both(tmp_path / "registry", tmp_path / "remote")
    with imported_handler(monkeypatch, tmp_path / "registry", tmp_path / "remote",
                          STRIP_STAGE_PATH="yes") as handle:
        response = handle(http_api_post(batch(items, bins)), None)
        assert response["statusCode"] == 200
        results = body_of(response)["results"]
        assert [r["status"] for r in results] == [200] * items
        assert sum(len(r["prices"]) for r in results) == items * bins == MAX_POINTS_PER_CALL
        # What the Lambda runtime sends back: the handler's dict as JSON.
        size = len(json.dumps(response).encode())
        print(f"{items} x {bins} points: {size:,} bytes serialised for Lambda "
              f"({size / LAMBDA_RESPONSE_LIMIT_BYTES:.0%} of {LAMBDA_RESPONSE_LIMIT_BYTES:,})")
        assert size < LAMBDA_RESPONSE_LIMIT_BYTES
        over = batch(items, bins)  # one point more
        if bins < MAX_PRICE_BINS:
            over["requests"][-1]["num_price_bins"] = bins + 1
        else:
            over["requests"].append({"stockcode": SC, "unitprice_min": 2.0, "unitprice_max": 2.01, "num_price_bins": 2})
        refused = handle(http_api_post(over), None)
        assert refused["statusCode"] == 400
        error = body_of(refused)["error"]
        assert error["parameter"] == "requests" and f"at most {MAX_POINTS_PER_CALL}" in error["message"]


# -- the body: size, nesting, content type -------------------------------------------------------
def test_a_body_over_the_cap_is_a_json_413(client):
    body = json.dumps({"requests": [{"stockcode": SC}], "padding": "x" * MAX_BODY_BYTES})
    error = error_of(client.post("/v1/predict-price", data=body, content_type="application/json"), 413)
    assert error["code"] == "body_too_large" and str(MAX_BODY_BYTES) in error["message"]


@pytest.mark.parametrize("body", [
    "[" * 60_000,  # deeper than Python's recursion limit, within the size cap
    json.dumps({"requests": [{"stockcode": SC, "num_price_bins": [[[[[[[[5]]]]]]]]}]}),
], ids=["past-the-recursion-limit", "a-nested-value"])
def test_json_nested_too_deep_is_400(client, body):
    error = error_of(client.post("/v1/predict-price", data=body, content_type="application/json"), 400)
    assert error["code"] == "invalid_body" and f"deeper than {MAX_JSON_DEPTH}" in error["message"]


@pytest.mark.parametrize("content_type", ["text/plain", None, "application/x-www-form-urlencoded"])
def test_valid_json_with_the_wrong_content_type_is_415_saying_so(client, content_type):
    body = json.dumps({"requests": [{"stockcode": SC}]})
    headers = {"Content-Type": content_type} if content_type else {}
    error = error_of(client.post("/v1/predict-price", data=body, headers=headers), 415)
    assert error["code"] == "unsupported_media_type" and "Content-Type: application/json" in error["message"]
    assert error["parameter"] == "Content-Type"


def test_a_body_that_is_not_json_is_400(client):
    response = client.post("/v1/predict-price", data='{"requests": [', content_type="application/json")
    assert error_of(response, 400)["code"] == "invalid_body"


# -- parameters -----------------------------------------------------------------------------------
@pytest.mark.parametrize("query, parameter", [
    ("num_price_bins=5&num_price_bins=7", "num_price_bins"),
    ("unitprice_min=2.5&num_price_bins=5&unitprice_min=2.6", "unitprice_min"),
])
def test_a_repeated_parameter_is_400(client, query, parameter):
    error = error_of(client.get(f"/v1/predict-price/{SC}?{query}"), 400)
    assert error["parameter"] == parameter and "more than once" in error["message"]


NOT_ASCII_DECIMAL = {
    "underscore": ("1_0", "2_5"),
    "arabic-indic": ("\u0661\u0660", "\u0662.\u0665"),
    "full-width": ("\uff11\uff10", "\uff12.\uff15"),
    "blank-padded": (" 10", "2.5 "),
}


@pytest.mark.parametrize("spelling", sorted(NOT_ASCII_DECIMAL))
def test_numbers_are_ascii_decimal_only(client, spelling):
    bins, price = NOT_ASCII_DECIMAL[spelling]
    error = error_of(client.get(f"/v1/predict-price/{SC}", query_string={"num_price_bins": bins}), 400)
    assert error["parameter"] == "num_price_bins" and "ASCII" in error["message"]
    error = error_of(client.get(f"/v1/predict-price/{SC}", query_string={"unitprice_min": price}), 400)
    assert error["parameter"] == "unitprice_min" and "ASCII" in error["message"]
    body = {"requests": [{"stockcode": SC, "num_price_bins": bins}]}
    assert error_of(client.post("/v1/predict-price", json=body), 400)["parameter"] == "requests[0].num_price_bins"


def test_ascii_numbers_in_every_accepted_spelling_still_answer(client):
    for query in ("num_price_bins=010", "unitprice_min=2.5e0&unitprice_max=%2B2.7", "unitprice_min=.25E1"):
        assert client.get(f"/v1/predict-price/{SC}?{query}").status_code == 200, query


def test_a_stockcode_is_matched_whole(client):
    assert error_of(client.get(f"/v1/predict-price/{SC}%0A"), 400)["parameter"] == "stockcode"
    body = {"requests": [{"stockcode": f"{SC}\n"}]}
    assert error_of(client.post("/v1/predict-price", json=body), 400)["parameter"] == "requests[0].stockcode"


@pytest.mark.parametrize("price", ["5e-324", "0.001", "0.0099"])
def test_a_price_below_the_floor_is_400(client, price):
    error = error_of(client.get(f"/v1/predict-price/{SC}?unitprice_min={price}"), 400)
    assert error["parameter"] == "unitprice_min" and f"at least {MIN_UNIT_PRICE}" in error["message"]
    body = {"requests": [{"stockcode": SC, "unitprice_min": float(price)}]}
    assert error_of(client.post("/v1/predict-price", json=body), 400)["parameter"] == "requests[0].unitprice_min"


def test_the_floor_itself_is_answered(client):
    body = client.get(f"/v1/predict-price/{SC}?unitprice_min={MIN_UNIT_PRICE}&num_price_bins=3").json
    assert body["prices"][0]["unit_price"] == MIN_UNIT_PRICE


# -- the same over real HTTP (waitress) -------------------------------------------------------------
def raw_post(base: str, head: str, body: bytes) -> tuple[int, dict]:
    """A POST written by hand: waitress sees exactly these bytes (a chunked body included)."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(f"POST /v1/predict-price HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{head}\r\n"
                           .encode() + body)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    head_text, _, payload = answer.partition(b"\r\n\r\n")
    return int(head_text.split()[1]), json.loads(payload)


def test_the_body_cap_holds_over_real_http_with_and_without_a_length(server):
    big = json.dumps({"requests": [{"stockcode": SC}], "padding": "x" * MAX_BODY_BYTES}).encode()
    status, body = raw_post(server, f"Content-Type: application/json\r\nContent-Length: {len(big)}\r\n", big)
    assert status == 413 and body["error"]["code"] == "body_too_large"
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (big[:40_000], big[40_000:])) + b"0\r\n\r\n"
    status, body = raw_post(server, "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n", chunked)
    assert status == 413 and body["error"]["code"] == "body_too_large"


@pytest.mark.parametrize("method, path, kwargs, status, parameter", [
    ("get", f"/v1/predict-price/{SC}?num_price_bins=5&num_price_bins=7", {}, 400, "num_price_bins"),
    ("get", f"/v1/predict-price/{SC}?num_price_bins=1_0", {}, 400, "num_price_bins"),
    ("get", f"/v1/predict-price/{SC}%0A", {}, 400, "stockcode"),
    ("get", f"/v1/predict-price/{SC}?unitprice_min=5e-324", {}, 400, "unitprice_min"),
    ("post", "/v1/predict-price", {"data": "[" * 60_000, "headers": {"Content-Type": "application/json"}}, 400, None),
    ("post", "/v1/predict-price", {"data": '{"requests": [{"stockcode": "85123A"}]}',
                                   "headers": {"Content-Type": "text/plain"}}, 415, "Content-Type"),
    ("post", "/v1/predict-price", {"json": batch(MAX_BATCH, MAX_POINTS_PER_CALL // MAX_BATCH + 1)}, 400, "requests"),
], ids=["repeated", "underscore-digits", "trailing-newline", "below-the-floor", "nested", "text-plain", "points"])
def test_the_limits_over_real_http(server, method, path, kwargs, status, parameter):
    response = requests.request(method, f"{server}{path}", timeout=30, **kwargs)
    assert response.status_code == status and response.headers["Content-Type"] == "application/json"
    assert response.json()["error"].get("parameter") == parameter


# -- Lambda events that are not HTTP requests ---------------------------------------------------------
NOT_HTTP = {
    "empty": {},
    "sqs": {"Records": [{"messageId": "059f36b4-87a3-44ab-83d2-661975830a7d", "eventSource": "aws:sqs",
                         "body": "{}", "eventSourceARN": "arn:aws:sqs:eu-west-2:123456789012:queue"}]},
    "list": [1, 2, 3],
    "string": "hello",
    "half-an-http-event": {"version": "2.0", "rawPath": "/health"},
}


@pytest.mark.parametrize("name", sorted(NOT_HTTP))
def test_an_event_that_is_not_an_http_request_is_a_clear_logged_error(tmp_path, monkeypatch, caplog, name):
    publish(tmp_path / "registry", tmp_path / "remote", SC)
    with imported_handler(monkeypatch, tmp_path / "registry", tmp_path / "remote") as handle:
        from app.lambda_handler import UnsupportedEvent

        with caplog.at_level(logging.ERROR, logger="app.lambda_handler"), \
                pytest.raises(UnsupportedEvent, match="answers HTTP requests"):
            handle(NOT_HTTP[name], None)
        assert any("not an HTTP request" in r.getMessage() for r in caplog.records)
        assert handle(event("rest_api_v1"), None)["statusCode"] == 200  # and it goes on serving


# -- settings --------------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "NaN"])
def test_a_reload_interval_that_is_not_finite_is_refused_naming_the_variable(monkeypatch, text):
    monkeypatch.setenv(RELOAD_ENV, text)
    with pytest.raises(ValueError, match=f"{RELOAD_ENV} must be a finite"):
        load_settings().api()


def test_the_server_refuses_to_start_on_a_nan_reload_interval(tmp_path):
    publish(tmp_path / "registry", tmp_path / "remote", SC)
    with pytest.raises(RuntimeError, match=f"{RELOAD_ENV} must be a finite"), served_in_a_process(
            {**api_env(tmp_path / "registry", tmp_path / "remote"), RELOAD_ENV: "nan"}):
        pass
