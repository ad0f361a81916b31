"""Metrics against hand-computed numbers; the two naive baselines and their fallbacks."""
import math

import numpy as np
import pandas as pd
import pytest

from pricing.baselines import (
    BASELINES,
    CustomerHistory,
    ListPriceMedian,
    TrainMedian,
    baseline_metrics,
    best_baseline,
)
from pricing.errors import DataValidationError
from pricing.evaluation import quantity_from_log, regression_metrics


def test_metrics_by_hand():
    m = regression_metrics([1, 3], [1, 7])
    assert m["mae"] == pytest.approx(2.0)
    assert m["mse"] == pytest.approx(math.log(2) ** 2 / 2)  # log1p(7) − log1p(3) = ln 2
    assert m["rmsle"] == pytest.approx(math.log(2) / math.sqrt(2))
    assert m["n_rows"] == 2


def test_log_predictions_invert_with_expm1_and_clip_at_zero():
    assert quantity_from_log(np.log1p([0.0, 5.0, 12.0])) == pytest.approx([0.0, 5.0, 12.0])
    assert quantity_from_log([-0.7]) == pytest.approx([0.0])  # no negative quantities
    # exp instead of expm1 would be off by exactly one unit
    assert regression_metrics([5], quantity_from_log(np.log1p([5])))["mae"] == pytest.approx(0.0)


def test_metrics_refuse_bad_input():
    for y, p in (([], []), ([1, 2], [1]), ([-1], [1]), ([1], [np.nan])):
        with pytest.raises(DataValidationError):
            regression_metrics(y, p)


def frame(**columns):
    return pd.DataFrame(columns)


def test_train_median():
    model = TrainMedian().fit(frame(list_price=[1, 2, 3]), [1, 10, 4])
    assert model.predict(frame(list_price=[9.0, 0.5])) == pytest.approx([4.0, 4.0])


def test_list_price_median_exact_nearest_and_tie():
    price = [1.00, 1.00, 1.00, 2.00, 2.00, 4.00]
    qty = [10, 12, 30, 5, 7, 1]
    model = ListPriceMedian().fit(frame(list_price=price), qty)
    pred = model.predict(frame(list_price=[1.00, 2.004, 2.9, 3.0, 3.1, 0.2, 9.0]))
    # exact (to the penny) | nearest 2.00 | tie between 2 and 4 → lower | nearest 4 | below / above range
    assert pred == pytest.approx([12.0, 6.0, 6.0, 6.0, 1.0, 12.0, 1.0])
    assert model.fallback == pytest.approx(8.5)


def test_customer_history_falls_back_to_the_segment_median():
    train = frame(is_registered=[1, 1, 0, 0], customer_product_lines_before=[0, 2, 0, 0],
                  customer_product_mean_quantity=[0.0, 12.0, 0.0, 0.0])
    model = CustomerHistory().fit(train, [10, 20, 1, 3])
    test = frame(is_registered=[1, 0, 1], customer_product_lines_before=[3, 0, 0],
                 customer_product_mean_quantity=[7.5, 0.0, 0.0])
    assert model.predict(test) == pytest.approx([7.5, 2.0, 15.0])


def test_no_baseline_reads_the_line_price():
    train = frame(unit_price=[2.95, 2.55], list_price=[2.95, 2.95], is_registered=[1, 1],
                  customer_product_lines_before=[0, 0], customer_product_mean_quantity=[0.0, 0.0])
    for make in BASELINES.values():
        fitted = make().fit(train, [6, 32])
        moved = train.assign(unit_price=[100.0, 0.01])
        assert np.array_equal(fitted.predict(moved), fitted.predict(train))


def test_baselines_on_a_split_and_the_better_one():
    train = frame(list_price=[1, 1, 2, 2], is_registered=[1, 1, 0, 0],
                  customer_product_lines_before=[0] * 4, customer_product_mean_quantity=[0.0] * 4)
    scores = baseline_metrics(train, [10, 10, 2, 2], train.iloc[[0, 2]], [10, 2])
    assert set(scores) == set(BASELINES)
    assert scores["list_price_median"]["rmsle"] == pytest.approx(0.0)
    assert scores["train_median"]["mae"] == pytest.approx(4.0)  # median 6 → |6−10|, |6−2|
    assert best_baseline(scores)[1] == 0.0
    with pytest.raises(DataValidationError):
        TrainMedian().fit(frame(list_price=[]), [])
    with pytest.raises(DataValidationError, match="list_price"):
        ListPriceMedian().fit(frame(price=[1.0]), [1])
