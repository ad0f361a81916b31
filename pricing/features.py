"""Leak-free features of each sales line.

A line's features use only the line itself (its date, customer flags) and lines dated
strictly *before* it. Lines sharing a timestamp (one invoice) never see each other:
basket information is not known when a price is set. History is computed once per
(key, timestamp) group and joined back, so the cost is a few group-bys, not a loop.

Price: a line's own unit price is *not* a feature. This retailer sets it from the quantity
bought (quantity breaks) and from who buys (unregistered buyers pay a segment price), so it
reveals the target. What the retailer sets, and what a recommendation varies, is the
product's **list price**: the most common unit price among registered buyers in the
``list_price_weeks`` weeks with registered sales before the line's week (ties: the higher
price, the one without a quantity discount). Before the first week with a registered sale
nothing says more than the product's first registered sale: its price stands in for the rest of
that spell (the same for every line, so it reveals no line's quantity), and the lines up to
that sale take their own price. The discount schedule is the
product's, from earlier weeks: the mean ratio of a line's price to its list price among
registered buyers (quantity breaks) and among unregistered buyers (segment price).
``list_price_features`` is the one definition of the features derived from the list price;
the demand curve (``pricing/demand.py``) recomputes them with it at every price.
"""
from __future__ import annotations

import polars as pl

from pricing.errors import DataValidationError

PRODUCT = "stockcode"
CUSTOMER = "customer_id"
WHEN = "invoice_date"
WEEK = "_week"
UK = "United Kingdom"


def add_features(
    sales: pl.DataFrame, recent_window_days: int, days_since_cap: float, list_price_weeks: int = 2
) -> pl.DataFrame:
    """Return ``sales`` (cleaned lines) sorted by time, with every engineered feature added."""
    if int(list_price_weeks) < 1:
        raise DataValidationError(f"list_price_weeks must be >= 1, got {list_price_weeks}")
    frame = (
        sales.sort([WHEN, "invoice_no", PRODUCT], maintain_order=True)
        .with_row_index("_line")
        .with_columns(_line_features())
    )
    frame = (
        frame.join(_product_week_prices(frame, int(list_price_weeks)), on=[PRODUCT, WEEK], how="left")
        .join(_product_history(frame, recent_window_days), on=[PRODUCT, WHEN], how="left")
        .join(_product_last_month(frame), on=[PRODUCT, "_month_start"], how="left")
        .join(_market_history(frame), on=WHEN, how="left")
        .join(_customer_product_history(frame), on=[CUSTOMER, PRODUCT, WHEN], how="left")
        .join(_customer_history(frame), on=[CUSTOMER, WHEN], how="left")
    )
    return (
        frame.sort("_line")
        .with_columns(_derived_features(days_since_cap))
        .with_columns(list_price_features(pl.col(LIST_PRICE)))
        .select([*sales.columns, *FEATURE_COLUMNS])
    )


LIST_PRICE = "list_price"
# Features computed from the list price (and context columns that do not depend on it):
# the columns a demand curve recomputes at each price.
PRICE_DERIVED_COLUMNS = ["list_price", "list_price_to_reference"]


def price_feature_positions(feature_names: list[str]) -> list[int]:
    """Positions of the list-price features among a network's input names (the price path)."""
    positions = [i for i, name in enumerate(feature_names) if name in PRICE_DERIVED_COLUMNS]
    if not positions:
        raise DataValidationError(
            f"no list-price feature ({', '.join(PRICE_DERIVED_COLUMNS)}) among the model inputs: "
            "add them to features.numeric"
        )
    return positions


def list_price_known() -> pl.Expr:
    """Whether a line's list price is known: it comes after the product's first registered sale.
    Lines up to that sale carry their own price as ``list_price`` (nothing earlier says more), and
    their own price is set by their quantity: no model may learn from them as if it were the
    list price (``stages/preprocess.py`` leaves them out)."""
    return pl.col(WHEN) > pl.col(WHEN).filter(pl.col("is_registered") == 1).min().over(PRODUCT)


