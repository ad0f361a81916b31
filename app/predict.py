"""``/v1/predict-price``: parameters checked and named, the curve over the asked range, the
part outside the evidence marked as extrapolated, the recommendation from inside it."""
from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from app.models import ServedModel

DEFAULT_PRICE_BINS = 100
MAX_PRICE_BINS = 1000
# What AWS Lambda returns at most: the handler's whole response (the JSON body escaped inside
# serverless-wsgi's dict) as the runtime serialises it.
LAMBDA_RESPONSE_LIMIT_BYTES = 6_291_456
# Points (num_price_bins summed over a call's products) one call may ask for: about 130 bytes
# each as Lambda returns them, 20,000 make 2.6 MB, less than half the limit, whatever the
# products' evidence adds (tests/test_api_limits.py measures it at the cap).
MAX_POINTS_PER_CALL = 20_000
# A penny: the data's prices are pounds to two decimals, and 5e-324 is no price.
MIN_UNIT_PRICE = 0.01
# Numbers as a client writes them: ASCII digits only (no ``1_0``, no Arabic-Indic or full-width
# digits, which Python's float() and int() would read), no blanks around them.
ASCII_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?(?:inf|infinity|nan)",
                           re.IGNORECASE)
ASCII_INTEGER = re.compile(r"[0-9]+")
# A range may reach past the evidence (marked extrapolated), but not without bound.
MAX_RANGE_FACTOR = 10.0
PARAMETERS = ("unitprice_min", "unitprice_max", "num_price_bins")
# Prices are compared with the evidence to the cent's hundredth.
PRICE_TOLERANCE = 1e-9


class ParameterError(Exception):
    """A request parameter is malformed, out of range or inconsistent with another."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter


def _shown(value: Any) -> str:
    """``value`` for an error message, never an echo of a whole body."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


def _number(parameter: str, value: Any) -> float:
    if isinstance(value, str) and not ASCII_DECIMAL.fullmatch(value):
        raise ParameterError(parameter, f"{parameter} must be a number in ASCII decimal digits (e.g. 2.95), "
                                        f"got {_shown(value)}")
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ParameterError(parameter, f"{parameter} must be a number, got {_shown(value)}")
    try:
        number = float(value)
    except (ValueError, OverflowError):
        raise ParameterError(parameter, f"{parameter} must be a number, got {_shown(value)}") from None
    if not math.isfinite(number) or number <= 0:
        raise ParameterError(parameter, f"{parameter} must be a positive finite price, got {_shown(value)}")
    if number < MIN_UNIT_PRICE:
        raise ParameterError(parameter, f"{parameter} must be at least {MIN_UNIT_PRICE} (a penny), got {_shown(value)}")
    return number


def _bins(value: Any) -> int:
    parameter = "num_price_bins"
    if isinstance(value, str) and not ASCII_INTEGER.fullmatch(value):
        raise ParameterError(parameter, f"{parameter} must be an integer in ASCII decimal digits (e.g. 100), "
                                        f"got {_shown(value)}")
    if isinstance(value, bool) or not isinstance(value, (str, int, float)) or (
            isinstance(value, float) and not value.is_integer()):
        raise ParameterError(parameter, f"{parameter} must be an integer, got {_shown(value)}")
    try:
        bins = int(value)
    except (ValueError, OverflowError):
        raise ParameterError(parameter, f"{parameter} must be an integer, got {_shown(value)}") from None
    if not 2 <= bins <= MAX_PRICE_BINS:
        raise ParameterError(parameter, f"{parameter} must be between 2 and {MAX_PRICE_BINS}, got {bins}")
    return bins


def check_parameters(values: Mapping[str, Any], where: str = "") -> dict[str, Any]:
    """The known parameters, typed; unknown names are an error (a typo would be ignored)."""
    unknown = sorted(set(values) - set(PARAMETERS))
    if unknown:
        raise ParameterError(f"{where}{unknown[0]}", f"unknown parameter {where}{unknown[0]!r}; "
                                                     f"known: {', '.join(PARAMETERS)}")
    checked: dict[str, Any] = {}
    try:
        for name in ("unitprice_min", "unitprice_max"):
            if values.get(name) not in (None, ""):
                checked[name] = _number(name, values[name])
        if values.get("num_price_bins") not in (None, ""):
            checked["num_price_bins"] = _bins(values["num_price_bins"])
    except ParameterError as error:
        raise ParameterError(f"{where}{error.parameter}", f"{where}{error}") from None
    if "unitprice_min" in checked and "unitprice_max" in checked and checked["unitprice_min"] >= checked["unitprice_max"]:
        raise ParameterError(f"{where}unitprice_min", f"{where}unitprice_min ({checked['unitprice_min']}) must be "
                                                      f"below unitprice_max ({checked['unitprice_max']})")
    return checked


