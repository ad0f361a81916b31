"""A recommended list price a merchandiser can act on: inside the guardrails, with the expected
weekly units, takings and gain (each with an interval), "hold" when the gain is not clear, and the
reasons that bound it, in order.

Pure: the weekly response comes in as the catalogue stage's row of the product
(``pricing.price_response.product_response``); guardrails from ``params.yaml``.

- **What the shop takes**: a list price is not what every line pays (quantity breaks, segment
  prices). Takings per unit are the list price × the product's take ratio (what its recent lines
  paid over what they would have paid at the list price).
- **Objective**: weekly takings (``revenue``), or weekly margin (``margin``: takings less the
  unit cost, given as ``cost_ratio`` × the current list price).
- **Guardrails**: at most ``max_move`` away from the current price in one step, only price points
  of the shop's ladder (the list prices it uses), between ``floor`` and ``ceiling`` when given.
- **Hold** when the gain's interval (elasticity and level intervals together) includes zero.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from pricing.errors import DataValidationError, from_section
from pricing.price_response import product_response, weekly_curve, weekly_demand

OBJECTIVES = ("revenue", "margin")
HOLD, MOVE = "hold", "move"


@dataclass(frozen=True)
class Guardrails:
    """The ``recommendation`` section of ``params.yaml``."""

    objective: str = "revenue"
    cost_ratio: float | None = None
    max_move: float = 0.1
    floor: float | None = None
    ceiling: float | None = None
    # Price points count for the ladder once this many product-weeks held them.
    ladder_min_weeks: int = 20

    @classmethod
    def from_params(cls, section: dict[str, Any] | None) -> Guardrails:
        rails = from_section(cls, section, "recommendation")
        if rails.objective not in OBJECTIVES:
            raise DataValidationError(f"recommendation.objective must be one of {', '.join(OBJECTIVES)}, "
                                      f"got {rails.objective!r}")
        if rails.objective == "margin" and not (rails.cost_ratio is not None and 0 < float(rails.cost_ratio) < 1):
            raise DataValidationError("recommendation.objective margin needs cost_ratio in (0, 1): the unit cost "
                                      "as a share of the current list price")
        if not 0 < float(rails.max_move) < 1:
            raise DataValidationError(f"recommendation.max_move must be in (0, 1), got {rails.max_move}")
        if rails.floor is not None and rails.ceiling is not None and float(rails.floor) >= float(rails.ceiling):
            raise DataValidationError(f"recommendation.floor ({rails.floor}) must be below ceiling ({rails.ceiling})")
        return rails


def price_ladder(list_prices: Iterable[float], weeks: Iterable[int], min_weeks: int) -> list[float]:
    """The price points the shop uses: list prices held by at least ``min_weeks`` product-weeks."""
    held: dict[float, int] = {}
    for price, count in zip(list_prices, weeks):
        key = round(float(price), 2)
        held[key] = held.get(key, 0) + int(count)
    return sorted(p for p, n in held.items() if n >= int(min_weeks) and p > 0)


def _objective(units: float, price: float, take_ratio: float, unit_cost: float) -> float:
    return units * (price * take_ratio - unit_cost)


def recommend(response: dict[str, Any], ladder: Sequence[float], rails: Guardrails,
              evidenced: tuple[float, float] | None = None) -> dict[str, Any]:
    """The recommended list price of a product with the weekly ``response`` row."""
    current = float(response["current_price"])
    take = float(response.get("take_ratio") or 1.0)
    unit_cost = float(rails.cost_ratio) * current if rails.objective == "margin" else 0.0
    low, high = current * (1 - float(rails.max_move)), current * (1 + float(rails.max_move))
    if rails.floor is not None:
        low = max(low, float(rails.floor))
    if rails.ceiling is not None:
        high = min(high, float(rails.ceiling))
    candidates = sorted({current, *(p for p in ladder if low - 1e-9 <= p <= high + 1e-9)})
    level = (response["level_units_low"], response["level_units"], response["level_units_high"])
    slopes = (response["elasticity_low"], response["elasticity_high"])

    def value(price: float, elasticity: float, units_now: float) -> float:
        return _objective(units_now * math.exp(elasticity * math.log(price / current)), price, take, unit_cost)

    options = []
    for price, demand in zip(candidates, weekly_demand(response, candidates, evidenced)):
        point = value(price, response["elasticity"], level[1]) - value(current, response["elasticity"], level[1])
        corners = [value(price, e, u) - value(current, e, u) for e in slopes for u in (level[0], level[2])]
        options.append({"price": price, "weekly_units": demand.units, "weekly_units_interval": [demand.units_low,
                        demand.units_high], "objective": value(price, response["elasticity"], level[1]),
                        "gain": point, "gain_interval": [min(corners + [point]), max(corners + [point])],
                        "extrapolated": demand.extrapolated})
    at_current = next(o for o in options if o["price"] == current)
    best = max(options, key=lambda o: o["gain"])
    reasons: list[str] = []
    # A guardrail bound the move when the objective at the step's edge (on or off the ladder)
    # beats the best candidate in the same direction: the product would have gone further.
    if best["price"] != current:
        direction, bound = ("down", low) if best["price"] < current else ("up", high)
        if value(bound, response["elasticity"], level[1]) > best["objective"] + 1e-12:
            reasons.append(f"guardrail: the objective keeps improving {direction}ward; a move is limited to "
                           f"{rails.max_move:.0%} per cycle ({bound:.2f}) and the shop's price ladder")
    if best["price"] != current and best["extrapolated"]:
        reasons.append(f"evidence: {best['price']:.2f} lies outside the product's own list prices "
                       f"{list(evidenced) if evidenced else [current, current]}: its response there is the "
                       f"{response['level']}-level elasticity, extrapolated")
    decision = MOVE
    chosen = best
    gain_low, gain_high = best["gain_interval"]
    if best["price"] == current:
        decision = HOLD
        reasons.append("no price within the guardrails improves the expected objective")
    elif gain_low <= 0 <= gain_high:
        decision, chosen = HOLD, at_current
        reasons.append(f"interval: the expected gain at {best['price']:.2f} is {best['gain']:+.2f} a week, but its "
                       f"{response.get('interval_level', 0.9):.0%} interval [{gain_low:+.2f}, {gain_high:+.2f}] "
                       f"includes zero: hold {current:.2f}")
    else:
        reasons.append(f"interval: the expected gain {best['gain']:+.2f} a week has its interval "
                       f"[{gain_low:+.2f}, {gain_high:+.2f}] clear of zero")
    return {
        "decision": decision,
        "recommended_price": chosen["price"],
        "current_price": current,
        "best_candidate": best["price"],
        "objective": rails.objective,
        "take_ratio": take,
        "unit_cost": unit_cost if rails.objective == "margin" else None,
        "weekly_units": chosen["weekly_units"],
        "weekly_units_interval": chosen["weekly_units_interval"],
        "weekly_objective": chosen["objective"],
        "weekly_objective_at_current": at_current["objective"],
        "gain": best["gain"],
        "gain_interval": best["gain_interval"],
        "elasticity": response["elasticity"],
        "elasticity_interval": [response["elasticity_low"], response["elasticity_high"]],
        "elasticity_level": response["level"],
        "guardrails": {"max_move": float(rails.max_move), "allowed": [round(low, 4), round(high, 4)],
                       "floor": rails.floor, "ceiling": rails.ceiling, "candidates": candidates},
        "reasons": reasons,
    }


def served_response(table: pl.DataFrame, price_points: pl.DataFrame, stockcode: str,
                    evidenced: tuple[float, float] | None, rails: Guardrails, span: float, n_points: int
                    ) -> dict[str, Any]:
    """What a product serves: its row of the catalogue stage's ``table``, its weekly curve (with
    the recommended price on it) and the recommendation inside ``rails``, on the shop's ladder
    from ``price_points``."""
    row = product_response(table, stockcode)
    ladder = price_ladder(price_points["price"], price_points["product_weeks"], rails.ladder_min_weeks)
    recommendation = recommend(row, ladder, rails, evidenced)
    return {
        "response": row,
        "evidenced_range": list(evidenced) if evidenced else None,
        "curve": weekly_curve(row, evidenced, span, n_points, also=[recommendation["recommended_price"]]),
        "recommendation": recommendation,
    }
