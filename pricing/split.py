"""Time-ordered train / validation / test split of one product's lines.

Validation and test take the newest lines (``min(fraction * n, max_rows)`` each), train the
rest. A cut never falls inside an invoice: the lines of one invoice were priced and bought
together, so one of them in train and another in validation would leak. A cut that would
split an invoice moves back to the invoice's first line, so the whole invoice goes to the
later split.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import polars as pl

from pricing.errors import DataValidationError

SPLIT_ORDER = ("train", "val", "test")
TIME_COLUMN = "invoice_date"
INVOICE_COLUMN = "invoice_no"


@dataclass(frozen=True)
class SplitSizes:
    train: int
    val: int
    test: int


@dataclass(frozen=True)
class SplitConfig:
    """The ``split`` section of ``params.yaml``."""

    val_fraction: float
    val_max_rows: int
    test_fraction: float
    test_max_rows: int

    @classmethod
    def from_params(cls, section: Mapping[str, Any] | None) -> SplitConfig:
        if not isinstance(section, Mapping):
            raise DataValidationError("params.yaml: the 'split' section is missing or not a mapping")
        try:
            return cls(
                val_fraction=float(section["val_fraction"]),
                val_max_rows=int(section["val_max_rows"]),
                test_fraction=float(section["test_fraction"]),
                test_max_rows=int(section["test_max_rows"]),
            )
        except KeyError as error:
            raise DataValidationError(f"params.yaml: split key {error.args[0]!r} is missing") from None

    def sizes(self, n_rows: int) -> SplitSizes:
        return split_sizes(n_rows, self.val_fraction, self.val_max_rows, self.test_fraction, self.test_max_rows)


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
    """Oldest lines train, the next validate, the newest test, each invoice whole.

    Lines are ordered by their invoice's first moment (an invoice's lines stay together; ties
    between invoices by invoice number), then by their own time. ``sizes`` are targets: a
    cut inside an invoice moves back to that invoice's first line.
    """
    n_rows = lines.height
    if n_rows != sizes.train + sizes.val + sizes.test:
        raise ValueError(f"split sizes {sizes} do not add up to {n_rows} lines")
    ordered = (
        lines.with_columns(pl.col(TIME_COLUMN).min().over(INVOICE_COLUMN).alias("_invoice_start"))
        .sort(["_invoice_start", INVOICE_COLUMN, TIME_COLUMN], maintain_order=True)
        .drop("_invoice_start")
    )
    invoices = ordered.get_column(INVOICE_COLUMN)
    # Position of each line's invoice's first line (lines of an invoice are contiguous now).
    first_line = (
        ordered.with_row_index("_line")
        .select(pl.col("_line").min().over(INVOICE_COLUMN))
        .get_column("_line")
    )

    def cut(target: int) -> int:
        return n_rows if target >= n_rows else int(first_line[target])

    val_start = cut(sizes.train)
    test_start = max(cut(sizes.train + sizes.val), val_start)
    parts = {
        "train": ordered.slice(0, val_start),
        "val": ordered.slice(val_start, test_start - val_start),
        "test": ordered.slice(test_start, n_rows - test_start),
    }
    empty = [name for name, part in parts.items() if part.height == 0]
    if empty:
        raise DataValidationError(
            f"{n_rows} lines in {invoices.n_unique()} invoices cannot be split by whole invoices into "
            f"train/val/test of about {sizes.train}/{sizes.val}/{sizes.test} lines: {', '.join(empty)} would be empty"
        )
    return parts


def split_product_lines(lines: pl.DataFrame, config: SplitConfig) -> dict[str, pl.DataFrame]:
    """The split ``preprocess`` trains on; the drift check reads its train window from here too."""
    return time_ordered_split(lines, config.sizes(lines.height))
