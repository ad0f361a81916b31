"""The catalogue's price response: how a product's weekly units answer its list price, learned
across every product of the catalogue and sharpened per product only as far as its own data earns.

Pure (polars and numpy): no storage, no orchestration.

Why across the catalogue: a product changes its list price once or twice a year, if at all, so
its own history confounds price with time (a before/after step). Pooled over products, with
product effects (each product's own level) and week effects (the season and the shop's
traffic, shared by every product), the slope of log weekly units on log list price is
identified by the many products that changed price in different weeks.

- **Weekly panel**: one row per product and week with sales: units, purchase lines, and the
  list price in effect that week (the modal unit price among registered buyers; a week without
  registered lines keeps the last known one; weeks before a product's first registered sale have
  no known list price and are left out).
- **Levels**: ``catalogue`` (one two-way fixed-effects slope over every product, interval from
  standard errors clustered by product), ``group`` (a slope per price band, bands from the
  quantiles of the products' median list price, each shrunk toward the catalogue slope by its
  own precision), ``product`` (the product's own within-product slope shrunk toward its group's
  by empirical Bayes). ``pooling`` says how fine a level may go; the backtest says which earns it.
- **Lasting changes**: a week whose list price differs from the week before by at least
  ``min_change`` and then holds for ``hold_weeks`` sale weeks.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from statistics import NormalDist
from typing import Any

import numpy as np
import polars as pl

from pricing.as_of import horizon
from pricing.errors import DataValidationError, from_section

PRODUCT = "stockcode"
WEEK = "week"
LEVELS = ("catalogue", "group", "product")

# The columns of the sales lines the panel is built from.
PANEL_COLUMNS = [PRODUCT, "invoice_date", "quantity", "unit_price", "is_registered"]
TABLE_COLUMNS = [
    PRODUCT, "elasticity", "elasticity_low", "elasticity_high", "level", "group", "own_changes",
    "own_weeks", "weight_own", "current_price", "level_units", "level_units_low", "level_units_high",
    "level_weeks", "take_ratio", "last_week",
]


@dataclass(frozen=True)
class ResponseConfig:
    """The ``price_response_catalogue`` section of ``params.yaml``."""

    pooling: str = "catalogue"
    price_bands: int = 4
    min_weeks: int = 8
    min_change: float = 0.02
    hold_weeks: int = 4
    level_weeks: int = 8
    interval_level: float = 0.9

    @classmethod
    def from_params(cls, section: dict[str, Any] | None) -> ResponseConfig:
        config = from_section(cls, section, "price_response_catalogue")
        if config.pooling not in LEVELS:
            raise DataValidationError(
                f"price_response_catalogue.pooling must be one of {', '.join(LEVELS)}, got {config.pooling!r}")
        if not 0 < float(config.interval_level) < 1:
            raise DataValidationError(
                f"price_response_catalogue.interval_level must be in (0, 1), got {config.interval_level}")
        for name in ("price_bands", "min_weeks", "hold_weeks", "level_weeks"):
            if int(getattr(config, name)) < 1:
                raise DataValidationError(f"price_response_catalogue.{name} must be >= 1, got {getattr(config, name)}")
        if not 0 < float(config.min_change) < 1:
            raise DataValidationError(f"price_response_catalogue.min_change must be in (0, 1), got {config.min_change}")
        return config

    @property
    def z(self) -> float:
        """The two-sided normal quantile of ``interval_level``."""
        return NormalDist().inv_cdf(0.5 + float(self.interval_level) / 2)


def weekly_panel(lines: pl.DataFrame, horizon: datetime | None = None) -> pl.DataFrame:
    """Per product and complete week with sales, before ``horizon``: units, lines, takings, list
    price, and the week's shop-wide units. Columns: stockcode, week, units, lines, takings,
    list_price, shop_units."""
    missing = [c for c in PANEL_COLUMNS if c not in lines.columns]
    if missing:
        raise DataValidationError(f"the sales lines lack column(s) {', '.join(missing)}")
    frame = lines.select(PANEL_COLUMNS)
    if horizon is not None:
        frame = frame.filter(pl.col("invoice_date") < horizon)
    if frame.height == 0:
        raise DataValidationError("no sales lines before as_of to build a weekly panel from")
    frame = frame.with_columns(pl.col("invoice_date").dt.truncate("1w").alias(WEEK))
    # A week counts once it is complete: its Monday plus seven days lies before the data's end.
    end = horizon if horizon is not None else frame["invoice_date"].max()
    frame = frame.filter(pl.col(WEEK) + pl.duration(days=7) <= end)
    modal = modal_list_price(frame)
    volume = frame.group_by(PRODUCT, WEEK).agg(
        pl.col("quantity").sum().cast(pl.Float64).alias("units"), pl.len().alias("lines"),
        (pl.col("quantity") * pl.col("unit_price")).sum().cast(pl.Float64).alias("takings"))
    shop = frame.group_by(WEEK).agg(pl.col("quantity").sum().cast(pl.Float64).alias("shop_units"))
    return (
        volume.join(modal, on=[PRODUCT, WEEK], how="left")
        .sort(PRODUCT, WEEK)
        .with_columns(pl.col("list_price").forward_fill().over(PRODUCT))
        .drop_nulls("list_price")
        .filter(pl.col("units") > 0)
        .join(shop, on=WEEK, how="left")
        .sort(PRODUCT, WEEK)
    )


def modal_list_price(frame: pl.DataFrame) -> pl.DataFrame:
    """The list price in effect per product and week (columns stockcode, week, list_price): the
    most common unit price among the week's registered-buyer lines (ties: the higher price).
    Weeks without a registered line are absent; callers carry the last known price forward."""
    return (
        frame.filter(pl.col("is_registered") == 1)
        .group_by(PRODUCT, WEEK, "unit_price").len()
        .sort([PRODUCT, WEEK, "len", "unit_price"], descending=[False, False, True, True])
        .unique([PRODUCT, WEEK], keep="first", maintain_order=True)
        .select(PRODUCT, WEEK, pl.col("unit_price").alias("list_price"))
    )


def price_moves(panel: pl.DataFrame, min_change: float) -> pl.DataFrame:
    """Every sale week where a product's list price moved by >= ``min_change`` from the sale week
    before: its old and new price, ``held`` (sale weeks in a row at the new price, this one
    included) and ``in_effect`` (the new price is still the product's last one in the panel)."""
    step = math.log1p(float(min_change))
    rows = []
    for (stockcode,), weeks in panel.sort(PRODUCT, WEEK).group_by(PRODUCT, maintain_order=True):
        prices = weeks["list_price"].to_numpy()
        dates = weeks[WEEK].to_list()
        for i in range(1, len(prices)):
            if abs(math.log(prices[i] / prices[i - 1])) >= step - 1e-12:
                run = int(np.argmax(np.append(prices[i:] != prices[i], True)))
                rows.append({PRODUCT: stockcode, WEEK: dates[i], "index": i, "old_price": float(prices[i - 1]),
                             "new_price": float(prices[i]), "held": run, "in_effect": i + run == len(prices)})
    schema = {PRODUCT: panel.schema[PRODUCT], WEEK: panel.schema[WEEK], "index": pl.Int64, "old_price": pl.Float64,
              "new_price": pl.Float64, "held": pl.Int64, "in_effect": pl.Boolean}
    return pl.DataFrame(rows, schema=schema)


def lasting_changes(panel: pl.DataFrame, min_change: float, hold_weeks: int, min_before: int = 1) -> pl.DataFrame:
    """Every week where a product's list price moved by >= ``min_change`` from the sale week
    before and then held ``hold_weeks`` sale weeks, with >= ``min_before`` sale weeks before it."""
    return (price_moves(panel, min_change)
            .filter((pl.col("held") >= int(hold_weeks)) & (pl.col("index") >= max(int(min_before), 1)))
            .select(PRODUCT, WEEK, "index", "old_price", "new_price"))


def _demean(values: np.ndarray, groups: Sequence[np.ndarray], tol: float = 1e-10, max_iter: int = 500) -> np.ndarray:
    """``values`` (n, k) with every group effect projected out (alternating projections)."""
    out = np.array(values, dtype=np.float64, copy=True)
    counts = [np.bincount(g).astype(np.float64) for g in groups]
    for _ in range(max_iter):
        largest = 0.0
        for g, n in zip(groups, counts):
            means = np.stack([np.bincount(g, weights=out[:, j], minlength=len(n)) for j in range(out.shape[1])], axis=1)
            shift = means / np.maximum(n, 1.0)[:, None]
            out -= shift[g]
            largest = max(largest, float(np.abs(shift).max(initial=0.0)))
        if largest < tol:
            break
    return out


def _cluster_ols(x: np.ndarray, y: np.ndarray, clusters: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """OLS slopes of demeaned ``y`` on demeaned ``x`` (n, k) and their cluster-robust covariance."""
    xtx = x.T @ x
    inverse = np.linalg.pinv(xtx)
    beta = inverse @ (x.T @ y)
    scores = x * (y - x @ beta)[:, None]
    n_clusters = int(clusters.max()) + 1
    summed = np.stack([np.bincount(clusters, weights=scores[:, j], minlength=n_clusters) for j in range(x.shape[1])], axis=1)
    meat = summed.T @ summed
    correction = n_clusters / max(n_clusters - 1, 1)
    return beta, correction * inverse @ meat @ inverse


@dataclass
class CatalogueResponse:
    """The estimate: the per-product table and its summary."""

    table: pl.DataFrame
    summary: dict[str, Any]
    # The list prices the shop uses and how many product-weeks held each (the price ladder).
    price_points: pl.DataFrame


def estimate(panel: pl.DataFrame, config: ResponseConfig) -> CatalogueResponse:
    """Every product's elasticity, interval and level from the weekly ``panel``, the same bytes on
    any number of cores: a BLAS product split over threads sums in another order, and the last
    digits moved with the machine (1 core vs 2 changed the catalogue stage's outputs, and so every
    product's inference metrics and dvc.lock). One BLAS thread costs nothing measurable here."""
    # Imported here: the price API imports this module and does not ship threadpoolctl.
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return _estimate(panel, config)


def _estimate(panel: pl.DataFrame, config: ResponseConfig) -> CatalogueResponse:
    eligible = panel.filter(pl.len().over(PRODUCT) >= int(config.min_weeks))
    if eligible.height == 0:
        raise DataValidationError(f"no product has {config.min_weeks} weeks with sales before as_of")
    medians = eligible.group_by(PRODUCT).agg(pl.col("list_price").median().alias("median_price"))
    edges = np.quantile(medians["median_price"].to_numpy(), np.linspace(0, 1, int(config.price_bands) + 1)[1:-1])
    bands = medians.with_columns(
        pl.Series("group", np.searchsorted(edges, medians["median_price"].to_numpy(), side="right"), dtype=pl.Int64))
    frame = eligible.join(bands.select(PRODUCT, "group"), on=PRODUCT)
    # indices into the sorted product list, like every per-product array below
    products, product_index = np.unique(frame[PRODUCT].to_numpy(), return_inverse=True)
    _, week_index = np.unique(frame[WEEK].to_numpy(), return_inverse=True)
    group = frame["group"].to_numpy()
    n_groups = int(config.price_bands)
    log_units = np.log(frame["units"].to_numpy())
    log_price = np.log(frame["list_price"].to_numpy())

    columns = np.column_stack([log_units, log_price, *(log_price * (group == g) for g in range(n_groups))])
    demeaned = _demean(columns, [product_index, week_index])
    y, x_all, x_groups = demeaned[:, 0], demeaned[:, 1:2], demeaned[:, 2:]
    theta, cov = _cluster_ols(x_all, y, product_index)
    theta, theta_se = float(theta[0]), float(math.sqrt(max(cov[0, 0], 0.0)))

    # Group slopes, each shrunk toward the catalogue slope by its own precision (a group whose
    # products barely changed price stays at the catalogue value).
    informative = np.array([np.square(x_groups[:, g]).sum() > 1e-9 for g in range(n_groups)])
    beta_g = np.full(n_groups, theta)
    var_g = np.full(n_groups, np.inf)
    if informative.any():
        b, c = _cluster_ols(x_groups[:, informative], y, product_index)
        beta_g[informative], var_g[informative] = b, np.maximum(np.diag(c), 1e-12)
    spread = float(np.var(beta_g[informative])) if informative.sum() > 1 else 0.0
    tau_g = max(spread - float(np.mean(var_g[informative])) if informative.any() else 0.0, 0.0)
    group_weight = np.where(np.isfinite(var_g), tau_g / (tau_g + var_g), 0.0)
    group_value = group_weight * beta_g + (1 - group_weight) * theta
    group_se = np.sqrt(group_weight * np.where(np.isfinite(var_g), var_g, 0.0) + (1 - group_weight) * theta_se ** 2)

    # Each product's own within slope (week effects removed, the catalogue's), shrunk toward its group.
    residual_price = demeaned[:, 1]
    sxx = np.bincount(product_index, weights=residual_price ** 2, minlength=len(products))
    sxy = np.bincount(product_index, weights=residual_price * y, minlength=len(products))
    # Only a product whose own list price moved has a slope of its own: after the week effects
    # are removed a constant price still varies a little (minus the week's mean), which says nothing.
    own_moves = frame.group_by(PRODUCT).agg(pl.col("list_price").n_unique() > 1).sort(PRODUCT)["list_price"].to_numpy()
    sxx = np.where(own_moves, sxx, 0.0)
    own = np.where(sxx > 1e-9, sxy / np.maximum(sxx, 1e-12), np.nan)
    fitted = np.where(sxx[product_index] > 1e-9, own[product_index] * residual_price, 0.0)
    dof = np.maximum(np.bincount(product_index, minlength=len(products)) - 2, 1)
    sigma2 = np.bincount(product_index, weights=(y - fitted) ** 2, minlength=len(products)) / dof
    own_var = np.where(sxx > 1e-9, sigma2 / np.maximum(sxx, 1e-12), np.inf)
    product_group = bands.sort(PRODUCT)["group"].to_numpy()
    identified = np.isfinite(own_var)
    if identified.sum() > 1:
        deviations = own[identified] - group_value[product_group[identified]]
        tau_p = max(float(np.mean(deviations ** 2) - np.mean(own_var[identified])), 0.0)
    else:
        tau_p = 0.0
    weight_own = np.where(identified, tau_p / (tau_p + own_var), 0.0)

    changes = lasting_changes(eligible, config.min_change, config.hold_weeks)
    change_counts = dict(changes.group_by(PRODUCT).len().iter_rows())
    weeks_per_product = dict(eligible.group_by(PRODUCT).len().iter_rows())
    levels = _recent_levels(eligible, config.level_weeks, config.z)

    rows = []
    for i, stockcode in enumerate(products.tolist()):
        g = int(product_group[i])
        if config.pooling == "catalogue":
            value, se, level, weight = theta, theta_se, "catalogue", 0.0
        else:
            level_here = "group" if group_weight[g] > 0 else "catalogue"
            value, se, level, weight = float(group_value[g]), float(group_se[g]), level_here, 0.0
            if config.pooling == "product" and weight_own[i] > 0:
                w = float(weight_own[i])
                value = w * float(own[i]) + (1 - w) * value
                # posterior variance of the shrunk slope (w × own variance) plus the prior's share
                se = math.sqrt(w * float(own_var[i]) + (1 - w) ** 2 * se ** 2)
                level, weight = ("product" if w >= 0.5 else level), w
        rows.append({PRODUCT: stockcode, "elasticity": value, "elasticity_low": value - config.z * se,
                     "elasticity_high": value + config.z * se, "level": level, "group": g,
                     "own_changes": int(change_counts.get(stockcode, 0)),
                     "own_weeks": int(weeks_per_product[stockcode]), "weight_own": weight, **levels[stockcode]})
    table = pl.DataFrame(rows).select(TABLE_COLUMNS).sort(PRODUCT)
    elasticities = table["elasticity"].to_numpy()
    summary = {
        "as_of_last_week": str(eligible[WEEK].max())[:10],
        "pooling": config.pooling,
        "interval_level": float(config.interval_level),
        "catalogue_elasticity": theta,
        "catalogue_interval": [theta - config.z * theta_se, theta + config.z * theta_se],
        "catalogue_se_clustered": theta_se,
        "group_elasticities": [
            {"group": g, "median_price_below": float(edges[g]) if g < len(edges) else None,
             "estimate": float(beta_g[g]) if informative[g] else None, "served": float(group_value[g]),
             "weight_own": float(group_weight[g])} for g in range(n_groups)],
        "products": int(table.height),
        "product_weeks": int(eligible.height),
        "lasting_changes": int(changes.height),
        "products_with_changes": int(changes[PRODUCT].n_unique()) if changes.height else 0,
        "levels": dict(table.group_by("level").len().sort("level").iter_rows()),
        "elasticity_quantiles": {q: float(np.quantile(elasticities, float(q))) for q in ("0.1", "0.5", "0.9")},
        "products_with_interval_below_zero": int((table["elasticity_high"] < 0).sum()),
    }
    points = (eligible.group_by(pl.col("list_price").round(2).alias("price")).agg(pl.len().alias("product_weeks"))
              .sort("price"))
    return CatalogueResponse(table=table, summary=summary, price_points=points)


def _recent_levels(panel: pl.DataFrame, level_weeks: int, z: float) -> dict[str, dict[str, Any]]:
    """Each product's recent units per sale week at its current list price, with an interval:
    the mean of its last ``level_weeks`` sale weeks at that price."""
    out: dict[str, dict[str, Any]] = {}
    for (stockcode,), weeks in panel.sort(PRODUCT, WEEK).group_by(PRODUCT, maintain_order=True):
        current = float(weeks["list_price"][-1])
        recent = weeks.filter(pl.col("list_price") == current).tail(int(level_weeks))
        units = recent["units"].to_numpy()
        # what the lines paid over what they would have at the list price (quantity breaks, segments)
        take_ratio = float(recent["takings"].sum() / (recent["units"].sum() * current))
        mean = float(units.mean())
        # on the log scale: weekly units are skewed, and the interval must stay above zero
        spread = float(np.std(np.log(units), ddof=1)) if len(units) > 1 else 1.0
        half = z * spread / math.sqrt(len(units))
        out[stockcode] = {"current_price": current, "level_units": mean, "level_units_low": mean * math.exp(-half),
                          "level_units_high": mean * math.exp(half), "level_weeks": int(len(units)),
                          "take_ratio": take_ratio,
                          "last_week": str(weeks[WEEK][-1])[:10]}
    return out


def estimate_from_lines(lines: pl.DataFrame, config: ResponseConfig, as_of: date | str | None = None) -> CatalogueResponse:
    """The catalogue stage's whole job: the panel of the lines before ``as_of``, and the estimate."""
    response = estimate(weekly_panel(lines, horizon(as_of)), config)
    response.summary["as_of"] = None if as_of in (None, "") else str(as_of)
    return response


def product_response(table: pl.DataFrame, stockcode: str) -> dict[str, Any]:
    """The table row of ``stockcode`` as a plain dict (what a product's stages and records keep)."""
    row = table.filter(pl.col(PRODUCT) == stockcode)
    if row.height == 0:
        raise DataValidationError(
            f"{stockcode}: no catalogue price response (fewer weeks with sales than min_weeks before as_of)")
    return row.row(0, named=True)


@dataclass(frozen=True)
class WeeklyDemand:
    """Expected weekly units of a product at a list price: its level × the price response."""

    price: float
    units: float
    units_low: float
    units_high: float
    extrapolated: bool


def weekly_demand(response: dict[str, Any], prices: Sequence[float], evidenced: tuple[float, float] | None = None
                  ) -> list[WeeklyDemand]:
    """Weekly units at each price: ``level × (price / current)^elasticity``; the interval joins the
    level's and the elasticity's (the latter grows with the distance from the current price). A
    price outside ``evidenced`` (the product's own list-price range) is marked extrapolated."""
    current = float(response["current_price"])
    low, high = evidenced if evidenced else (current, current)
    out = []
    for price in prices:
        price = float(price)
        if not (price > 0 and math.isfinite(price)):
            raise DataValidationError(f"prices must be positive finite numbers, got {price}")
        step = math.log(price / current)
        units = response["level_units"] * math.exp(response["elasticity"] * step)
        bounds = [response["elasticity_low"] * step, response["elasticity_high"] * step]
        out.append(WeeklyDemand(
            price=price, units=units,
            units_low=response["level_units_low"] * math.exp(min(bounds)),
            units_high=response["level_units_high"] * math.exp(max(bounds)),
            extrapolated=not (low - 1e-9 <= price <= high + 1e-9)))
    return out


def weekly_curve(response: dict[str, Any], evidenced: tuple[float, float] | None, span: float, n_points: int,
                 also: Sequence[float] = ()) -> list[dict[str, Any]]:
    """The weekly curve a product serves: from ``current × (1 − span)`` to ``current × (1 + span)``
    and across its own evidenced list prices, ``n_points`` prices plus the current one and ``also``."""
    current = float(response["current_price"])
    low, high = current * (1 - span), current * (1 + span)
    if evidenced:
        low, high = min(low, evidenced[0]), max(high, evidenced[1])
    prices = sorted({*np.round(np.linspace(low, high, int(n_points)), 4).tolist(), current, *map(float, also)})
    return [{"price": d.price, "weekly_units": d.units, "weekly_units_low": d.units_low,
             "weekly_units_high": d.units_high, "weekly_revenue": d.price * d.units, "extrapolated": d.extrapolated}
            for d in weekly_demand(response, prices, evidenced)]


def judge_weekly_response(response: dict[str, Any], band: Sequence[float]) -> dict[str, Any]:
    """The price-response verdict of a product's served weekly response: its elasticity's interval
    must lie below zero (a curve that may be flat or rising says nothing a price can act on) and
    inside ``band``; where the elasticity came from (product, group, catalogue) is recorded."""
    low, high = (float(v) for v in band)
    if low > high:
        raise DataValidationError(f"elasticity_band must be [low, high], got {list(band)}")
    interval = [float(response["elasticity_low"]), float(response["elasticity_high"])]
    reasons: list[str] = []
    if not interval[1] < 0:
        reasons.append(f"price response not clearly falling: the elasticity's interval [{interval[0]:.2f}, "
                       f"{interval[1]:.2f}] ({response['level']} level) does not lie below zero")
    if interval[0] < low or interval[1] > high:
        reasons.append(f"elasticity interval [{interval[0]:.2f}, {interval[1]:.2f}] ({response['level']} level) "
                       f"is not inside the band [{low}, {high}]")
    return {
        "status": "failed" if reasons else "passed",
        "passed": not reasons,
        "reasons": reasons,
        "checks": {"elasticity_interval": {"passed": not reasons, "interval": interval, "band": [low, high]}},
        "elasticity": float(response["elasticity"]),
        "elasticity_interval": interval,
        "level": response["level"],
        "own_changes": int(response["own_changes"]),
        "band": [low, high],
    }
