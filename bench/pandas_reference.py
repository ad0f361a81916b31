"""A plain pandas implementation of the ETL stage: the baseline ``bench/etl.py`` measures against.

Same load, same cleaning rules in the same order with the same ``params.yaml`` values, same
leak-free features as ``pricing/`` (polars) — written independently, with the usual pandas
idioms (groupby / cumsum / shift / merge, ``rolling("30D", closed="left")``) and no attempt
at optimisation. It imports nothing from ``pricing``, so it doubles as a cross-check of the
polars features (``tests/test_pandas_reference.py``).

Run it like the stage, writing its outputs elsewhere:

    python -m bench.pandas_reference --out /tmp/pandas_etl

Feature semantics (as ``pricing/features.py`` and ``tests/test_features.py`` define them):
a line sees only lines dated strictly before it; lines sharing a timestamp never see each
other. History is aggregated per (key, timestamp) and merged back.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

PRODUCT = "stockcode"
CUSTOMER = "customer_id"
WHEN = "invoice_date"
UK = "United Kingdom"
UNKNOWN_DESCRIPTION = "UNKNOWN"

# Canonical name <- accepted source names (UCI, then Online Retail II).
COLUMNS = {
    "invoice_no": ("InvoiceNo", "Invoice"),
    "stockcode": ("StockCode",),
    "description": ("Description",),
    "quantity": ("Quantity",),
    "invoice_date": ("InvoiceDate",),
    "unit_price": ("UnitPrice", "Price"),
    "customer_id": ("CustomerID", "Customer ID"),
    "country": ("Country",),
}

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


# -- load ---------------------------------------------------------------------------------
def load_raw(path: Path | str) -> pd.DataFrame:
    """Read the bundled parquet and give its columns the canonical names."""
    raw = pd.read_parquet(path)
    renames = {}
    for canonical, aliases in COLUMNS.items():
        found = [name for name in (canonical, *aliases) if name in raw.columns]
        if not found:
            raise ValueError(f"missing column: {aliases[0]}")
        renames[found[0]] = canonical
    return raw.rename(columns=renames)[list(COLUMNS)]


def profile_raw(raw: pd.DataFrame) -> dict[str, int]:
    return {
        "lines": len(raw),
        "invoices": int(raw["invoice_no"].nunique()),
        "cancellation_lines": int(raw["invoice_no"].str.startswith("C").sum()),
        "stock_codes": int(raw["stockcode"].nunique()),
        "customers": int(raw["customer_id"].nunique()),
        "exact_duplicate_lines": int(raw.duplicated().sum()),
        "total_quantity": int(raw["quantity"].sum()),
    }


# -- clean --------------------------------------------------------------------------------
def clean(raw: pd.DataFrame, non_product_codes, non_product_prefixes) -> tuple[pd.DataFrame, dict]:
    """The cleaning rules, in the stage's order, each counting the lines it drops."""
    report = {"lines_in": len(raw), "removed": {}}
    df = raw.drop_duplicates()
    report["removed"]["exact_duplicates"] = len(raw) - len(df)

    def drop(rule: str, keep: pd.Series) -> pd.DataFrame:
        kept = df[keep]
        report["removed"][rule] = len(df) - len(kept)
        return kept

    df = drop("cancellations", ~df["invoice_no"].str.startswith("C"))
    df = drop("non_positive_quantity", df["quantity"] > 0)
    df = drop("non_positive_price", df["unit_price"] > 0)

    normalised = df["stockcode"].str.strip().str.upper()
    report["stockcodes_normalised"] = int((normalised != df["stockcode"]).sum())
    df = df.assign(stockcode=normalised)
    codes = [code.upper() for code in non_product_codes]
    is_non_product = df["stockcode"].isin(codes)
    for prefix in non_product_prefixes:
        is_non_product = is_non_product | df["stockcode"].str.startswith(prefix.upper())
    df = drop("non_product_codes", ~is_non_product)
    if len(df) == 0:
        raise ValueError("no sales lines left after cleaning")

    # Missing description: the product's most common one (ties: alphabetical first), else UNKNOWN.
    missing = int(df["description"].isna().sum())
    if missing:
        counts = df.groupby([PRODUCT, "description"]).size().reset_index(name="n")
        modes = (
            counts.sort_values([PRODUCT, "n", "description"], ascending=[True, False, True])
            .drop_duplicates(PRODUCT)[[PRODUCT, "description"]]
            .rename(columns={"description": "_mode"})
        )
        df = df.merge(modes, on=PRODUCT, how="left")
        df["description"] = df["description"].fillna(df["_mode"]).fillna(UNKNOWN_DESCRIPTION)
        df = df.drop(columns="_mode")
    report["descriptions_imputed"] = missing
    report["lines_kept"] = len(df)
    return df.reset_index(drop=True), report