def list_price_features(list_price: pl.Expr) -> list[pl.Expr]:
    """The list-price features of a line at ``list_price``; every other column is context."""
    return [
        list_price.cast(pl.Float64).alias("list_price"),
        (list_price / pl.col("product_reference_price")).alias("list_price_to_reference"),
    ]


FEATURE_COLUMNS = [
    "year",
    "month",
    "year_month",
    "day_of_week",
    "hour",
    "is_registered",
    "is_uk",
    "list_price",
    "product_reference_price",
    "list_price_to_reference",
    "registered_price_ratio",
    "unregistered_price_ratio",
    "product_avg_quantity_last_month",
    "product_recent_quantity",
    "product_recent_lines",
    "customer_product_lines_before",
    "customer_product_last_quantity",
    "customer_product_mean_quantity",
    "customer_product_days_since",
    "customer_invoices_before",
    "customer_lines_before",
    "customer_spend_before",
]


def _line_features() -> list[pl.Expr]:
    when = pl.col(WHEN)
    return [
        when.dt.year().cast(pl.Int32).alias("year"),
        when.dt.month().cast(pl.Int8).alias("month"),
        (when.dt.year().cast(pl.Int32) * 100 + when.dt.month().cast(pl.Int32)).alias("year_month"),
        (when.dt.weekday() - 1).cast(pl.Int8).alias("day_of_week"),  # 0 = Monday
        when.dt.hour().cast(pl.Int8).alias("hour"),
        pl.col(CUSTOMER).is_not_null().cast(pl.Int8).alias("is_registered"),
        (pl.col("country") == UK).cast(pl.Int8).alias("is_uk"),
        when.dt.truncate("1mo").alias("_month_start"),
        when.dt.truncate("1w").alias(WEEK),  # Monday 00:00
    ]


def _before(column: str, over: str | list[str]) -> pl.Expr:
    """Running total of ``column`` over the earlier groups of ``over`` (null for the first)."""
    return pl.col(column).cum_sum().shift(1).over(over)


def _product_week_prices(frame: pl.DataFrame, weeks: int) -> pl.DataFrame:
    """Per (product, week with lines): the list price and discount schedule from earlier weeks.

    The list price of a week is the modal registered price over the product's last ``weeks``
    weeks *with registered sales* before it, so a quiet spell keeps the last known price.
    """
    registered = pl.col("is_registered") == 1
    counts = frame.filter(registered).group_by(PRODUCT, WEEK, "unit_price").agg(pl.len().alias("_n"))
    sale_weeks = (
        counts.select(PRODUCT, WEEK).unique().sort(PRODUCT, WEEK)
        .with_columns(pl.int_range(pl.len()).over(PRODUCT).alias("_rank"))
    )
    lags = pl.DataFrame({"_lag": list(range(weeks))}, schema={"_lag": pl.Int64})
    modal = (
        counts.join(sale_weeks, on=[PRODUCT, WEEK])
        .join(lags, how="cross")
        # a sale week's counts inform the list price after it and after each of the next weeks-1
        .with_columns((pl.col("_rank") + pl.col("_lag")).alias("_rank"))
        .group_by(PRODUCT, "_rank", "unit_price")
        .agg(pl.col("_n").sum())
        .sort([PRODUCT, "_rank", "_n", "unit_price"], descending=[False, False, True, True])
        .unique([PRODUCT, "_rank"], keep="first", maintain_order=True)
        .select(PRODUCT, "_rank", pl.col("unit_price").alias("_list_price"))
    )
    weekly = (
        frame.select(PRODUCT, WEEK).unique().sort(PRODUCT, WEEK)
        # the product's last registered sale week strictly before this week
        .join_asof(sale_weeks, on=WEEK, by=PRODUCT, strategy="backward", allow_exact_matches=False,
                   check_sortedness=False)  # sorted by (product, week) above
        .join(modal, on=[PRODUCT, "_rank"], how="left")
        .drop("_rank")
    )
    # The schedule: each earlier line's price relative to its week's list price, by segment.
    ratio = pl.col("unit_price") / pl.col("_list_price")
    schedule = (
        frame.select(PRODUCT, WEEK, "unit_price", registered.alias("_registered"))
        .join(weekly.select(PRODUCT, WEEK, "_list_price"), on=[PRODUCT, WEEK], how="left")
        .group_by(PRODUCT, WEEK)
        .agg(
            ratio.filter(pl.col("_registered")).sum().alias("_reg_sum"),
            ratio.filter(pl.col("_registered")).count().alias("_reg_n"),
            ratio.filter(~pl.col("_registered")).sum().alias("_unreg_sum"),
            ratio.filter(~pl.col("_registered")).count().alias("_unreg_n"),
        )
    )
    weekly = weekly.join(schedule, on=[PRODUCT, WEEK], how="left").sort(PRODUCT, WEEK)

    def earlier_mean(total: pl.Expr, count: pl.Expr) -> pl.Expr:
        n = count.cum_sum().shift(1).over(PRODUCT)
        return pl.when(n > 0).then(total.cum_sum().shift(1).over(PRODUCT) / n).otherwise(None)

    known = pl.col("_list_price").is_not_null()
    return weekly.select(
        PRODUCT,
        WEEK,
        "_list_price",
        earlier_mean(pl.col("_list_price").fill_null(0.0), known.cast(pl.Int64)).alias("_reference_price"),
        earlier_mean(pl.col("_reg_sum"), pl.col("_reg_n")).alias("_registered_ratio"),
        earlier_mean(pl.col("_unreg_sum"), pl.col("_unreg_n")).alias("_unregistered_ratio"),
    )


