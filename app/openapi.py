"""The OpenAPI 3 document of the price API (``GET /openapi.json``); schemathesis fuzzes from it."""
from __future__ import annotations

from typing import Any

NUMBER_OR_NULL = {"type": ["number", "null"]}


def _json(schema_ref: str, description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema_ref}"}}}}


def _errors(*statuses: int) -> dict[str, Any]:
    meaning = {400: "a parameter is malformed, out of range, inconsistent or given twice (the error names it), "
                    "or the body is not JSON or nests too deep",
               404: "no model of this stockcode in the registry store",
               413: "the body is larger than the API accepts",
               415: "the body is not sent as Content-Type: application/json",
               503: "no approved model loaded for it (never approved, or its artifacts failed to load)"}
    return {str(status): _json("Error", meaning[status]) for status in statuses}


def _price_parameters(max_bins: int, min_price: float) -> list[dict[str, Any]]:
    price = {"type": "number", "minimum": min_price}
    return [
        {"name": "unitprice_min", "in": "query", "required": False, "schema": price,
         "description": f"Lowest list price of the curve (at least {min_price}). "
                        "Default: the lowest price in the product's evidence."},
        {"name": "unitprice_max", "in": "query", "required": False, "schema": price,
         "description": "Highest list price of the curve (at most 10x the highest observed list price). "
                        "Default: the highest price in the product's evidence."},
        {"name": "num_price_bins", "in": "query", "required": False,
         "schema": {"type": "integer", "minimum": 2, "maximum": max_bins, "default": 100},
         "description": f"Number of evenly spaced prices, 2 to {max_bins}."},
    ]


