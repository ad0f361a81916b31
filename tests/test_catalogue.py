"""The catalogue run's pure parts: which products train and which are pooled, the shards, the
pooled price of a product too small to train, and the run's report in brief."""
from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl
import pytest

from pricing.catalogue import plan_catalogue, shards
from pricing.errors import DataValidationError
from pricing.pooled import pooled_prices
from pricing.recommend import Guardrails
from pricing.registry import POOLED, Record
from pricing.report import catalogue_summary_markdown, report_row, report_rows

BAND = [-8.0, 0.0]


def test_the_plan_trains_products_with_enough_lines_and_pools_the_rest_most_lines_first():
    lines = {"A": 500, "B": 100, "C": 99, "D": 3, "E": 0, "F": 800, "G": 3}
    plan = plan_catalogue(lines, min_product_lines=100)
    assert plan.trained == ["F", "A", "B"]
    assert plan.pooled == ["C", "D", "G"]  # a product without a line is neither
    assert plan.products == 6
    top = plan_catalogue(lines, 100, top=2, small=1)
    assert (top.trained, top.pooled) == (["F", "A"], ["C"])
    with pytest.raises(DataValidationError, match="top and small must be 0"):
        plan_catalogue(lines, 100, top=-1)


def test_shards_keep_the_order_and_cover_every_product_once():
    codes = [f"P{n}" for n in range(7)]
    assert shards(codes, 3) == [["P0", "P1", "P2"], ["P3", "P4", "P5"], ["P6"]]
    assert shards(codes, 50) == [codes]
    assert shards([], 3) == []
    with pytest.raises(DataValidationError, match="at least 1 product"):
        shards(codes, 0)


def response_row(stockcode: str, current: float, elasticity=(-1.35, -1.44, -1.27)) -> dict:
    return {"stockcode": stockcode, "elasticity": elasticity[0], "elasticity_low": elasticity[1],
            "elasticity_high": elasticity[2], "level": "catalogue", "group": 1, "own_changes": 0, "own_weeks": 19,
            "weight_own": 0.0, "current_price": current, "level_units": 30.0, "level_units_low": 12.0,
            "level_units_high": 80.0, "level_weeks": 8, "take_ratio": 1.0, "last_week": "2011-11-28"}


def weekly_lines(stockcode: str, prices: list[float]) -> pl.DataFrame:
    """One line a week per price given, in order."""
    start = datetime(2011, 1, 3)
    return pl.DataFrame({"stockcode": [stockcode] * len(prices), "list_price": prices,
                         "invoice_date": [start + timedelta(weeks=n) for n in range(len(prices))]})


@pytest.fixture
def catalogue_tables():
    table = pl.DataFrame([response_row("SMALL", 2.0), response_row("FLAT", 1.0, (0.2, -0.1, 0.5))])
    ladder = pl.DataFrame({"price": [1.65, 1.8, 1.85, 1.95, 2.0, 2.1, 0.95, 1.0, 1.05],
                           "product_weeks": pl.Series([40] * 9, dtype=pl.UInt32)})
    lines = pl.concat([weekly_lines("SMALL", [2.2] * 4 + [2.0] * 6), weekly_lines("FLAT", [1.0] * 10),
                       weekly_lines("FEW", [5.0] * 3)])
    return lines, table, ladder


def test_a_small_product_is_priced_from_the_catalogue_response_inside_the_guardrails(catalogue_tables):
    lines, table, ladder = catalogue_tables
    small, flat, few, none = pooled_prices(lines, ["SMALL", "FLAT", "FEW", "NONE"], table, ladder, Guardrails(),
                                           BAND, span=0.2, n_points=9, min_weeks_at_price=2)
    assert small.priced and small.lines == 10 and small.verdict["passed"]
    chosen = small.response["recommendation"]
    assert chosen["current_price"] == 2.0
    # elastic (-1.35): revenue rises as the price falls, as far as the 10 % step and the ladder allow
    assert chosen["recommended_price"] == 1.8
    assert small.response["evidenced_range"] == [2.0, 2.2] and small.response["evidence"]["list_price_changes"] == 1
    assert "too few to train a model of its own" in small.reason
    assert flat.response is not None and not flat.priced and not flat.verdict["passed"]  # a response that may rise
    assert few.response is None and "no price response" in few.reason and few.lines == 3
    assert none.response is None and none.lines == 0


def test_the_horizon_keeps_later_lines_out(catalogue_tables):
    lines, table, ladder = catalogue_tables
    (small,) = pooled_prices(lines, ["SMALL"], table, ladder, Guardrails(), BAND, 0.2, 9, 2,
                             horizon=datetime(2011, 1, 3) + timedelta(weeks=3, days=1))
    assert small.lines == 4 and small.response["evidenced_range"] == [2.2, 2.2]


def pooled_record(passed: bool) -> Record:
    recommendation = {"current_price": 2.0, "recommended_price": 1.8, "decision": "move", "gain": 3.1,
                      "gain_interval": [1.0, 6.0], "objective": "revenue", "elasticity": -1.35,
                      "elasticity_level": "catalogue", "reasons": ["guardrail: a move is limited to 10% per cycle"]}
    verdict = {"status": "passed" if passed else "failed", "passed": passed,
               "reasons": [] if passed else ["price response not clearly falling"]}
    return Record(stockcode="SMALL", decision=POOLED, model_version="0123456789ab", model_path=None, model_md5=None,
                  decided_at="2026-12-04T00:00:00+00:00", git={}, lineage={},
                  metrics={"lines": 10, "test": {"weekly_response": {"recommendation": recommendation}}},
                  verdicts={"price_response": verdict}, reasons=["10 lines, too few to train a model of its own"])


def test_a_pooled_price_is_one_to_act_on_when_its_response_passed_and_held_when_not():
    priced = report_row("SMALL", pooled_record(True))
    assert priced["act_on"] is True and priced["decision"] == POOLED and priced["model_version"] is None
    assert (priced["recommended_price"], priced["expected_weekly_gain"]) == (1.8, 3.1)
    assert priced["reasons"].startswith("10 lines, too few to train a model of its own; guardrail")
    held = report_row("SMALL", pooled_record(False))
    assert held["act_on"] is False and held["recommended_price"] == 2.0
    assert held["reasons"].startswith("held: the catalogue's price response did not pass its verdict; "
                                      "price response not clearly falling")


def test_the_summary_counts_decisions_moves_and_reasons_for_holding():
    rows = report_rows([("SMALL", pooled_record(True), ""), ("FLAT", pooled_record(False), ""),
                        ("21931", None, "21931: data drift detected (is_registered)")])
    text = catalogue_summary_markdown(rows, "run-1")
    assert "# Catalogue run run-1" in text and "3 products, 1 with a price to act on." in text
    assert "| pooled | 2 | 1 |" in text and "| none | 1 | 0 |" in text
    assert "0 up, 1 down, 0 held at the current price; median -10.0 %" in text
    assert "| held: the catalogue's price response did not pass its verdict | 1 |" in text
    assert "| 21931: data drift detected (is_registered) | 1 |" in text
