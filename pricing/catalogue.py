"""The products of the data set: which stockcodes exist, and how many lines each has."""
from __future__ import annotations

from collections.abc import Collection, Iterable
from pathlib import Path

import polars as pl

from pricing.features import PRODUCT
from pricing.stockcodes import normalise_stockcode, normalise_stockcodes


def product_line_counts(processed_df: Path) -> dict[str, int]:
    """Lines per stockcode in the ETL's processed data."""
    counts = pl.scan_parquet(processed_df).group_by(PRODUCT).len().collect()
    return dict(zip(counts.get_column(PRODUCT).to_list(), counts.get_column("len").to_list()))


def raw_stockcodes(raw: pl.DataFrame) -> set[str]:
    """Every stockcode of the raw data, as the ETL spells them (before it drops any line)."""
    return set(raw.select(normalise_stockcodes(pl.col(PRODUCT)).unique()).to_series().to_list())


def unknown_stockcodes(requested: Iterable[str], known: Collection[str]) -> list[str]:
    """The requested stockcodes not among ``known`` (as the user spelled them)."""
    return [code for code in requested if normalise_stockcode(code) not in known]
