"""The feature spec on hand-made lines, held by the ETL (polars) and the pandas reference alike."""
import math

import pytest
from sales_factory import sale, sales

from bench import pandas_reference
from pricing.features import FEATURE_COLUMNS, add_features
from pricing.layout import load_params


def polars_features(frame, window=30, cap=365.0):
    return add_features(frame, recent_window_days=window, days_since_cap=cap).to_pandas()


def reference_features(frame, window=30, cap=365.0):
    lines = frame.to_pandas().astype({"customer_id": "Int64"})
    return pandas_reference.add_features(lines, recent_window_days=window, days_since_cap=cap)


@pytest.fixture(params=[polars_features, reference_features], ids=["etl", "pandas_reference"])
def featurise(request):
    return request.param


def test_price_features_use_only_earlier_lines(featurise):
    out = featurise(
        sales(
            sale(invoice="1", when="2011-01-03 10:00", price=2.0),
            sale(invoice="2", when="2011-01-04 10:00", price=4.0),
            sale(invoice="3", when="2011-01-05 10:00", price=3.0),
        )
    )
    assert out["product_max_price_all_time"].tolist() == [2.0, 4.0, 4.0]
    assert out["unitprice_vs_max"].tolist() == [1.0, 1.0, 0.75]
    assert out["product_avg_price_before"].tolist() == [2.0, 2.0, 3.0]
    assert out["unitprice_to_avg"].tolist() == [1.0, 2.0, 1.0]
    assert out["unitprice_log"].tolist() == pytest.approx([math.log(2), math.log(4), math.log(3)])
    assert out["unitprice_squared"].tolist() == [4.0, 16.0, 9.0]


def test_lines_of_one_invoice_do_not_see_each_other(featurise):
    out = featurise(
        sales(
            sale(invoice="1", stockcode="A", quantity=5, when="2011-01-03 10:00", price=9.0),
            sale(invoice="1", stockcode="A", quantity=7, when="2011-01-03 10:00", price=1.0),
        )
    )
    assert out["product_max_price_all_time"].tolist() == [9.0, 1.0]
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


def test_model_features_exist_in_the_processed_data():
    features = load_params()["features"]
    assert set(features["numeric"]) | set(features["categorical"]) <= set(FEATURE_COLUMNS) | {"unit_price"}
