"""The catalogue's price response (pricing/price_response.py) and the recommendation built on it
(pricing/recommend.py), on generated data whose elasticities are known."""
from __future__ import annotations

import json
from datetime import date, datetime, timedelta

import polars as pl
import pytest
from panel_factory import MONDAY, generated_panel

from pricing.as_of import horizon
from pricing.errors import DataValidationError
from pricing.price_response import (
    ResponseConfig,
    estimate,
    estimate_from_lines,
    judge_weekly_response,
    lasting_changes,
    product_response,
    weekly_curve,
    weekly_demand,
    weekly_panel,
)
from pricing.recommend import HOLD, MOVE, Guardrails, price_ladder, recommend


def test_the_catalogue_slope_is_recovered_within_its_interval():
    covered = 0
    for seed in range(10):  # a 90 % interval: about nine in ten cover the truth
        response = estimate(generated_panel(seed=seed), ResponseConfig(pooling="catalogue"))
        low, high = response.summary["catalogue_interval"]
        covered += low < -1.5 < high
        assert high - low < 0.2 and abs(response.summary["catalogue_elasticity"] + 1.5) < 0.1
    assert covered >= 7
    assert set(response.table["level"]) == {"catalogue"}
    assert response.summary["products_with_interval_below_zero"] == response.table.height


def test_the_estimate_is_the_same_bytes_on_one_core_and_on_two():
    """600 products x 52 weeks is big enough that a two-thread BLAS product sums in another
    order: before the estimate held BLAS to one thread, these differed in their last digits."""
    from threadpoolctl import threadpool_limits

    panel = generated_panel(seed=3, n_products=600, n_weeks=52)

    def outputs(threads: int) -> tuple[str, str]:
        with threadpool_limits(limits=threads, user_api="blas"):
            response = estimate(panel, ResponseConfig())
        return response.table.write_csv(float_precision=17), json.dumps(response.summary, sort_keys=True, default=str)

    assert outputs(1) == outputs(2)


def test_each_price_band_gets_its_own_slope_and_a_product_without_a_change_its_groups():
    panel = generated_panel(seed=1, n_products=200, by_band={0: -0.8, 1: -2.5}, fixed=("P010", "P150"))
    response = estimate(panel, ResponseConfig(pooling="group", price_bands=2))
    groups = {g["group"]: g for g in response.summary["group_elasticities"]}
    assert abs(groups[0]["served"] - -0.8) < 0.25 and abs(groups[1]["served"] - -2.5) < 0.25
    cheap, dear = (product_response(response.table, code) for code in ("P010", "P150"))
    assert cheap["own_changes"] == 0 and cheap["level"] == "group" and cheap["elasticity"] == groups[0]["served"]
    assert dear["level"] == "group" and dear["elasticity_low"] < -2.5 < dear["elasticity_high"]


def test_a_product_level_slope_needs_the_products_own_price_moves():
    panel = generated_panel(seed=2, fixed=("P005",))
    response = estimate(panel, ResponseConfig(pooling="product"))
    fixed = product_response(response.table, "P005")
    assert fixed["weight_own"] == 0.0 and fixed["level"] != "product"
    # with one common true slope and little noise, the empirical-Bayes spread is ~0: every
    # product is pooled, none trusted on its own before/after step
    assert (response.table["weight_own"] < 0.5).all()


def test_lasting_changes_ignore_blips():
    weeks = [MONDAY + timedelta(weeks=w) for w in range(12)]
    prices = [2.0] * 4 + [2.5] + [2.0] * 2 + [1.8] * 5  # a one-week blip, then a cut that holds
    panel = pl.DataFrame({"stockcode": ["A"] * 12, "week": weeks, "list_price": prices, "units": [10.0] * 12})
    changes = lasting_changes(panel, min_change=0.02, hold_weeks=4)
    assert changes.select("old_price", "new_price").rows() == [(2.0, 1.8)]


def sales_lines(n_weeks: int = 12) -> pl.DataFrame:
    """Two products' lines: registered buyers at the list price (modal), a bulk tier, a guest."""
    rows = []
    for week in range(n_weeks):
        monday = MONDAY + timedelta(weeks=week)
        price = 2.95 if week < 6 else 2.65
        for day in range(5):
            when = monday + timedelta(days=day, hours=10)
            rows += [{"stockcode": "A", "invoice_date": when, "quantity": 6, "unit_price": price, "is_registered": 1},
                     {"stockcode": "A", "invoice_date": when, "quantity": 48, "unit_price": price - 0.4,
                      "is_registered": 1},
                     {"stockcode": "B", "invoice_date": when, "quantity": 2, "unit_price": 1.25, "is_registered": 1}]
        rows.append({"stockcode": "A", "invoice_date": monday + timedelta(days=2), "quantity": 1,
                     "unit_price": 5.79, "is_registered": 0})
    return pl.DataFrame(rows)


