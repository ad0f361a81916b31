"""The price report of a run: one row per product with what a merchandiser acts on — the
decision, the model, the current and the recommended list price, the expected weekly gain with
its interval, and the reasons.

A recommendation is reported as one to act on only where the decision approved the model that
made it; any other decision holds the current price, and its row says why (the decision's own
reasons), so nothing a gate stopped reads as a price to set.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pricing.registry import APPROVED, Record

COLUMNS = ("stockcode", "decision", "model_version", "current_price", "recommended_price", "move_pct",
           "expected_weekly_gain", "gain_low", "gain_high", "objective", "elasticity", "elasticity_level",
           "act_on", "reasons")


def _recommendation(record: Record) -> Mapping[str, Any] | None:
    weekly = (record.metrics.get("test") or {}).get("weekly_response")
    chosen = weekly.get("recommendation") if isinstance(weekly, Mapping) else None
    return chosen if isinstance(chosen, Mapping) and "recommended_price" in chosen else None


def report_row(stockcode: str, record: Record | None, outcome_reason: str = "") -> dict[str, Any]:
    """The report's row of ``stockcode``: its decision in this run (``record``; None when the
    run recorded none, e.g. a failed run, whose ``outcome_reason`` then says why)."""
    row: dict[str, Any] = dict.fromkeys(COLUMNS)
    row.update(stockcode=stockcode, act_on=False)
    if record is None:
        row.update(decision="none", reasons=outcome_reason or "no decision recorded")
        return row
    row.update(decision=record.decision, model_version=record.model_version if record.model_path else None)
    chosen = _recommendation(record)
    reasons = list(record.reasons)
    if chosen is not None:
        current, recommended = float(chosen["current_price"]), float(chosen["recommended_price"])
        low, high = chosen.get("gain_interval") or (None, None)
        row.update(current_price=current, objective=chosen.get("objective"),
                   elasticity=chosen.get("elasticity"), elasticity_level=chosen.get("elasticity_level"))
        if record.decision == APPROVED:
            row.update(recommended_price=recommended, move_pct=100.0 * (recommended / current - 1.0),
                       expected_weekly_gain=chosen.get("gain"), gain_low=low, gain_high=high, act_on=True)
            reasons = list(chosen.get("reasons") or [])
        else:  # a model no gate let through: its price is not one to set
            row.update(recommended_price=current, move_pct=0.0)
            reasons = [f"held: the model was not approved ({record.decision})", *reasons]
    elif record.decision == APPROVED:
        reasons = ["approved, but its record holds no weekly price response (made before the catalogue stage "
                   "existed): no price to report", *reasons]
    else:
        reasons = reasons or [f"no model: {record.decision}"]
    row["reasons"] = "; ".join(reasons)
    return row


def report_rows(decided: Iterable[tuple[str, Record | None, str]]) -> list[dict[str, Any]]:
    """Rows for (stockcode, its decision in the run or None, why none) in the order given."""
    return [report_row(stockcode, record, why) for stockcode, record, why in decided]
