"""Test scaffolding: a weekly panel (the catalogue stage's input shape) with known elasticities,
and the catalogue stage's outputs written from it for a project's per-product stages."""
from __future__ import annotations

import math
from datetime import datetime, timedelta

import numpy as np
import polars as pl

from pricing.layout import Layout
from pricing.price_response import ResponseConfig, estimate

MONDAY = datetime(2011, 1, 3)


def generated_panel(seed: int = 0, n_products: int = 120, n_weeks: int = 40, by_band: dict[int, float] | None = None,
                    fixed: tuple[str, ...] = (), first_code: str = "P000", first_price: float | None = None
                    ) -> pl.DataFrame:
    """Weekly units = product level x season x price^elasticity x noise. Products in the cheap half
    of the catalogue answer with ``by_band[0]``, the dear half with ``by_band[1]``; most products
    change price once or twice at random weeks; those in ``fixed`` never do. The first product is
    called ``first_code``; with ``first_price`` it holds that list price throughout."""
    rng = np.random.default_rng(seed)
    by_band = by_band or {0: -1.5, 1: -1.5}
    season = 0.4 * np.sin(np.arange(n_weeks) / 6.0)
    rows = []
    for i in range(n_products):
        code = first_code if i == 0 else f"P{i:03d}"
        band = 0 if i < n_products // 2 else 1
        base_price = float(rng.uniform(0.5, 1.5) if band == 0 else rng.uniform(4.0, 8.0))
        if i == 0 and first_price is not None:
            base_price = first_price
        prices = np.full(n_weeks, base_price)
        if code not in fixed and not (i == 0 and first_price is not None):
            for week in sorted(rng.choice(np.arange(6, n_weeks - 6), size=rng.integers(1, 3), replace=False)):
                prices[week:] = prices[week - 1] * float(rng.choice([0.8, 0.9, 1.1, 1.2]))
        level = rng.uniform(3.0, 6.0)
        for week in range(n_weeks):
            log_units = level + season[week] + by_band[band] * math.log(prices[week]) + rng.normal(0, 0.15)
            rows.append({"stockcode": code, "week": MONDAY + timedelta(weeks=week), "units": math.exp(log_units),
                         "lines": 10, "takings": 0.95 * math.exp(log_units) * prices[week],
                         "list_price": round(float(prices[week]), 4), "shop_units": 1e5})
    return pl.DataFrame(rows)


def write_catalogue_outputs(layout: Layout, stockcode: str, current_price: float, seed: int = 0) -> None:
    """The files `estimate_price_response` writes, estimated from a generated panel in which
    ``stockcode`` is one of the products, at ``current_price``."""
    panel = generated_panel(seed=seed, first_code=stockcode, first_price=current_price)
    response = estimate(panel, ResponseConfig())
    layout.price_response_table.parent.mkdir(parents=True, exist_ok=True)
    response.table.write_parquet(layout.price_response_table)
    response.price_points.write_parquet(layout.price_points)
