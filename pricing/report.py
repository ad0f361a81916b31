"""The price report of a run: one row per product with what a merchandiser acts on — the
decision, the model, the current and the recommended list price, the expected weekly gain with
its interval, and the reasons.

A recommendation is reported as one to act on only where the decision approved the model that
made it, or where the product, too small to train, was priced from the catalogue's response
(``pooled``) and that response passed its verdict; any other decision holds the current price,
and its row says why (the decision's own reasons), so nothing a gate stopped reads as a price to set.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import polars as pl

from pricing.registry import APPROVED, POOLED, Record

COLUMNS = ("stockcode", "decision", "model_version", "current_price", "recommended_price", "move_pct",
           "expected_weekly_gain", "gain_low", "gain_high", "objective", "elasticity", "elasticity_level",
           "act_on", "reasons")


def _recommendation(record: Record) -> Mapping[str, Any] | None:
    weekly = (record.metrics.get("test") or {}).get("weekly_response")
    chosen = weekly.get("recommendation") if isinstance(weekly, Mapping) else None
    return chosen if isinstance(chosen, Mapping) and "recommended_price" in chosen else None


def _to_act_on(record: Record) -> bool:
    if record.decision == APPROVED:
        return True
    verdict = record.verdicts.get("price_response")
    return record.decision == POOLED and isinstance(verdict, Mapping) and verdict.get("passed") is True


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
        if _to_act_on(record):
            row.update(recommended_price=recommended, move_pct=100.0 * (recommended / current - 1.0),
                       expected_weekly_gain=chosen.get("gain"), gain_low=low, gain_high=high, act_on=True)
            reasons = [*(reasons if record.decision == POOLED else []), *(chosen.get("reasons") or [])]
        else:  # a model no gate let through: its price is not one to set
            row.update(recommended_price=current, move_pct=0.0)
            if record.decision == POOLED:
                verdict = record.verdicts.get("price_response") or {}
                reasons = ["held: the catalogue's price response did not pass its verdict",
                           *(verdict.get("reasons") or []), *reasons]
            else:
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


def _first_reason(row: Mapping[str, Any]) -> str:
    return str(row.get("reasons") or "no reason recorded").split("; ")[0]


def _edge(value: float | None) -> str:
    return "…" if value is None else f"{value:g}"


def catalogue_summary_markdown(rows: list[Mapping[str, Any]], run_key: str, held_reasons: int = 10) -> str:
    """A catalogue run's report in brief: decisions by kind, the price moves to act on, and the
    commonest reasons products were held."""
    kinds: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        kinds.setdefault(str(row["decision"]), []).append(row)
    acted = [row for row in rows if row["act_on"]]
    lines = [f"# Catalogue run {run_key}", "", f"{len(rows)} products, {len(acted)} with a price to act on.", "",
             "| decision | products | to act on |", "|---|---|---|"]
    lines += [f"| {kind} | {len(group)} | {sum(bool(r['act_on']) for r in group)} |"
              for kind, group in sorted(kinds.items(), key=lambda item: -len(item[1]))]
    moves = sorted(float(row["move_pct"]) for row in acted if row.get("move_pct") is not None)
    if moves:
        up, down = sum(m > 0 for m in moves), sum(m < 0 for m in moves)
        lines += ["", "## Price moves to act on", "",
                  f"{up} up, {down} down, {len(moves) - up - down} held at the current price; "
                  f"median {moves[len(moves) // 2]:+.1f} %, from {moves[0]:+.1f} % to {moves[-1]:+.1f} %."]
    for name, bins in report_histograms(rows).items():
        if any(item["products"] for item in bins):
            what = "moves to act on (%)" if name == "moves" else "elasticities"
            lines += ["", f"## Distribution of {what}", "", "| from | to | products |", "|---|---|---|"]
            lines += [f"| {_edge(item['low'])} | {_edge(item['high'])} | {item['products']} |" for item in bins]
    held: dict[str, int] = {}
    for row in rows:
        if not row["act_on"]:
            held[_first_reason(row)] = held.get(_first_reason(row), 0) + 1
    if held:
        lines += ["", "## Held, and why (first reason)", "", "| reason | products |", "|---|---|"]
        lines += [f"| {reason} | {n} |" for reason, n in sorted(held.items(), key=lambda item: -item[1])[:held_reasons]]
    return "\n".join(lines)


MOVE_EDGES = (-10.0, -7.5, -5.0, -2.5, -0.01, 0.01, 2.5, 5.0, 7.5, 10.0)  # % moves; (−0.01, 0.01]: held
ELASTICITY_EDGES = (-4.0, -3.0, -2.0, -1.5, -1.0, -0.5, 0.0)


def histogram(values: Iterable[float], edges: Iterable[float]) -> list[dict[str, Any]]:
    """Counts of ``values`` per bin ``(low, high]`` of ``edges``, with a first bin for all below
    its first edge and a last one for all above its last (``None`` for the open end)."""
    bounds = [None, *edges, None]
    bins = [{"low": low, "high": high, "products": 0} for low, high in zip(bounds, bounds[1:])]
    for value in values:
        for item in bins:
            if (item["low"] is None or value > item["low"]) and (item["high"] is None or value <= item["high"]):
                item["products"] += 1
                break
    return bins


def report_histograms(rows: Iterable[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The distribution of the moves to act on (%), and of the elasticities of every priced row."""
    rows = list(rows)
    return {
        "moves": histogram((float(r["move_pct"]) for r in rows if r["act_on"] and r["move_pct"] is not None),
                           MOVE_EDGES),
        "elasticities": histogram((float(r["elasticity"]) for r in rows if r["elasticity"] is not None),
                                  ELASTICITY_EDGES),
    }


SCHEMA = {
    "stockcode": pl.Utf8, "decision": pl.Utf8, "model_version": pl.Utf8, "current_price": pl.Float64,
    "recommended_price": pl.Float64, "move_pct": pl.Float64, "expected_weekly_gain": pl.Float64,
    "gain_low": pl.Float64, "gain_high": pl.Float64, "objective": pl.Utf8, "elasticity": pl.Float64,
    "elasticity_level": pl.Utf8, "act_on": pl.Boolean, "reasons": pl.Utf8,
}
assert tuple(SCHEMA) == COLUMNS, "the report table's schema must list COLUMNS in order"


def report_frame(rows: Iterable[Mapping[str, Any]]) -> pl.DataFrame:
    """The report's rows as the table a catalogue run stores (typed, COLUMNS in order)."""
    return pl.DataFrame([{name: row.get(name) for name in COLUMNS} for row in rows], schema=SCHEMA, orient="row")
