"""The feature spec on hand-made lines, held by the ETL (polars) and the pandas reference alike."""
import math

import pytest
from sales_factory import sale, sales

from bench import pandas_reference
from pricing.features import FEATURE_COLUMNS, PRICE_DERIVED_COLUMNS, add_features
from pricing.layout import load_params


def polars_features(frame, window=30, cap=365.0):
    return add_features(frame, recent_window_days=window, days_since_cap=cap).to_pandas()


def reference_features(frame, window=30, cap=365.0):
    lines = frame.to_pandas().astype({"customer_id": "Int64"})
    return pandas_reference.add_features(lines, recent_window_days=window, days_since_cap=cap)


@pytest.fixture(params=[polars_features, reference_features], ids=["etl", "pandas_reference"])
def featurise(request):
    return request.param


def test_list_price_is_the_modal_registered_price_of_earlier_weeks(featurise):
    # 2011-01-03 is a Monday. Week 1: the list price 2.95 twice, the quantity-break price 2.55
    # once, an unregistered buyer at 5.79; later weeks sell at tier prices only.
    out = featurise(
        sales(
            sale(invoice="1", when="2011-01-03 10:00", price=2.95, quantity=6),
            sale(invoice="2", when="2011-01-04 10:00", price=2.55, quantity=32),
            sale(invoice="3", when="2011-01-05 10:00", price=2.95, quantity=4),
            sale(invoice="4", when="2011-01-06 10:00", price=5.79, quantity=1, customer=None),
            sale(invoice="5", when="2011-01-10 10:00", price=2.55, quantity=48),
            sale(invoice="6", when="2011-01-17 10:00", price=2.55, quantity=40),
            sale(invoice="7", when="2011-01-17 11:00", price=3.10, quantity=2),
            sale(invoice="8", when="2011-02-21 10:00", price=3.10, quantity=3),
        ),
    )
    # week 1: no earlier week, the product's first sale's price (never a line's own tier price);
    # week 2: week 1's mode; week 3: weeks 1-2 give 2.95 x2 vs 2.55 x2, a tie, the higher price;
    # week 8: the last two sale weeks (2, 3): 2.55 x2 vs 3.10 x1 (a quiet month keeps the last
    # known price).
    assert out["list_price"].tolist() == [2.95, 2.95, 2.95, 2.95, 2.95, 2.95, 2.95, 2.55]
    assert out["product_reference_price"].tolist() == pytest.approx([2.95] * 8)
    assert out["list_price_to_reference"].tolist() == pytest.approx([1.0] * 7 + [2.55 / 2.95])


def test_discount_schedule_of_earlier_weeks(featurise):
    out = featurise(
        sales(
            sale(invoice="1", when="2011-01-03 10:00", price=2.0, quantity=6),
            sale(invoice="2", when="2011-01-10 10:00", price=2.0, quantity=6),
            sale(invoice="3", when="2011-01-11 10:00", price=1.5, quantity=50),
            sale(invoice="4", when="2011-01-12 10:00", price=4.0, quantity=1, customer=None),
            sale(invoice="5", when="2011-01-17 10:00", price=2.0, quantity=6),
        ),
    )
    # week 1 has no list price known before it (the first sale's price stands in; ratios not counted);
    # week 2's list price is 2.0: registered ratios 1.0 and 0.75, unregistered 2.0
    assert out["list_price"].tolist() == [2.0, 2.0, 2.0, 2.0, 2.0]
    assert out["registered_price_ratio"].tolist() == pytest.approx([1.0, 1.0, 1.0, 1.0, 0.875])
    assert out["unregistered_price_ratio"].tolist() == pytest.approx([1.0, 1.0, 1.0, 1.0, 2.0])


def test_lines_of_one_invoice_do_not_see_each_other(featurise):
    out = featurise(
        sales(
            sale(invoice="1", stockcode="A", quantity=5, when="2011-01-03 10:00", price=9.0),
            sale(invoice="1", stockcode="A", quantity=7, when="2011-01-03 10:00", price=1.0),
        )
    )
    assert out["list_price"].tolist() == [9.0, 1.0]  # the first sale itself: each line's own price
    assert out["customer_product_lines_before"].tolist() == [0, 0]
    assert out["customer_lines_before"].tolist() == [0, 0]


def test_customer_history_counts_earlier_purchases(featurise):
    out = featurise(
        sales(
            sale(invoice="1", stockcode="A", quantity=4, price=1.0, when="2011-01-03 10:00"),
            sale(invoice="1", stockcode="B", quantity=1, price=10.0, when="2011-01-03 10:00"),
            sale(invoice="2", stockcode="A", quantity=8, price=1.0, when="2011-01-05 22:00"),
            sale(invoice="3", stockcode="A", quantity=2, price=1.0, when="2011-01-06 10:00"),
            sale(invoice="4", stockcode="A", quantity=3, price=1.0, when="2011-01-07 10:00", customer=None),
        )
    )
    out = out[out["stockcode"] == "A"]
    assert out["customer_product_lines_before"].tolist() == [0, 1, 2, 0]
    assert out["customer_product_last_quantity"].tolist() == [0.0, 4.0, 8.0, 0.0]
    assert out["customer_product_mean_quantity"].tolist() == [0.0, 4.0, 6.0, 0.0]
    assert out["customer_product_days_since"].tolist() == pytest.approx([365.0, 2.5, 0.5, 365.0])
    assert out["customer_invoices_before"].tolist() == [0, 1, 2, 0]
    assert out["customer_lines_before"].tolist() == [0, 2, 3, 0]
    assert out["customer_spend_before"].tolist() == [0.0, 14.0, 22.0, 0.0]
    assert out["is_registered"].tolist() == [1, 1, 1, 0]


def test_product_quantity_levels(featurise):
    out = featurise(
        sales(
            sale(invoice="1", quantity=10, when="2011-01-10 10:00"),
            sale(invoice="2", quantity=20, when="2011-01-20 10:00"),
            sale(invoice="3", quantity=30, when="2011-02-15 10:00"),
            sale(invoice="4", quantity=40, when="2011-03-30 10:00"),
        ),
        window=30,
    )
    # last month: January's mean for February, February's for March, nothing known for January
    assert out["product_avg_quantity_last_month"].tolist() == [0.0, 10.0, 15.0, 30.0]
    # trailing 30 days before the line: none, {10}, {20}, none (falls back to the product's mean so far)
    assert out["product_recent_lines"].tolist() == [0, 1, 1, 0]
    assert out["product_recent_quantity"].tolist() == [0.0, 10.0, 20.0, 20.0]


def test_calendar_and_flags(featurise):
    row = featurise(sales(sale(when="2011-12-04 17:45", country="France", customer=None))).iloc[0]
    assert (row["year"], row["month"], row["year_month"], row["day_of_week"], row["hour"]) == (2011, 12, 201112, 6, 17)
    assert (row["is_uk"], row["is_registered"]) == (0, 0)


def test_every_feature_is_filled(featurise):
    out = featurise(sales(sale(invoice="1", customer=None), sale(invoice="2", stockcode="B", when="2011-02-01 10:00")))
    assert int(out[FEATURE_COLUMNS].isna().sum().sum()) == 0


def test_model_features_exist_in_the_processed_data_and_never_read_the_line_price():
    features = load_params()["features"]
    assert set(features["numeric"]) | set(features["categorical"]) <= set(FEATURE_COLUMNS)
    assert "unit_price" not in features["numeric"]
    assert set(PRICE_DERIVED_COLUMNS) <= set(features["numeric"])
