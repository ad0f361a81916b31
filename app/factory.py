"""The Flask app factory: routes, JSON errors, CORS, the periodic reload."""
from __future__ import annotations

import json
from typing import Any

from flask import Flask, jsonify, render_template, request
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from app.models import ModelCatalogue
from app.openapi import openapi_document
from app.recommendations import (DECISION_FILTERS, MAX_PAGE_SIZE, LatestReport, ReportUnavailable, check_query,
                                 page_of)
from app.predict import (MAX_POINTS_PER_CALL, MAX_PRICE_BINS, MIN_UNIT_PRICE, ParameterError, check_parameters,
                         check_total_points, predict_price)
from pricing.errors import DataValidationError
from pricing.registry import check_stockcode
from stores.dvc_remote import Remote
from stores.registry_store import RegistryStore
from stores.settings import ApiSettings, load_settings

MAX_BATCH = 50
# A full batch is about 5 KB of JSON; far more is no request of this API, only work to parse.
MAX_BODY_BYTES = 64 * 1024
# A batch body nests three deep ({"requests": [{...}]}): deeper is refused before the checks
# (and the repr in their messages) walk it. Past Python's recursion limit the parser itself
# gives up with RecursionError, answered as the same 400.
MAX_JSON_DEPTH = 8
# Routes that answer without looking at the store (a liveness probe must not wait on S3).
NO_REFRESH = {"health", "openapi", "static"}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.details = status, code, details


def error_body(status: int, code: str, message: str, **details: Any) -> dict[str, Any]:
    return {"error": {"status": status, "code": code, "message": message, **details}}


def served_or_error(catalogue: ModelCatalogue, stockcode: str):
    """The model served for ``stockcode``, or the API error that says why there is none."""
    try:
        check_stockcode(stockcode)
    except DataValidationError as error:
        raise ApiError(400, "invalid_parameter", str(error), parameter="stockcode") from None
    served = catalogue.models.get(stockcode)
    if served is not None:
        return served
    if stockcode in catalogue.failures:
        failure = catalogue.failures[stockcode]
        raise ApiError(503, "model_not_loaded", f"the approved model of {stockcode} could not be loaded: "
                                                f"{failure.error}", stockcode=stockcode)
    if stockcode in catalogue.unserved:
        unserved = catalogue.unserved[stockcode]
        raise ApiError(503, "no_approved_model", f"{stockcode}: nothing servable: {unserved.why}",
                       stockcode=stockcode, latest_decision=unserved.latest)
    if catalogue.store_error:
        raise ApiError(503, "registry_unavailable", catalogue.store_error, stockcode=stockcode)
    raise ApiError(404, "unknown_stockcode", f"no model of stockcode {stockcode!r} in the registry store",
                   stockcode=stockcode)


def not_ready_because(catalogue: ModelCatalogue) -> str | None:
    """Why ``/ready`` answers 503, or None. An unreachable store is not ready even while the
    models loaded before keep answering: newer approvals and withdrawals cannot be seen."""
    if catalogue.store_error:
        return catalogue.store_error
    if catalogue.store_empty:
        return f"the registry store {catalogue.store.location} holds no decision (empty, or not there)"
    if catalogue.models:
        return None
    if catalogue.failures:
        return "every approved model failed to load"
    if catalogue.unserved:
        return "nothing servable: " + "; ".join(f"{sc}: {u.why}" for sc, u in sorted(catalogue.unserved.items()))
    return f"no approved model in the registry store {catalogue.store.location}"


def _parameter_error(error: ParameterError) -> ApiError:
    return ApiError(400, "invalid_parameter", str(error), parameter=error.parameter)


def single_values(args: MultiDict) -> dict[str, str]:
    """Query parameters, each given once: which of two values was meant is not ours to guess."""
    for name, values in args.lists():
        if len(values) > 1:
            raise ParameterError(name, f"{name} is given more than once ({len(values)} times); give it once")
    return args.to_dict()


def _deeper_than(value: Any, limit: int) -> bool:
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                return True
            pending.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return False


