"""The products of the data set: which stockcodes exist, how many lines each has, and how a
catalogue run splits them (trained or pooled, in shards)."""
from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from pricing.errors import DataValidationError
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


@dataclass(frozen=True)
class CataloguePlan:
    """What a catalogue run does with each product of the data."""

    trained: list[str]  # at least min_product_lines lines: a lineage each, most lines first
    pooled: list[str]  # fewer lines (but some): priced from the catalogue's response, most lines first
    lines: dict[str, int]

    @property
    def products(self) -> int:
        return len(self.trained) + len(self.pooled)


def plan_catalogue(lines: Mapping[str, int], min_product_lines: int, top: int = 0, small: int = 0) -> CataloguePlan:
    """Every product with lines, split at ``min_product_lines``; ``top`` / ``small`` (0: all)
    keep only that many of each side, those with the most lines."""
    if top < 0 or small < 0:
        raise DataValidationError(f"top and small must be 0 (all) or more, got top={top}, small={small}")
    ranked = sorted((code for code, count in lines.items() if count > 0), key=lambda code: (-lines[code], code))
    trained = [code for code in ranked if lines[code] >= min_product_lines]
    pooled = [code for code in ranked if lines[code] < min_product_lines]
    return CataloguePlan(trained[:top] if top else trained, pooled[:small] if small else pooled,
                         {code: lines[code] for code in ranked})


def shards(stockcodes: Sequence[str], size: int) -> list[list[str]]:
    """``stockcodes`` cut into consecutive shards of ``size`` (the last may be smaller)."""
    if size < 1:
        raise DataValidationError(f"the shard size must be at least 1 product, got {size}")
    return [list(stockcodes[start:start + size]) for start in range(0, len(stockcodes), size)]