def _product_history(frame: pl.DataFrame, recent_window_days: int) -> pl.DataFrame:
    window = f"{recent_window_days}d"
    groups = (
        frame.group_by(PRODUCT, WHEN)
        .agg(
            pl.col("quantity").sum().alias("_qty"),
            pl.len().alias("_lines"),
        )
        .sort(PRODUCT, WHEN)
    )
    return groups.select(
        PRODUCT,
        WHEN,
        (_before("_qty", PRODUCT) / _before("_lines", PRODUCT)).alias("_prior_avg_qty"),
        # closed="left": the window ends just before this timestamp.
        pl.col("_qty").rolling_sum_by(WHEN, window_size=window, closed="left").over(PRODUCT).alias("_recent_qty"),
        pl.col("_lines")
        .rolling_sum_by(WHEN, window_size=window, closed="left")
        .over(PRODUCT)
        .alias("_recent_lines"),
    )


def _product_last_month(frame: pl.DataFrame) -> pl.DataFrame:
    """Mean quantity per line of the product in the calendar month before the line's month."""
    return (
        frame.group_by(PRODUCT, "_month_start")
        .agg(pl.col("quantity").mean().alias("_last_month_avg_qty"))
        .with_columns(pl.col("_month_start").dt.offset_by("1mo"))
    )


def _market_history(frame: pl.DataFrame) -> pl.DataFrame:
    """Mean quantity per line over all products before each timestamp: the last fallback."""
    groups = (
        frame.group_by(WHEN).agg(pl.col("quantity").sum().alias("_qty"), pl.len().alias("_lines")).sort(WHEN)
    )
    return groups.select(
        WHEN, (pl.col("_qty").cum_sum().shift(1) / pl.col("_lines").cum_sum().shift(1)).alias("_market_avg_qty")
    )