def json_body() -> Any:
    """The request's JSON body: sent as JSON, within MAX_BODY_BYTES (else 413, raised by
    reading it), parsed, and no deeper than MAX_JSON_DEPTH."""
    if not request.is_json:
        raise ApiError(415, "unsupported_media_type", "the body must be sent with Content-Type: application/json, "
                                                      f"got {request.mimetype or 'none'}", parameter="Content-Type")
    data = request.get_data(cache=False)
    too_deep = ApiError(400, "invalid_body", f"the body's JSON nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        body = json.loads(data)
    except RecursionError:
        raise too_deep from None
    except ValueError as error:
        raise ApiError(400, "invalid_body", f"the body is not valid JSON: {error}") from None
    if _deeper_than(body, MAX_JSON_DEPTH):
        raise too_deep
    return body


def create_app(settings: ApiSettings | None = None) -> Flask:
    settings = settings or load_settings().api()
    app = Flask(__name__)
    app.json.sort_keys = False
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    catalogue = ModelCatalogue(RegistryStore(settings.registry), Remote(settings.dvc_remote), settings.reload_seconds)
    catalogue.refresh()
    app.extensions["pricelineage"] = catalogue
    reports = LatestReport(catalogue.store, catalogue.remote, settings.reload_seconds)
    if settings.cors_origins:
        from flask_cors import CORS

        CORS(app, origins=settings.cors_origins, methods=["GET", "POST", "OPTIONS"])

    @app.before_request
    def reload_when_due():
        if request.endpoint not in NO_REFRESH:
            catalogue.refresh_if_due()

    @app.errorhandler(ApiError)
    def api_error(error: ApiError):
        return jsonify(error_body(error.status, error.code, str(error), **error.details)), error.status

    @app.errorhandler(RequestEntityTooLarge)
    def body_too_large(error: RequestEntityTooLarge):
        return jsonify(error_body(413, "body_too_large", f"the request body is over {MAX_BODY_BYTES} bytes")), 413

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        code = (error.name or "error").lower().replace(" ", "_")
        response = jsonify(error_body(error.code or 500, code, error.description or error.name))
        response.status_code = error.code or 500
        if error.code == 405 and error.valid_methods:
            response.headers["Allow"] = ", ".join(error.valid_methods)
        return response

    @app.errorhandler(Exception)
    def server_error(error: Exception):  # a real fault: logged with its trace, answered without it
        app.logger.exception("unhandled error")
        return jsonify(error_body(500, "internal_error", f"internal error ({type(error).__name__})")), 500

    @app.get("/health")
    def health():
        return jsonify({"status": "alive"})

    @app.get("/ready")
    def ready():
        body = {
            "models": {sc: served.version for sc, served in sorted(catalogue.models.items())},
            "failures": catalogue.failure_report(),
            "unapproved": {sc: unserved.latest for sc, unserved in sorted(catalogue.unserved.items())},
            # Why each stockcode serves what it serves, or nothing (pins, rollbacks, revocations).
            "serving": dict(sorted({**catalogue.why_served,
                                    **{sc: unserved.why for sc, unserved in catalogue.unserved.items()}}.items())),
            "registry": settings.registry,
            "dvc_remote": settings.dvc_remote,
            "last_refresh": catalogue.last_refresh_at,
            "reload_seconds": settings.reload_seconds,
        }
        if catalogue.store_error:
            body["registry_error"] = catalogue.store_error
        why = not_ready_because(catalogue)
        if why is None:
            return jsonify({"status": "ready", **body})
        return jsonify({"status": "not_ready", "reason": why, **body}), 503

    @app.get("/v1/models")
    def models():
        return jsonify({"models": [served.summary() for _, served in sorted(catalogue.models.items())],
                        "failures": catalogue.failure_report()})

    @app.get("/v1/predict-price/<stockcode>")
    def predict_one(stockcode: str):
        try:
            checked = check_parameters(single_values(request.args))
            return jsonify(predict_price(served_or_error(catalogue, stockcode), checked))
        except ParameterError as error:
            raise _parameter_error(error) from None

    @app.post("/v1/predict-price")
    def predict_many():
        body = json_body()
        if not isinstance(body, dict) or not isinstance(body.get("requests"), list):
            raise ApiError(400, "invalid_parameter", 'the body must be JSON {"requests": [{"stockcode": ...}, ...]}',
                           parameter="requests")
        items = body["requests"]
        if not 1 <= len(items) <= MAX_BATCH:
            raise ApiError(400, "invalid_parameter", f"requests must hold 1 to {MAX_BATCH} items, got {len(items)}",
                           parameter="requests")
        extra = sorted(set(body) - {"requests"})
        if extra:
            raise ApiError(400, "invalid_parameter", f"unknown field {extra[0]!r} in the body", parameter=extra[0])
        jobs = []
        for i, item in enumerate(items):
            where = f"requests[{i}]."
            if not isinstance(item, dict) or not isinstance(item.get("stockcode"), str):
                raise ApiError(400, "invalid_parameter", f"{where}stockcode must be a string",
                               parameter=f"{where}stockcode")
            options = {k: v for k, v in item.items() if k != "stockcode"}
            try:
                jobs.append((item["stockcode"], check_parameters(options, where)))
            except ParameterError as error:
                raise _parameter_error(error) from None
        try:
            check_total_points((checked for _, checked in jobs), "requests")
        except ParameterError as error:
            raise _parameter_error(error) from None
        results = []
        for i, (stockcode, checked) in enumerate(jobs):
            try:
                results.append({"status": 200, **predict_price(served_or_error(catalogue, stockcode), checked)})
            except ApiError as error:
                if error.status == 400 and error.details.get("parameter") == "stockcode":
                    error.details["parameter"] = f"requests[{i}].stockcode"
                    raise
                results.append({"status": error.status, "stockcode": stockcode,
                                **error_body(error.status, error.code, str(error), **error.details)})
            except ParameterError as error:
                raise _parameter_error(ParameterError(f"requests[{i}].{error.parameter}",
                                                      f"requests[{i}]: {error}")) from None
        return jsonify({"results": results})

    @app.get("/v1/recommendations")
    def recommendations():
        try:
            query = check_query(single_values(request.args))
            report, table = reports.current()
        except ParameterError as error:
            raise _parameter_error(error) from None
        except ReportUnavailable as error:
            raise ApiError(error.status, error.code, str(error)) from None
        return jsonify(page_of(report, table, query))

    @app.get("/openapi.json")
    def openapi():
        return jsonify(openapi_document(MAX_PRICE_BINS, MAX_BATCH, MAX_POINTS_PER_CALL, MIN_UNIT_PRICE,
                                        DECISION_FILTERS, MAX_PAGE_SIZE))

    @app.get("/")
    def page():
        codes = sorted(catalogue.models)
        chosen = request.args.get("stockcode")
        default = chosen if chosen in catalogue.models else (codes[0] if codes else None)
        return render_template("index.html", stockcodes=codes, default=default)

    return app
