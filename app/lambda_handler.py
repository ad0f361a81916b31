"""AWS Lambda entry point: API Gateway (REST v1, HTTP API v2) and Function URL events into the
Flask app through serverless-wsgi. The app (and every model) loads once per container, at
import, so a cold start pays it and warm invocations do not. A warm-up event (a scheduled
``{"source": "serverless-plugin-warmup"}`` ping) returns ``{}`` without touching Flask.

With the HTTP API on its ``$default`` stage, ``STRIP_STAGE_PATH=yes`` (set in
Dockerfile.lambda and infra/api.yaml) keeps ``/$default`` out of the script name.
"""
from __future__ import annotations

import serverless_wsgi

from app import create_app

app = create_app()


def handler(event, context):
    return serverless_wsgi.handle_request(app, event, context)
