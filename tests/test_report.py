"""The price report's rows: a price to act on only where the model that made it was approved."""
from __future__ import annotations

import pytest

from pricing.registry import APPROVED, INSUFFICIENT_DATA, REJECTED, Record
from pricing.report import COLUMNS, report_row, report_rows

RECOMMENDATION = {
    "current_price": 2.95, "recommended_price": 2.89, "decision": "move", "gain": 17.3, "gain_interval": [9.1, 30.9],
    "objective": "revenue", "elasticity": -1.35, "elasticity_level": "catalogue",
    "reasons": ["guardrail: a move is limited to 10% per cycle", "interval: the gain's interval is clear of zero"],
}


def record(decision: str, recommendation: dict | None = RECOMMENDATION, reasons: list[str] | None = None) -> Record:
    test = {"weekly_response": {"recommendation": recommendation, "response": {}}} if recommendation else {}
    return Record(stockcode="85123A", decision=decision, model_version="9742b022d347",
                  model_path="models/production/dfn_best_85123A.pth" if recommendation else None, model_md5=None,
                  decided_at="2026-12-04T00:00:00+00:00", git={}, lineage={}, metrics={"test": test}, verdicts={},
                  reasons=reasons or [])


def test_an_approved_model_gives_a_price_to_act_on_with_its_gain_and_reasons():
    row = report_row("85123A", record(APPROVED))
    assert tuple(row) == COLUMNS
    assert row["act_on"] is True and row["decision"] == APPROVED and row["model_version"] == "9742b022d347"
    assert (row["current_price"], row["recommended_price"]) == (2.95, 2.89)
    assert row["move_pct"] == pytest.approx(100 * (2.89 / 2.95 - 1))
    assert (row["expected_weekly_gain"], row["gain_low"], row["gain_high"]) == (17.3, 9.1, 30.9)
    assert row["reasons"] == "; ".join(RECOMMENDATION["reasons"])


def test_a_model_no_gate_let_through_holds_the_current_price_and_says_why():
    row = report_row("85123A", record(REJECTED, reasons=["fairness: the gap is beyond ±0.25"]))
    assert row["act_on"] is False and row["decision"] == REJECTED
    assert (row["current_price"], row["recommended_price"], row["move_pct"]) == (2.95, 2.95, 0.0)
    assert row["expected_weekly_gain"] is None and row["gain_low"] is None
    assert row["reasons"] == "held: the model was not approved (rejected); fairness: the gap is beyond ±0.25"


def test_no_model_and_no_decision_are_rows_too():
    thin, stopped = report_rows([("21932", record(INSUFFICIENT_DATA, None, ["too few lines to judge drift"]), ""),
                                 ("21931", None, "21931: data drift detected (is_registered)")])
    assert (thin["decision"], thin["model_version"], thin["recommended_price"], thin["act_on"]) == (
        INSUFFICIENT_DATA, None, None, False)
    assert thin["reasons"] == "too few lines to judge drift"
    assert (stopped["stockcode"], stopped["decision"], stopped["act_on"]) == ("21931", "none", False)
    assert stopped["reasons"] == "21931: data drift detected (is_registered)"


def test_an_approved_record_without_a_weekly_response_reports_no_price():
    row = report_row("85123A", record(APPROVED, None))
    assert (row["decision"], row["act_on"], row["recommended_price"]) == (APPROVED, False, None)
    assert row["reasons"].startswith("approved, but its record holds no weekly price response")
