"""Naive demand predictors every model has to beat, fitted on the train split only.

Each reads only what the model may read (the features, never the line's own unit price:
this retailer sets a line's price from its quantity, so a "median quantity at this line
price" baseline reads the target back out of the price):

- ``train_median``: the median train quantity for every row.
- ``segment_median``: the median train quantity of the row's segment (``is_registered``).
- ``list_price_median``: the median train quantity of lines at the same list price (matched
  to the penny; an unseen price takes the nearest train price, the lower one on a tie).
- ``customer_history``: the customer's mean quantity of this product so far, else the
  segment median.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pricing.errors import DataValidationError
from pricing.evaluation import regression_metrics

SEGMENT = "is_registered"


def _check(features: pd.DataFrame, quantity, columns: tuple[str, ...] = ()) -> np.ndarray:
    q = np.asarray(quantity, dtype=np.float64).reshape(-1)
    if len(q) == 0:
        raise DataValidationError("a baseline needs at least one train row")
    if len(features) != len(q):
        raise DataValidationError(f"{len(features)} feature rows but {len(q)} quantities")
    _require(features, columns)
    return q


def _require(features: pd.DataFrame, columns: tuple[str, ...]) -> None:
    missing = [c for c in columns if c not in features.columns]
    if missing:
        raise DataValidationError(f"a baseline needs the feature column(s) {', '.join(missing)}")


@dataclass
class TrainMedian:
    median: float = float("nan")

    def fit(self, features: pd.DataFrame, quantity) -> "TrainMedian":
        self.median = float(np.median(_check(features, quantity)))
        return self

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        return np.full(len(features), self.median, dtype=np.float64)


@dataclass
class NearestValueMedian:
    """Median train quantity per value of ``column`` (rounded to ``decimals``); an unseen value
    takes the nearest train value's median (the lower one on a tie)."""

    column: str
    decimals: int = 2
    values: np.ndarray | None = None
    medians: np.ndarray | None = None
    fallback: float = float("nan")

    def _key(self, features: pd.DataFrame) -> np.ndarray:
        return np.round(features[self.column].to_numpy(dtype=np.float64), self.decimals)

    def fit(self, features: pd.DataFrame, quantity) -> "NearestValueMedian":
        q = _check(features, quantity, (self.column,))
        table = pd.Series(q).groupby(self._key(features)).median().sort_index()
        self.values = table.index.to_numpy(dtype=np.float64)
        self.medians = table.to_numpy(dtype=np.float64)
        self.fallback = float(np.median(q))
        return self

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        _require(features, (self.column,))
        key = self._key(features)
        if self.values is None or len(self.values) == 0:
            return np.full(len(key), self.fallback)
        right = np.clip(np.searchsorted(self.values, key, side="left"), 0, len(self.values) - 1)
        left = np.clip(right - 1, 0, len(self.values) - 1)
        # nearest train value; the lower one on a tie (or the exact match, found at `right`)
        use_left = np.abs(key - self.values[left]) <= np.abs(self.values[right] - key)
        use_left &= self.values[right] != key
        return np.where(use_left, self.medians[left], self.medians[right])


def SegmentMedian() -> NearestValueMedian:
    return NearestValueMedian(SEGMENT, decimals=0)


def ListPriceMedian() -> NearestValueMedian:
    return NearestValueMedian("list_price")


@dataclass
class CustomerHistory:
    """The customer's own mean quantity of the product so far; no history: the segment median."""

    segment: NearestValueMedian | None = None
    COLUMNS = ("customer_product_lines_before", "customer_product_mean_quantity")

    def fit(self, features: pd.DataFrame, quantity) -> "CustomerHistory":
        _check(features, quantity, self.COLUMNS)
        self.segment = SegmentMedian().fit(features, quantity)
        return self

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        _require(features, self.COLUMNS)
        known = features["customer_product_lines_before"].to_numpy() > 0
        own = features["customer_product_mean_quantity"].to_numpy(dtype=np.float64)
        return np.where(known, own, self.segment.predict(features))


BASELINES = {
    "train_median": TrainMedian,
    "segment_median": SegmentMedian,
    "list_price_median": ListPriceMedian,
    "customer_history": CustomerHistory,
}


def baseline_metrics(
    train_features: pd.DataFrame, train_quantity, eval_features: pd.DataFrame, eval_quantity
) -> dict[str, dict[str, float]]:
    """Metrics (see ``pricing.evaluation``) of each naive baseline, fitted on train, on the eval split."""
    return {
        name: regression_metrics(eval_quantity, make().fit(train_features, train_quantity).predict(eval_features))
        for name, make in BASELINES.items()
    }


def best_baseline(metrics: dict[str, dict[str, float]], key: str = "rmsle") -> tuple[str, float]:
    """The name and score of the baseline with the lowest ``key``."""
    name = min(metrics, key=lambda n: metrics[n][key])
    return name, float(metrics[name][key])


def baseline_summary(metrics: dict[str, dict[str, float]]) -> str:
    """``name rmsle, …`` for a progress line."""
    return ", ".join(f"{name} {m['rmsle']:.4f}" for name, m in metrics.items())