def _customer_product_history(frame: pl.DataFrame) -> pl.DataFrame:
    key = [CUSTOMER, PRODUCT]
    groups = (
        frame.drop_nulls(CUSTOMER)
        .group_by(*key, WHEN)
        .agg(pl.col("quantity").sum().alias("_qty"), pl.len().alias("_lines"))
        .sort(*key, WHEN)
    )
    # ~266k (customer, product) keys: `.over(key)` costs ~0.5 s per expression at that many
    # groups. Rows are sorted by key, so a key's earlier rows are the rows just above it:
    # mask each key's first row and use running totals over the whole frame instead.
    first = pl.any_horizontal([pl.col(k).ne_missing(pl.col(k).shift(1)) for k in key]).fill_null(True)

    def earlier(expr: pl.Expr) -> pl.Expr:
        return pl.when(first).then(None).otherwise(expr)

    def before(column: str) -> pl.Expr:
        above = pl.col(column).cum_sum() - pl.col(column)
        return earlier(above - pl.when(first).then(above).forward_fill())

    return groups.select(
        *key,
        WHEN,
        before("_lines").alias("_cp_lines"),
        earlier(pl.col("_qty").shift(1)).alias("_cp_last_qty"),
        (before("_qty") / before("_lines")).alias("_cp_mean_qty"),
        earlier((pl.col(WHEN) - pl.col(WHEN).shift(1)).dt.total_seconds() / 86_400).alias("_cp_days_since"),
    )


def _customer_history(frame: pl.DataFrame) -> pl.DataFrame:
    groups = (
        frame.drop_nulls(CUSTOMER)
        .group_by(CUSTOMER, WHEN)
        .agg(
            pl.col("invoice_no").n_unique().alias("_invoices"),
            pl.len().alias("_lines"),
            (pl.col("quantity") * pl.col("unit_price")).sum().alias("_spend"),
        )
        .sort(CUSTOMER, WHEN)
    )
    return groups.select(
        CUSTOMER,
        WHEN,
        _before("_invoices", CUSTOMER).alias("_c_invoices"),
        _before("_lines", CUSTOMER).alias("_c_lines"),
        _before("_spend", CUSTOMER).alias("_c_spend"),
    )


def _derived_features(days_since_cap: float) -> list[pl.Expr]:
    # Before any earlier registered week: the price of the product's first registered sale, for
    # the lines after it; lines up to it have nothing earlier and keep their own price.
    registered = pl.col("is_registered") == 1
    first_registered_price = pl.col("unit_price").filter(registered).sort_by(pl.col("_line").filter(registered)).first().over(PRODUCT)
    fallback = pl.when(list_price_known()).then(first_registered_price).otherwise(pl.col("unit_price"))
    list_price = pl.coalesce("_list_price", fallback)
    quantity_fallback = pl.coalesce("_prior_avg_qty", "_market_avg_qty", pl.lit(0.0))
    recent_lines = pl.col("_recent_lines").fill_null(0)
    recent_qty = pl.when(recent_lines > 0).then(pl.col("_recent_qty") / recent_lines).otherwise(None)
    return [
        list_price.alias(LIST_PRICE),
        pl.coalesce("_reference_price", list_price).alias("product_reference_price"),
        pl.col("_registered_ratio").fill_null(1.0).alias("registered_price_ratio"),
        pl.col("_unregistered_ratio").fill_null(1.0).alias("unregistered_price_ratio"),
        pl.coalesce("_last_month_avg_qty", quantity_fallback).alias("product_avg_quantity_last_month"),
        pl.coalesce(recent_qty, quantity_fallback).alias("product_recent_quantity"),
        recent_lines.cast(pl.Int64).alias("product_recent_lines"),
        pl.col("_cp_lines").fill_null(0).cast(pl.Int64).alias("customer_product_lines_before"),
        pl.col("_cp_last_qty").fill_null(0).cast(pl.Float64).alias("customer_product_last_quantity"),
        pl.col("_cp_mean_qty").fill_null(0.0).alias("customer_product_mean_quantity"),
        pl.col("_cp_days_since").fill_null(days_since_cap).clip(upper_bound=days_since_cap).alias(
            "customer_product_days_since"
        ),
        pl.col("_c_invoices").fill_null(0).cast(pl.Int64).alias("customer_invoices_before"),
        pl.col("_c_lines").fill_null(0).cast(pl.Int64).alias("customer_lines_before"),
        pl.col("_c_spend").fill_null(0.0).alias("customer_spend_before"),
    ]
