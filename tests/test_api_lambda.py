"""The Lambda handler with real API Gateway REST (v1), HTTP API (v2) and Function URL event
payloads (tests/lambda_events/, in AWS's documented shapes), and warm-up events."""
from __future__ import annotations

import pytest

from stores.settings import CORS_ENV, RELOAD_ENV
from tests.api_lambda import body_of, event, imported_handler
from tests.api_models import publish

SC = "85123A"


@pytest.fixture
def handler(tmp_path, monkeypatch):
    """``app.lambda_handler`` imported as Lambda would, configured only by the environment."""
    record = publish(tmp_path / "registry", tmp_path / "remote", SC)
    with imported_handler(monkeypatch, tmp_path / "registry", tmp_path / "remote", **{
            RELOAD_ENV: "300", CORS_ENV: "https://tool.example.com", "STRIP_STAGE_PATH": "yes"}) as handle:
        yield handle, record


def test_rest_api_v1_event(handler):
    handle, record = handler
    response = handle(event("rest_api_v1"), None)
    assert response["statusCode"] == 200
    assert response["multiValueHeaders"]["Content-Type"] == ["application/json"]  # v1 answers multi-value
    body = body_of(response)
    assert body["model_version"] == record.model_version and len(body["prices"]) == 7


def test_http_api_v2_event_with_a_base64_post_body(handler):
    handle, record = handler
    response = handle(event("http_api_v2"), None)
    assert response["statusCode"] == 200 and response["headers"]["Content-Type"] == "application/json"
    known, unknown = body_of(response)["results"]
    assert known["model_version"] == record.model_version and len(known["prices"]) == 3
    assert unknown["status"] == 404


def test_function_url_event_with_cors(handler):
    handle, record = handler
    response = handle(event("function_url"), None)
    assert response["statusCode"] == 200
    assert response["headers"]["Access-Control-Allow-Origin"] == "https://tool.example.com"
    body = body_of(response)
    assert (body["unitprice_min"], body["unitprice_max"], len(body["prices"])) == (2.0, 3.0, 11)
    assert body["extrapolated_points"] > 0


def test_http_api_on_the_default_stage_routes_without_the_stage_prefix(handler):
    handle, _ = handler
    ready = event("http_api_v2")  # stage "$default" on an execute-api host; STRIP_STAGE_PATH=yes
    ready.update(rawPath="/ready", body=None, isBase64Encoded=False)
    ready["requestContext"]["http"].update(method="GET", path="/ready")
    response = handle(ready, None)
    assert response["statusCode"] == 200 and body_of(response)["status"] == "ready"


def test_errors_through_api_gateway_are_json(handler):
    handle, _ = handler
    bad = event("rest_api_v1")
    bad["queryStringParameters"] = {"num_price_bins": "lots"}
    bad["multiValueQueryStringParameters"] = {"num_price_bins": ["lots"]}
    response = handle(bad, None)
    assert response["statusCode"] == 400 and body_of(response)["error"]["parameter"] == "num_price_bins"


@pytest.mark.parametrize("name", ["warmup_plugin", "eventbridge_schedule"])
def test_a_warm_up_event_returns_empty_without_a_request(handler, name):
    handle, _ = handler
    assert handle(event(name), None) == {}
