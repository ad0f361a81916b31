"""The Lambda handler as Lambda imports it (``app.lambda_handler``, configured by the
environment alone: the app and its models load at import), and the API Gateway / Function URL
payloads of tests/lambda_events/ in AWS's documented shapes."""
from __future__ import annotations

import base64
import importlib
import json
import sys
from contextlib import contextmanager
from pathlib import Path

from tests.api_models import api_env

EVENTS = Path(__file__).parent / "lambda_events"


def event(name: str) -> dict:
    return json.loads((EVENTS / f"{name}.json").read_text())


def body_of(response: dict) -> dict:
    body = response["body"]
    return json.loads(base64.b64decode(body) if response.get("isBase64Encoded") else body)


@contextmanager
def imported_handler(monkeypatch, registry: Path, remote: Path, **env: str):
    """``app.lambda_handler.handler`` freshly imported over ``registry`` and ``remote``, with
    ``env`` set too (through ``monkeypatch``: undone after the test)."""
    for name, value in {**api_env(registry, remote), **env}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delitem(sys.modules, "app.lambda_handler", raising=False)
    try:
        yield importlib.import_module("app.lambda_handler").handler
    finally:
        sys.modules.pop("app.lambda_handler", None)