# -- features -----------------------------------------------------------------------------
def _before(groups: pd.DataFrame, key: list[str], column: str) -> pd.Series:
    """Running total of ``column`` over the earlier rows of the same ``key`` (NaN for the first)."""
    return groups.groupby(key)[column].cumsum().groupby([groups[k] for k in key]).shift(1)


def _week_prices(df: pd.DataFrame, weeks: int) -> pd.DataFrame:
    """Per (product, week): list price = modal registered price of the product's last `weeks`
    weeks with registered sales before it (ties: the higher price); reference = mean list price
    of the earlier weeks; price-to-list ratios of earlier lines by segment."""
    registered = df[df["is_registered"] == 1]
    counts = registered.groupby([PRODUCT, "_week", "unit_price"]).size().rename("_n").reset_index()
    sale_weeks = counts[[PRODUCT, "_week"]].drop_duplicates().sort_values([PRODUCT, "_week"])
    sale_weeks["_rank"] = sale_weeks.groupby(PRODUCT).cumcount()
    counts = counts.merge(sale_weeks, on=[PRODUCT, "_week"])
    spread = pd.concat([counts.assign(_rank=counts["_rank"] + lag) for lag in range(weeks)])
    window = spread.groupby([PRODUCT, "_rank", "unit_price"])["_n"].sum().reset_index()
    modal = (
        window.sort_values([PRODUCT, "_rank", "_n", "unit_price"], ascending=[True, True, False, False])
        .drop_duplicates([PRODUCT, "_rank"])
        .rename(columns={"unit_price": "_list_price"})[[PRODUCT, "_rank", "_list_price"]]
    )
    weekly = df[[PRODUCT, "_week"]].drop_duplicates().sort_values("_week")
    weekly = pd.merge_asof(
        weekly, sale_weeks.sort_values("_week"), on="_week", by=PRODUCT, direction="backward",
        allow_exact_matches=False,
    )
    weekly = (
        weekly.merge(modal, on=[PRODUCT, "_rank"], how="left").drop(columns="_rank")
        .sort_values([PRODUCT, "_week"]).reset_index(drop=True)
    )

    lines = df[[PRODUCT, "_week", "unit_price", "is_registered"]].merge(
        weekly[[PRODUCT, "_week", "_list_price"]], on=[PRODUCT, "_week"], how="left"
    )
    lines["_ratio"] = lines["unit_price"] / lines["_list_price"]
    for segment, flag in (("reg", 1), ("unreg", 0)):
        part = lines[lines["is_registered"] == flag].groupby([PRODUCT, "_week"])["_ratio"].agg(["sum", "count"])
        part.columns = [f"_{segment}_sum", f"_{segment}_n"]
        weekly = weekly.merge(part.reset_index(), on=[PRODUCT, "_week"], how="left")
    weekly["_known"] = weekly["_list_price"].notna().astype("int64")
    weekly["_lp0"] = weekly["_list_price"].fillna(0.0)

    def earlier_mean(total: str, count: str) -> pd.Series:
        by = weekly.groupby(PRODUCT)
        n = by[count].transform(lambda c: c.fillna(0).cumsum().shift(1))
        t = by[total].transform(lambda c: c.fillna(0).cumsum().shift(1))
        return (t / n).where(n > 0)

    weekly["_reference_price"] = earlier_mean("_lp0", "_known")
    weekly["_registered_ratio"] = earlier_mean("_reg_sum", "_reg_n")
    weekly["_unregistered_ratio"] = earlier_mean("_unreg_sum", "_unreg_n")
    return weekly[[PRODUCT, "_week", "_list_price", "_reference_price", "_registered_ratio", "_unregistered_ratio"]]


