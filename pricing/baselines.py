"""Naive demand predictors every model has to beat, fitted on the train split only.

- ``TrainMedian``: the median train quantity for every row.
- ``PriceMedian``: the median train quantity of lines sold at the same unit price (prices
  matched to the penny). A price never seen in train takes the median of the nearest train
  price (the lower one on a tie); with no train prices at all, the train median.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pricing.errors import DataValidationError
from pricing.evaluation import regression_metrics


def _check(quantity) -> np.ndarray:
    q = np.asarray(quantity, dtype=np.float64).reshape(-1)
    if len(q) == 0:
        raise DataValidationError("a baseline needs at least one train row")
    return q


@dataclass
class TrainMedian:
    median: float = float("nan")

    def fit(self, unit_price, quantity) -> "TrainMedian":
        self.median = float(np.median(_check(quantity)))
        return self

    def predict(self, unit_price) -> np.ndarray:
        return np.full(len(np.asarray(unit_price)), self.median, dtype=np.float64)


@dataclass
class PriceMedian:
    prices: np.ndarray | None = None  # sorted distinct train prices (rounded to the penny)
    medians: np.ndarray | None = None
    fallback: float = float("nan")

    def fit(self, unit_price, quantity) -> "PriceMedian":
        q = _check(quantity)
        price = np.round(np.asarray(unit_price, dtype=np.float64).reshape(-1), 2)
        if len(price) != len(q):
            raise DataValidationError("unit_price and quantity differ in length")
        table = pd.Series(q).groupby(price).median().sort_index()
        self.prices = table.index.to_numpy(dtype=np.float64)
        self.medians = table.to_numpy(dtype=np.float64)
        self.fallback = float(np.median(q))
        return self

    def predict(self, unit_price) -> np.ndarray:
        price = np.round(np.asarray(unit_price, dtype=np.float64).reshape(-1), 2)
        if self.prices is None or len(self.prices) == 0:
            return np.full(len(price), self.fallback)
        right = np.clip(np.searchsorted(self.prices, price, side="left"), 0, len(self.prices) - 1)
        left = np.clip(right - 1, 0, len(self.prices) - 1)
        # nearest train price; the lower one on a tie (or the exact match, found at `right`)
        use_left = np.abs(price - self.prices[left]) <= np.abs(self.prices[right] - price)
        use_left &= self.prices[right] != price
        return np.where(use_left, self.medians[left], self.medians[right])


BASELINES = {"train_median": TrainMedian, "price_median": PriceMedian}


def baseline_metrics(train_price, train_quantity, eval_price, eval_quantity) -> dict[str, dict[str, float]]:
    """Metrics (see ``pricing.evaluation``) of each naive baseline, fitted on train, on the eval split."""
    out = {}
    for name, cls in BASELINES.items():
        pred = cls().fit(train_price, train_quantity).predict(eval_price)
        out[name] = regression_metrics(eval_quantity, pred)
    return out


def best_baseline(metrics: dict[str, dict[str, float]], key: str = "rmsle") -> tuple[str, float]:
    """The name and score of the baseline with the lowest ``key``."""
    name = min(metrics, key=lambda n: metrics[n][key])
    return name, float(metrics[name][key])
