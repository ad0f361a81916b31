"""Time-ordered train / validation / test split of one product's lines."""
from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from pricing.errors import DataValidationError

SPLIT_ORDER = ("train", "val", "test")
TIME_COLUMN = "invoice_date"


@dataclass(frozen=True)
class SplitSizes:
    train: int
    val: int
    test: int


def split_sizes(
    n_rows: int, val_fraction: float, val_max_rows: int, test_fraction: float, test_max_rows: int
) -> SplitSizes:
    """Validation and test take ``min(fraction * n, max_rows)`` lines each; train the rest."""
    for name, fraction in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0 < fraction < 1:
            raise DataValidationError(f"split.{name} must be between 0 and 1, got {fraction}")
    if val_fraction + test_fraction >= 1:
        raise DataValidationError("split.val_fraction + split.test_fraction must leave lines for training")
    n_val = min(int(n_rows * val_fraction), val_max_rows)
    n_test = min(int(n_rows * test_fraction), test_max_rows)
    n_train = n_rows - n_val - n_test
    if min(n_train, n_val, n_test) < 1:
        raise DataValidationError(
            f"{n_rows} lines are too few to split into train/val/test ({n_train}/{n_val}/{n_test})"
        )
    return SplitSizes(n_train, n_val, n_test)


def time_ordered_split(lines: pl.DataFrame, sizes: SplitSizes) -> dict[str, pl.DataFrame]:
    """Oldest lines train, the next validate, the newest test; ties keep their input order."""
    ordered = lines.sort(TIME_COLUMN, maintain_order=True)
    if ordered.height != sizes.train + sizes.val + sizes.test:
        raise ValueError(f"split sizes {sizes} do not add up to {ordered.height} lines")
    return {
        "train": ordered.slice(0, sizes.train),
        "val": ordered.slice(sizes.train, sizes.val),
        "test": ordered.slice(sizes.train + sizes.val, sizes.test),
    }