def add_features(
    sales: pd.DataFrame, recent_window_days: int, days_since_cap: float, list_price_weeks: int = 2
) -> pd.DataFrame:
    df = sales.sort_values([WHEN, "invoice_no", PRODUCT], kind="stable").reset_index(drop=True)
    when = df[WHEN]

    # The line itself.
    df["year"] = when.dt.year.astype("int32")
    df["month"] = when.dt.month.astype("int8")
    df["year_month"] = df["year"] * 100 + df["month"].astype("int32")
    df["day_of_week"] = when.dt.dayofweek.astype("int8")  # 0 = Monday
    df["hour"] = when.dt.hour.astype("int8")
    df["is_registered"] = df[CUSTOMER].notna().astype("int8")
    df["is_uk"] = (df["country"] == UK).astype("int8")
    df["_month_start"] = when.dt.to_period("M").dt.start_time
    df["_week"] = when.dt.to_period("W-SUN").dt.start_time  # the Monday of the line's week

    # The product's list price and discount schedule, from earlier weeks.
    week_prices = _week_prices(df, list_price_weeks)

    # The product before this timestamp: mean quantity, trailing window.
    product = (
        df.groupby([PRODUCT, WHEN])
        .agg(_qty=("quantity", "sum"), _lines=("quantity", "size"))
        .reset_index()
    )
    product["_prior_avg_qty"] = _before(product, [PRODUCT], "_qty") / _before(product, [PRODUCT], "_lines")
    recent = (
        product.set_index(WHEN)
        .groupby(PRODUCT)[["_qty", "_lines"]]
        .rolling(f"{recent_window_days}D", closed="left")  # [t - window, t): before this timestamp
        .sum()
        .rename(columns={"_qty": "_recent_qty", "_lines": "_recent_lines"})
        .reset_index()
    )
    product = product.merge(recent, on=[PRODUCT, WHEN], how="left")

    # The product's mean quantity per line in the previous calendar month.
    last_month = df.groupby([PRODUCT, "_month_start"])["quantity"].mean().rename("_last_month_avg_qty").reset_index()
    last_month["_month_start"] = last_month["_month_start"] + pd.DateOffset(months=1)

    # Every product before this timestamp: the last fallback for quantity levels.
    market = df.groupby(WHEN).agg(_qty=("quantity", "sum"), _lines=("quantity", "size")).reset_index()
    market["_market_avg_qty"] = market["_qty"].cumsum().shift(1) / market["_lines"].cumsum().shift(1)

    # This customer's earlier purchases of this product, and of anything.
    registered = df[df[CUSTOMER].notna()]
    cp_key = [CUSTOMER, PRODUCT]
    cp = (
        registered.groupby([*cp_key, WHEN])
        .agg(_qty=("quantity", "sum"), _lines=("quantity", "size"))
        .reset_index()
    )
    by_cp = cp.groupby(cp_key)
    cp["_cp_lines"] = _before(cp, cp_key, "_lines")
    cp["_cp_last_qty"] = by_cp["_qty"].shift(1)  # quantity bought at the previous timestamp
    cp["_cp_mean_qty"] = _before(cp, cp_key, "_qty") / cp["_cp_lines"]
    cp["_cp_days_since"] = by_cp[WHEN].diff().dt.total_seconds() / 86_400

    customer = (
        registered.assign(_spend=registered["quantity"] * registered["unit_price"])
        .groupby([CUSTOMER, WHEN])
        .agg(_invoices=("invoice_no", "nunique"), _lines=("invoice_no", "size"), _spend=("_spend", "sum"))
        .reset_index()
    )
    customer["_c_invoices"] = _before(customer, [CUSTOMER], "_invoices")
    customer["_c_lines"] = _before(customer, [CUSTOMER], "_lines")
    customer["_c_spend"] = _before(customer, [CUSTOMER], "_spend")

    product_cols = ["_prior_avg_qty", "_recent_qty", "_recent_lines"]
    cp_cols = ["_cp_lines", "_cp_last_qty", "_cp_mean_qty", "_cp_days_since"]
    customer_cols = ["_c_invoices", "_c_lines", "_c_spend"]
    df = (
        df.merge(week_prices, on=[PRODUCT, "_week"], how="left")
        .merge(product[[PRODUCT, WHEN, *product_cols]], on=[PRODUCT, WHEN], how="left")
        .merge(last_month, on=[PRODUCT, "_month_start"], how="left")
        .merge(market[[WHEN, "_market_avg_qty"]], on=WHEN, how="left")
        .merge(cp[[*cp_key, WHEN, *cp_cols]], on=[*cp_key, WHEN], how="left")
        .merge(customer[[CUSTOMER, WHEN, *customer_cols]], on=[CUSTOMER, WHEN], how="left")
    )

    # Derived features. Before any earlier registered week, the list price is the price of the
    # product's first sale (the lines of that sale: their own price).
    first_when = df.groupby(PRODUCT)[WHEN].transform("min")
    first_price = df.groupby(PRODUCT)["unit_price"].transform("first")  # df is in line order
    fallback = df["unit_price"].where(df[WHEN] == first_when, first_price)
    list_price = df["_list_price"].fillna(fallback)
    reference = df["_reference_price"].fillna(list_price)
    quantity_fallback = df["_prior_avg_qty"].fillna(df["_market_avg_qty"]).fillna(0.0)
    recent_lines = df["_recent_lines"].fillna(0)
    recent_qty = (df["_recent_qty"] / recent_lines).where(recent_lines > 0)
    df["list_price"] = list_price
    df["product_reference_price"] = reference
    df["list_price_to_reference"] = list_price / reference
    df["registered_price_ratio"] = df["_registered_ratio"].fillna(1.0)
    df["unregistered_price_ratio"] = df["_unregistered_ratio"].fillna(1.0)
    df["product_avg_quantity_last_month"] = df["_last_month_avg_qty"].fillna(quantity_fallback)
    df["product_recent_quantity"] = recent_qty.fillna(quantity_fallback)
    df["product_recent_lines"] = recent_lines.astype("int64")
    df["customer_product_lines_before"] = df["_cp_lines"].fillna(0).astype("int64")
    df["customer_product_last_quantity"] = df["_cp_last_qty"].fillna(0).astype("float64")
    df["customer_product_mean_quantity"] = df["_cp_mean_qty"].fillna(0.0)
    df["customer_product_days_since"] = df["_cp_days_since"].fillna(days_since_cap).clip(upper=days_since_cap)
    df["customer_invoices_before"] = df["_c_invoices"].fillna(0).astype("int64")
    df["customer_lines_before"] = df["_c_lines"].fillna(0).astype("int64")
    df["customer_spend_before"] = df["_c_spend"].fillna(0.0)
    return df[[*sales.columns, *FEATURE_COLUMNS]]


