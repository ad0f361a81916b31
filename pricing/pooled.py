"""A price for a product with too few lines to train a model of its own: the catalogue stage's
price response (the elasticity the whole catalogue's list-price changes show) at the product's
own recent weekly level, inside the same guardrails as a trained product's recommendation.

This is what an approved product serves too (its record's ``weekly_response`` comes from the same
table); what a pooled product lacks is the per-line demand model and the gates that judge it, so
its decision is a kind of its own (``pricing.registry.POOLED``) and the report says so.

A product the catalogue stage has no row for (fewer weeks with sales than its ``min_weeks``) gets
no price: ``PooledPrice.response`` is None and ``reason`` says why.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import polars as pl

from pricing.demand import price_evidence
from pricing.errors import DataValidationError
from pricing.features import LIST_PRICE, PRODUCT
from pricing.price_response import judge_weekly_response
from pricing.recommend import Guardrails, served_response

DATE_COLUMN = "invoice_date"


@dataclass(frozen=True)
class PooledPrice:
    stockcode: str
    lines: int
    response: dict[str, Any] | None  # what inference records as ``weekly_response``; None: no price
    verdict: dict[str, Any] | None  # the price-response verdict (elasticity interval inside the band)
    reason: str

    @property
    def priced(self) -> bool:
        return self.response is not None and bool(self.verdict and self.verdict["passed"])


def pooled_prices(lines: pl.DataFrame, stockcodes: Iterable[str], table: pl.DataFrame, price_points: pl.DataFrame,
                  rails: Guardrails, band: list[float], span: float, n_points: int, min_weeks_at_price: int,
                  horizon: datetime | None = None) -> list[PooledPrice]:
    """The pooled price of each of ``stockcodes`` from its processed ``lines`` (the ETL's, up to
    ``horizon`` when given) and the catalogue stage's ``table`` and ``price_points``."""
    wanted = list(dict.fromkeys(stockcodes))
    frame = lines.filter(pl.col(PRODUCT).is_in(wanted)).select(PRODUCT, LIST_PRICE, DATE_COLUMN)
    if horizon is not None:
        frame = frame.filter(pl.col(DATE_COLUMN) <= horizon)
    by_product = {key[0]: group for key, group in frame.group_by(PRODUCT)}
    in_table = set(table[PRODUCT].to_list())
    out = []
    for stockcode in wanted:
        own = by_product.get(stockcode)
        count = 0 if own is None else own.height
        if count == 0:
            out.append(PooledPrice(stockcode, 0, None, None, "no line of this product in the data"))
            continue
        if stockcode not in in_table:
            out.append(PooledPrice(stockcode, count, None, None,
                                   "the catalogue stage has no price response for it (fewer weeks with sales than "
                                   "price_response_catalogue.min_weeks)"))
            continue
        evidence = price_evidence(own[LIST_PRICE].to_numpy(), own[DATE_COLUMN].to_numpy(), min_weeks=min_weeks_at_price)
        try:
            response = served_response(table, price_points, stockcode, evidence.evidenced_range, rails, span, n_points)
        except DataValidationError as error:
            out.append(PooledPrice(stockcode, count, None, None, str(error)))
            continue
        response["evidence"] = evidence.as_dict()
        verdict = judge_weekly_response(response["response"], band)
        reason = (f"{count} lines, too few to train a model of its own: priced from the catalogue's price response "
                  f"({response['response']['level']} level) at its own recent weekly level")
        out.append(PooledPrice(stockcode, count, response, verdict, reason))
    return out