def check_total_points(checked: Iterable[Mapping[str, Any]], parameter: str) -> int:
    """The points a call asks for in all (``num_price_bins`` summed, the default where not
    given), within ``MAX_POINTS_PER_CALL``."""
    points = sum(item.get("num_price_bins", DEFAULT_PRICE_BINS) for item in checked)
    if points > MAX_POINTS_PER_CALL:
        raise ParameterError(parameter, f"{parameter} ask for {points} price points in all (num_price_bins summed, "
                                        f"{DEFAULT_PRICE_BINS} where not given); at most {MAX_POINTS_PER_CALL} per "
                                        "call, so that the answer fits AWS Lambda's response limit")
    return points


def price_range(served: ServedModel, checked: Mapping[str, Any]) -> tuple[float, float, int]:
    """The asked range, defaults from the model's evidence, checked against it."""
    default_low, default_high = served.default_range()
    low = checked.get("unitprice_min", default_low)
    high = checked.get("unitprice_max", default_high)
    bins = checked.get("num_price_bins", DEFAULT_PRICE_BINS)
    if low >= high:
        name = "unitprice_min" if "unitprice_min" in checked else "unitprice_max"
        raise ParameterError(name, f"unitprice_min ({low}) must be below unitprice_max ({high}); "
                                   f"the default range of {served.stockcode} is [{default_low}, {default_high}]")
    cap = MAX_RANGE_FACTOR * served.evidence_range[1]
    if high > cap:
        name = "unitprice_max" if "unitprice_max" in checked else "unitprice_min"
        raise ParameterError(name, f"{name} beyond {MAX_RANGE_FACTOR:g}x the highest observed list price of "
                                   f"{served.stockcode} ({served.evidence_range[1]}): at most {cap:.4g}")
    return float(low), float(high), int(bins)


def predict_price(served: ServedModel, checked: Mapping[str, Any]) -> dict[str, Any]:
    low, high, bins = price_range(served, checked)
    return served.answer((low, high, bins), lambda: curve_answer(served, low, high, bins))


def curve_answer(served: ServedModel, low: float, high: float, bins: int) -> dict[str, Any]:
    prices = np.linspace(low, high, bins)
    curve = served.curve(prices)
    evidence_low, evidence_high = served.evidence_range
    outside = (prices < evidence_low - PRICE_TOLERANCE) | (prices > evidence_high + PRICE_TOLERANCE)
    recommendation = served.recommendation()
    points = [
        {"unit_price": float(price), "quantity": float(quantity), "predicted_sales": float(revenue),
         "extrapolated": bool(extrapolated)}
        for price, quantity, revenue, extrapolated in zip(prices, curve.demand, curve.revenue, outside)
    ]
    for point, weekly in zip(points, served.weekly_demand(prices)):
        point.update(weekly_units=weekly.units, weekly_units_low=weekly.units_low,
                     weekly_units_high=weekly.units_high, weekly_revenue=weekly.price * weekly.units)
    return {
        "stockcode": served.stockcode,
        "model_version": served.version,
        "unitprice_min": low,
        "unitprice_max": high,
        "num_price_bins": bins,
        "optimal_unit_price": recommendation["unit_price"],
        "max_predicted_sales": recommendation["predicted_sales"],
        "recommendation": recommendation,
        "flags": list(served.response.flags) + (["extrapolated"] if outside.any() else []),
        "evidence": served.evidence.as_dict(),
        "evidence_range": [evidence_low, evidence_high],
        "extrapolated_points": int(outside.sum()),
        "context_lines": int(served.context.height),
        "weekly_response": weekly_summary(served),
        "prices": points,
    }


def weekly_summary(served: ServedModel) -> dict[str, Any] | None:
    """Where the weekly curve comes from: the elasticity, its interval and level, the level."""
    if served.weekly is None:
        return None
    row = served.weekly["response"]
    return {"elasticity": row["elasticity"], "elasticity_interval": [row["elasticity_low"], row["elasticity_high"]],
            "level": row["level"], "own_list_price_changes": row.get("own_changes"),
            "current_price": row["current_price"], "weekly_units_at_current": row["level_units"],
            "weekly_units_at_current_interval": [row["level_units_low"], row["level_units_high"]]}