def test_the_panel_takes_the_modal_registered_price_and_complete_weeks_only():
    panel = weekly_panel(sales_lines())
    a = panel.filter(pl.col("stockcode") == "A")
    assert a["list_price"].to_list() == [2.95] * 6 + [2.65] * 5  # the last week ends after the data: left out
    assert a["units"][0] == 5 * (6 + 48) + 1 and a["lines"][0] == 11
    assert a["takings"][0] == pytest.approx(5 * (6 * 2.95 + 48 * 2.55) + 5.79)


def test_as_of_leaves_no_line_after_it():
    lines = sales_lines()
    cut = date(2011, 2, 6)  # a Sunday: the five weeks from 3 January are complete by then
    panel = weekly_panel(lines, horizon(cut))
    assert panel["week"].max() == datetime(2011, 1, 31)
    response = estimate_from_lines(lines, ResponseConfig(min_weeks=3), cut)
    assert response.summary["as_of"] == "2011-02-06" and response.summary["as_of_last_week"] == "2011-01-31"
    with pytest.raises(DataValidationError, match="as_of must be an ISO date"):
        horizon("last friday")


ROW = {"current_price": 2.0, "elasticity": -1.5, "elasticity_low": -1.8, "elasticity_high": -1.2,
       "level_units": 100.0, "level_units_low": 90.0, "level_units_high": 110.0, "level": "catalogue",
       "own_changes": 0, "take_ratio": 0.9}


def test_a_price_outside_the_evidence_is_answered_by_the_elasticity_and_marked():
    inside, outside = weekly_demand(ROW, [2.0, 3.0], evidenced=(1.8, 2.2))
    assert inside.units == 100.0 and not inside.extrapolated
    assert outside.extrapolated and outside.units == pytest.approx(100.0 * 1.5 ** -1.5)
    assert outside.units < inside.units  # never a clipped, flat answer
    # the interval widens with the distance from the current price
    assert (outside.units_high / outside.units_low) > (inside.units_high / inside.units_low)
    curve = weekly_curve(ROW, (1.8, 2.2), span=0.2, n_points=9)
    units = [point["weekly_units"] for point in curve]
    assert units == sorted(units, reverse=True) and len(set(units)) == len(units)


@pytest.mark.parametrize("interval, status", [
    ((-1.8, -1.2), "passed"),
    ((-0.3, 0.2), "failed"),   # may be flat or rising: nothing a price can act on
    ((-9.0, -6.0), "failed"),  # outside the band
])
def test_the_gate_wants_an_interval_below_zero_inside_the_band(interval, status):
    verdict = judge_weekly_response({**ROW, "elasticity_low": interval[0], "elasticity_high": interval[1]}, [-8, 0])
    assert verdict["status"] == status and verdict["level"] == "catalogue"
    assert bool(verdict["reasons"]) == (status == "failed")


LADDER = [1.65, 1.75, 1.85, 1.95, 2.0, 2.1, 2.25, 2.45]


def test_revenue_with_elastic_demand_cuts_to_the_lowest_ladder_point_the_step_allows():
    result = recommend(ROW, LADDER, Guardrails(max_move=0.1), evidenced=(2.0, 2.0))
    assert result["decision"] == MOVE and result["recommended_price"] == 1.85  # 1.80 is the step's edge
    assert result["reasons"][0].startswith("guardrail:") and "extrapolated" in result["reasons"][1]
    low, high = result["gain_interval"]
    assert 0 < low <= result["gain"] <= high


def test_a_gain_whose_interval_includes_zero_holds():
    unclear = {**ROW, "elasticity": -1.05, "elasticity_low": -1.6, "elasticity_high": -0.5}
    result = recommend(unclear, LADDER, Guardrails(max_move=0.1))
    assert result["decision"] == HOLD and result["recommended_price"] == 2.0
    assert result["gain_interval"][0] < 0 < result["gain_interval"][1]
    assert result["reasons"][-1].startswith("interval:")


def test_margin_with_costs_raises_within_floor_and_ceiling():
    rails = Guardrails(objective="margin", cost_ratio=0.6, max_move=0.2, ceiling=2.2)
    result = recommend(ROW, LADDER, rails)
    assert result["decision"] == MOVE and result["recommended_price"] == 2.1  # 2.25 is above the ceiling
    assert result["guardrails"]["allowed"] == [1.6, 2.2]
    with pytest.raises(DataValidationError, match="needs cost_ratio"):
        Guardrails.from_params({"objective": "margin"})


def test_the_ladder_keeps_the_price_points_the_shop_uses():
    assert price_ladder([2.95, 2.89, 2.9, 2.55], [6413, 395, 1, 3734], min_weeks=20) == [2.55, 2.89, 2.95]
