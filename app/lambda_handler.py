"""AWS Lambda entry point: API Gateway (REST v1, HTTP API v2) and Function URL events into the
Flask app through serverless-wsgi. The app (and every model) loads once per container, at
import, so a cold start pays it and warm invocations do not. A warm-up event (a scheduled
``{"source": "serverless-plugin-warmup"}`` ping) returns ``{}`` without touching Flask.

Any other event (``{}`` from a test invoke, an SQS or S3 notification, a list) is refused with
``UnsupportedEvent``, logged, before serverless-wsgi would fail on it with a ``KeyError``.

With the HTTP API on its ``$default`` stage, ``STRIP_STAGE_PATH=yes`` (set in
Dockerfile.lambda and infra/api.yaml) keeps ``/$default`` out of the script name.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import serverless_wsgi

from app import create_app

log = logging.getLogger(__name__)
# The sources serverless-wsgi answers with {} itself (handle_request's warm-up check).
WARM_UP_SOURCES = ("aws.events", "serverless-plugin-warmup")

app = create_app()


class UnsupportedEvent(ValueError):
    """The function was invoked with an event that is not an HTTP request."""


def _is_http_request(event: Any) -> bool:
    """Whether serverless-wsgi can make a request of ``event`` (or answers it as a warm-up):
    the fields each payload format it reads has (REST v1 and ALB, HTTP API v2 and Function
    URLs, the API Gateway Lambda integration)."""
    if not isinstance(event, Mapping):
        return False
    if event.get("source") in WARM_UP_SOURCES:
        return True
    context = event.get("requestContext", {})
    headers = event.get("headers", event.get("multiValueHeaders"))
    if not isinstance(context, Mapping) or not isinstance(headers, (Mapping, type(None))):
        return False
    if event.get("version") == "2.0":
        return "headers" in event and isinstance(event.get("rawPath"), str) and \
            isinstance(context.get("http"), Mapping) and "method" in context["http"]
    if "requestPath" in event:
        return "headers" in event and "method" in event
    return isinstance(event.get("path"), str) and "httpMethod" in event and (
        "headers" in event or bool(event.get("multiValueHeaders")))


def _described(event: Any) -> str:
    if isinstance(event, Mapping):
        records = event.get("Records")
        source = records[0].get("eventSource") if isinstance(records, list) and records and isinstance(
            records[0], Mapping) else None
        return f"an object with keys {sorted(map(str, event))[:8]}" + (f" (records from {source})" if source else "")
    return f"a {type(event).__name__}"


def handler(event, context):
    if not _is_http_request(event):
        # Raised, not answered: an SQS or S3 trigger wired here by mistake then sees its
        # messages fail (and retried or dead-lettered) instead of silently consumed.
        log.error("not an HTTP request: %s; this function serves the price API only", _described(event))
        raise UnsupportedEvent(f"this function answers HTTP requests (API Gateway, a Function URL, an ALB) "
                               f"only; it was invoked with {_described(event)}")
    return serverless_wsgi.handle_request(app, event, context)