def openapi_document(max_bins: int, max_batch: int, max_points: int, min_price: float,
                     decisions: tuple[str, ...], max_page_size: int) -> dict[str, Any]:
    stockcode = {"name": "stockcode", "in": "path", "required": True,
                 "schema": {"type": "string", "example": "85123A"},
                 "description": "The product's stock code (letters, digits, '.', '_', '-')."}
    point = {
        "type": "object",
        "required": ["unit_price", "quantity", "predicted_sales", "extrapolated"],
        "properties": {
            "unit_price": {"type": "number", "description": "List price of this grid point."},
            "quantity": {"type": "number", "description": "Mean predicted units per line of the product's recent lines."},
            "predicted_sales": {"type": "number", "description": "unit_price x quantity: revenue per line."},
            "extrapolated": {"type": "boolean",
                             "description": "Outside the list prices the product was sold at: the model's guess."},
            "weekly_units": {"type": "number", "description": "Expected units a week at this list price: the "
                             "product's recent weekly units x (price / current)^elasticity (models approved "
                             "with a weekly response)."},
            "weekly_units_low": {"type": "number", "description": "Lower end of its interval."},
            "weekly_units_high": {"type": "number", "description": "Upper end of its interval."},
            "weekly_revenue": {"type": "number", "description": "unit_price x weekly_units."},
        },
    }
    weekly = {
        "type": ["object", "null"],
        "description": "Where the weekly curve comes from (null for models approved before it existed).",
        "properties": {"elasticity": {"type": "number"},
                       "elasticity_interval": {"type": "array", "items": {"type": "number"}},
                       "level": {"type": "string", "enum": ["catalogue", "group", "product"],
                                 "description": "Whose list-price changes the elasticity was learned from."},
                       "own_list_price_changes": {"type": ["integer", "null"]},
                       "current_price": {"type": "number"},
                       "weekly_units_at_current": {"type": "number"},
                       "weekly_units_at_current_interval": {"type": "array", "items": {"type": "number"}}},
    }
    prediction = {
        "type": "object",
        "required": ["stockcode", "model_version", "unitprice_min", "unitprice_max", "num_price_bins",
                     "optimal_unit_price", "max_predicted_sales", "recommendation", "flags", "evidence",
                     "evidence_range", "extrapolated_points", "prices"],
        "properties": {
            "stockcode": {"type": "string"},
            "model_version": {"type": "string", "description": "The approved model (md5 of its checkpoint, 12 hex)."},
            "unitprice_min": {"type": "number"}, "unitprice_max": {"type": "number"},
            "num_price_bins": {"type": "integer"},
            "optimal_unit_price": {"type": "number", "description": "The recommended list price: from the weekly "
                                   "response inside the guardrails (move at most max_move, the shop's price "
                                   "ladder), or the current one when the gain is not clear (decision hold)."},
            "max_predicted_sales": {"type": "number", "description": "Revenue at the recommended price: a week's "
                                    "(weekly basis) or a line's (per_line basis, older models)."},
            "recommendation": {
                "type": "object",
                "required": ["unit_price", "quantity", "predicted_sales", "current_price", "flags"],
                "properties": {"unit_price": {"type": "number"}, "quantity": {"type": "number"},
                               "predicted_sales": {"type": "number"}, "current_price": {"type": "number"},
                               "elasticity": NUMBER_OR_NULL, "inside_evidence": {"type": "boolean"},
                               "flags": {"type": "array", "items": {"type": "string"}},
                               "basis": {"type": "string", "enum": ["weekly", "per_line"]},
                               "decision": {"type": "string", "enum": ["move", "hold"]},
                               "weekly_units": {"type": "number"},
                               "weekly_units_interval": {"type": "array", "items": {"type": "number"}},
                               "gain": {"type": "number", "description": "Expected weekly gain of the objective "
                                        "at the best candidate over the current price."},
                               "gain_interval": {"type": "array", "items": {"type": "number"}},
                               "objective": {"type": "string", "enum": ["revenue", "margin"]},
                               "elasticity_interval": {"type": "array", "items": {"type": "number"}},
                               "elasticity_level": {"type": "string"},
                               "reasons": {"type": "array", "items": {"type": "string"},
                                           "description": "What bounds the recommendation, in order: "
                                                          "guardrail, evidence, interval."}},
            },
            "weekly_response": {"$ref": "#/components/schemas/WeeklyResponse"},
            "flags": {"type": "array", "items": {"type": "string"},
                      "description": "e.g. insufficient_price_variation (no list-price change observed: the "
                                     "recommendation is the current price), extrapolated."},
            "evidence": {"type": "object", "required": ["prices", "list_price_changes", "current_price"],
                         "properties": {
                             "prices": {"type": "array", "items": {
                                 "type": "object", "required": ["price", "lines", "weeks"],
                                 "properties": {"price": {"type": "number"}, "lines": {"type": "integer"},
                                                "weeks": {"type": "integer"}}}},
                             "list_price_changes": {"type": "integer"},
                             "current_price": {"type": "number"},
                             "weeks": {"type": "integer"},
                             "min_weeks_at_price": {"type": "integer"},
                             "evidenced_range": {"type": ["array", "null"], "items": {"type": "number"}}}},
            "evidence_range": {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2},
            "extrapolated_points": {"type": "integer"},
            "context_lines": {"type": "integer"},
            "prices": {"type": "array", "items": {"$ref": "#/components/schemas/PricePoint"}},
        },
    }
    batch_item = {
        "type": "object", "required": ["stockcode"], "additionalProperties": False,
        "properties": {"stockcode": {"type": "string"},
                       "unitprice_min": {"type": "number", "minimum": min_price},
                       "unitprice_max": {"type": "number", "minimum": min_price},
                       "num_price_bins": {"type": "integer", "minimum": 2, "maximum": max_bins}},
    }
    error = {"type": "object", "required": ["error"], "properties": {"error": {
        "type": "object", "required": ["status", "code", "message"],
        "properties": {"status": {"type": "integer"}, "code": {"type": "string"}, "message": {"type": "string"},
                       "parameter": {"type": "string", "description": "The parameter at fault (400)."},
                       "stockcode": {"type": "string"}}}}}
    failure = {"type": "object", "required": ["stockcode", "error"],
               "properties": {"stockcode": {"type": "string"}, "model_version": {"type": ["string", "null"]},
                              "error": {"type": "string"}, "at": {"type": "string"},
                              "still_serving": {"type": ["string", "null"],
                                                "description": "The version that keeps serving, if any."}}}
    ready = {"type": "object", "required": ["status", "models", "failures"],
             "properties": {"status": {"type": "string", "enum": ["ready", "not_ready"]},
                            "reason": {"type": "string"},
                            "models": {"type": "object", "additionalProperties": {"type": "string"}},
                            "failures": {"type": "array", "items": {"$ref": "#/components/schemas/LoadFailure"}},
                            "unapproved": {"type": "object", "additionalProperties": {"type": "string"}},
                            "serving": {"type": "object", "additionalProperties": {"type": "string"},
                                        "description": "Why each stockcode serves its model (approved, signed "
                                                       "off, pinned, rolled back), or why nothing (revoked, "
                                                       "a candidate awaiting a sign-off)."},
                            "registry_error": {"type": "string"},
                            "last_refresh": {"type": ["string", "null"]}}}
    model = {"type": "object", "required": ["stockcode", "model_version", "decided_at", "lineage", "stages"],
             "properties": {"stockcode": {"type": "string"}, "model_version": {"type": "string"},
                            "model_md5": {"type": ["string", "null"]}, "decided_at": {"type": "string"},
                            "loaded_at": {"type": "string"},
                            "lineage": {"type": "object", "description": "md5 of the data, code and params behind it."},
                            "stages": {"type": "array", "items": {"type": "string"}},
                            "test_metrics": {"type": "object"}, "verdicts": {"type": "object"},
                            "recommended_price": {"type": "number"},
                            "flags": {"type": "array", "items": {"type": "string"}},
                            "evidence_range": {"type": "array", "items": {"type": "number"}}}}
    batch_result = {"type": "object", "required": ["status", "stockcode"],
                    "description": "A prediction (status 200) or that stockcode's error (404, 503).",
                    "properties": {"status": {"type": "integer", "enum": [200, 404, 503]},
                                   "stockcode": {"type": "string"}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "pricelineage price API", "version": "1",
                 "description": "Predicted demand and revenue across a list-price range from the last approved "
                                "model of each product, the recommended price and the evidence behind it."},
        "paths": {
            "/health": {"get": {"operationId": "health", "summary": "The process is alive.",
                                "responses": {"200": _json("Health", "alive")}}},
            "/ready": {"get": {"operationId": "ready", "summary": "Models are loaded (503 with why otherwise).",
                               "responses": {"200": _json("Ready", "at least one model serves; failures listed"),
                                             "503": _json("Ready", "no model loaded, and why")}}},
            "/v1/models": {"get": {"operationId": "models",
                                   "summary": "The approved version served per stockcode, with its lineage summary.",
                                   "responses": {"200": _json("Models", "served models")}}},
            "/v1/predict-price/{stockcode}": {"get": {
                "operationId": "predictPrice",
                "summary": "Demand and revenue across a price range, the recommended price and its evidence.",
                "parameters": [stockcode, *_price_parameters(max_bins, min_price)],
                "responses": {"200": _json("Prediction", "the curve"), **_errors(400, 404, 503)}}},
            "/v1/predict-price": {"post": {
                "operationId": "predictPrices", "summary": f"Several stockcodes in one call (1 to {max_batch}).",
                "description": f"At most {max_points} price points in all: num_price_bins summed over the "
                               "requests (100 where not given), so that the answer fits AWS Lambda's response limit.",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["requests"], "additionalProperties": False,
                    "properties": {"requests": {"type": "array", "minItems": 1, "maxItems": max_batch,
                                                "items": {"$ref": "#/components/schemas/BatchItem"}}}}}}},
                "responses": {"200": _json("BatchResponse", "one result per request, in order"),
                              **_errors(400, 413, 415)}}},
            "/v1/recommendations": {"get": {
                "operationId": "recommendations",
                "summary": "The newest catalogue run's price report: every product it priced, paged.",
                "parameters": [
                    {"name": "decision", "in": "query", "required": False,
                     "schema": {"type": "string", "enum": list(decisions)},
                     "description": "Only products with this decision (none: no decision recorded)."},
                    {"name": "act_on", "in": "query", "required": False,
                     "schema": {"type": "string", "enum": ["true", "false"]},
                     "description": "Only products whose price is (true) or is not (false) one to act on."},
                    {"name": "page", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1},
                     "description": "Page number, from 1."},
                    {"name": "page_size", "in": "query", "required": False,
                     "schema": {"type": "integer", "minimum": 1, "maximum": max_page_size, "default": 100},
                     "description": f"Rows per page, 1 to {max_page_size}."}],
                "responses": {"200": _json("Recommendations", "a page of the report"),
                              "400": _json("Error", "a parameter is malformed or unknown (the error names it)"),
                              "404": _json("Error", "no catalogue run has stored a report yet"),
                              "503": _json("Error", "the registry store or the DVC remote could not be read")}}},
            "/openapi.json": {"get": {"operationId": "openapi", "summary": "This document.",
                                      "responses": {"200": {"description": "OpenAPI 3",
                                                            "content": {"application/json": {"schema": {"type": "object"}}}}}}},
        },
        "components": {"schemas": {
            "Health": {"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}},
            "Ready": ready, "LoadFailure": failure,
            "Models": {"type": "object", "required": ["models", "failures"],
                       "properties": {"models": {"type": "array", "items": {"$ref": "#/components/schemas/Model"}},
                                      "failures": {"type": "array",
                                                   "items": {"$ref": "#/components/schemas/LoadFailure"}}}},
            "Model": model, "PricePoint": point, "WeeklyResponse": weekly, "Prediction": prediction,
            "BatchItem": batch_item,
            "BatchResponse": {"type": "object", "required": ["results"],
                              "properties": {"results": {"type": "array",
                                                         "items": {"$ref": "#/components/schemas/BatchResult"}}}},
            "BatchResult": batch_result, "Error": error,
            "Recommendations": {
                "type": "object",
                "required": ["run_key", "products", "matched", "page", "page_size", "pages", "rows"],
                "properties": {"run_key": {"type": ["string", "null"]}, "created_at": {"type": ["string", "null"]},
                               "report": {"type": ["string", "null"]}, "revision": {"type": ["string", "null"]},
                               "products": {"type": "integer"}, "matched": {"type": "integer"},
                               "page": {"type": "integer"}, "page_size": {"type": "integer"},
                               "pages": {"type": "integer"},
                               "rows": {"type": "array", "items": {"type": "object", "description": (
                                   "stockcode, decision, model_version, current_price, recommended_price, "
                                   "move_pct, expected_weekly_gain, gain_low, gain_high, objective, elasticity, "
                                   "elasticity_level, act_on, reasons")}}}},
        }},
    }
