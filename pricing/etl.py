"""Cleaning the raw sales lines: what is dropped, by which rule, and how many.

Rules run in a fixed order and each counts the lines it removes, so the ETL metrics add up:
``lines_in - sum(removed) == lines_kept``.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import polars as pl

from pricing.errors import DataValidationError
from pricing.features import add_features

UNKNOWN_DESCRIPTION = "UNKNOWN"


@dataclass(frozen=True)
class CleaningRules:
    non_product_codes: Sequence[str] = ()
    non_product_prefixes: Sequence[str] = ()


@dataclass
class CleaningReport:
    lines_in: int
    removed: dict[str, int] = field(default_factory=dict)
    lines_kept: int = 0
    descriptions_imputed: int = 0
    stockcodes_normalised: int = 0

    def as_dict(self) -> dict:
        return {
            "lines_in": self.lines_in,
            "removed": dict(self.removed),
            "removed_total": sum(self.removed.values()),
            "lines_kept": self.lines_kept,
            "descriptions_imputed": self.descriptions_imputed,
            "stockcodes_normalised": self.stockcodes_normalised,
        }


def profile_raw(raw: pl.DataFrame, exact_duplicate_lines: int | None = None) -> dict[str, int]:
    """Counts of the raw data, as the data set's README states them.

    ``exact_duplicate_lines``: the count if already known (``clean`` makes it), saving a
    second ``unique()`` over every column of the raw frame.
    """
    if exact_duplicate_lines is None:
        exact_duplicate_lines = raw.height - raw.unique().height
    return {
        "lines": raw.height,
        "invoices": raw.get_column("invoice_no").n_unique(),
        "cancellation_lines": int(raw.get_column("invoice_no").str.starts_with("C").sum()),
        "stock_codes": raw.get_column("stockcode").n_unique(),
        "customers": raw.get_column("customer_id").drop_nulls().n_unique(),
        "exact_duplicate_lines": exact_duplicate_lines,
        "total_quantity": int(raw.get_column("quantity").sum()),
    }


def normalise_stockcodes(codes: pl.Expr) -> pl.Expr:
    """Stock codes compare case- and space-insensitively (`85123a` is `85123A`)."""
    return codes.str.strip_chars().str.to_uppercase()


def clean(raw: pl.DataFrame, rules: CleaningRules) -> tuple[pl.DataFrame, CleaningReport]:
    """Drop the lines that are not sales of a product at a real price; impute descriptions."""
    report = CleaningReport(lines_in=raw.height)
    frame = raw

    def drop(rule: str, keep: pl.Expr) -> None:
        nonlocal frame
        before = frame.height
        frame = frame.filter(keep)
        report.removed[rule] = before - frame.height

    before_dedup = frame.height
    frame = frame.unique(maintain_order=True)
    report.removed["exact_duplicates"] = before_dedup - frame.height
    drop("cancellations", ~pl.col("invoice_no").str.starts_with("C"))
    drop("non_positive_quantity", pl.col("quantity") > 0)
    drop("non_positive_price", pl.col("unit_price") > 0)

    normalised = normalise_stockcodes(pl.col("stockcode"))
    report.stockcodes_normalised = int(frame.select((normalised != pl.col("stockcode")).sum()).item())
    frame = frame.with_columns(normalised.alias("stockcode"))
    codes = [code.upper() for code in rules.non_product_codes]
    prefixes = [prefix.upper() for prefix in rules.non_product_prefixes]
    is_non_product = pl.col("stockcode").is_in(codes)
    for prefix in prefixes:
        is_non_product = is_non_product | pl.col("stockcode").str.starts_with(prefix)
    drop("non_product_codes", ~is_non_product)

    if frame.height == 0:
        raise DataValidationError("no sales lines left after cleaning: every line was dropped")
    frame, report.descriptions_imputed = impute_descriptions(frame)
    report.lines_kept = frame.height
    return frame, report


def impute_descriptions(frame: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """Fill a missing description with the product's most common one (else UNKNOWN)."""
    missing = frame.get_column("description").null_count()
    if missing == 0:
        return frame, 0
    modes = (
        frame.drop_nulls("description")
        .group_by("stockcode", "description")
        .len()
        .sort(["stockcode", "len", "description"], descending=[False, True, False])
        .unique("stockcode", keep="first", maintain_order=True)
        .select("stockcode", pl.col("description").alias("_mode"))
    )
    filled = (
        frame.join(modes, on="stockcode", how="left", maintain_order="left")
        .with_columns(pl.coalesce("description", "_mode", pl.lit(UNKNOWN_DESCRIPTION)).alias("description"))
        .drop("_mode")
    )
    return filled, missing


def run_etl(
    raw: pl.DataFrame,
    rules: CleaningRules,
    recent_window_days: int,
    days_since_cap: float,
    list_price_weeks: int = 2,
) -> tuple[pl.DataFrame, dict]:
    """Clean ``raw`` and engineer the leak-free features; return the frame and its metrics."""
    cleaned, report = clean(raw, rules)
    processed = add_features(
        cleaned, recent_window_days=recent_window_days, days_since_cap=days_since_cap,
        list_price_weeks=list_price_weeks,
    )
    metrics = {
        "raw": profile_raw(raw, report.removed["exact_duplicates"]),
        **report.as_dict(),
        "stock_codes_kept": processed.get_column("stockcode").n_unique(),
    }
    return processed, metrics