# -- the stage ----------------------------------------------------------------------------
def run_etl(raw: pd.DataFrame, etl_params: dict) -> tuple[pd.DataFrame, dict]:
    cleaned, report = clean(raw, etl_params["non_product_codes"], etl_params["non_product_prefixes"])
    processed = add_features(
        cleaned, etl_params["recent_window_days"], etl_params["days_since_cap"], etl_params["list_price_weeks"]
    )
    metrics = {
        "raw": profile_raw(raw),
        "lines_in": report["lines_in"],
        "removed": report["removed"],
        "removed_total": sum(report["removed"].values()),
        "lines_kept": report["lines_kept"],
        "descriptions_imputed": report["descriptions_imputed"],
        "stockcodes_normalised": report["stockcodes_normalised"],
        "stock_codes_kept": int(processed[PRODUCT].nunique()),
    }
    return processed, metrics


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("."), help="project root holding params.yaml")
    parser.add_argument("--out", type=Path, required=True, help="folder for original_df, processed_df, etl.json")
    parser.add_argument("--timings", action="store_true", help="print in-process step times to stderr")
    args = parser.parse_args(argv)
    steps: dict[str, float] = {}
    start = time.perf_counter()

    params = yaml.safe_load((args.root / "params.yaml").read_text())
    raw = load_raw(args.root / params["data"]["input_path"])
    steps["load"] = time.perf_counter() - start
    processed, metrics = run_etl(raw, params["etl"])
    steps["etl"] = time.perf_counter() - start - sum(steps.values())
    args.out.mkdir(parents=True, exist_ok=True)
    raw.to_parquet(args.out / "original_df.parquet", index=False)
    processed.to_parquet(args.out / "processed_df.parquet", index=False)
    metrics = {"input_path": params["data"]["input_path"], **metrics}
    (args.out / "etl.json").write_text(json.dumps(metrics, indent=2) + "\n")
    steps["write"] = time.perf_counter() - start - sum(steps.values())
    print(f"pandas reference: {metrics['lines_in']} lines in, {metrics['lines_kept']} kept -> {args.out}")
    if args.timings:
        print("  ".join(f"{name} {seconds:.2f}s" for name, seconds in steps.items()), file=sys.stderr)


if __name__ == "__main__":
    main()
