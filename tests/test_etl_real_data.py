"""The ETL over the complete bundled data set (a couple of seconds)."""
from datetime import datetime

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from pricing.etl import CleaningRules, clean, run_etl
from pricing.features import add_features
from pricing.layout import load_params
from pricing.raw_data import load_raw


@pytest.fixture(scope="module")
def params():
    return load_params()


@pytest.fixture(scope="module")
def raw(params):
    return load_raw(params["data"]["input_path"])


@pytest.fixture(scope="module")
def rules(params):
    return CleaningRules(params["etl"]["non_product_codes"], params["etl"]["non_product_prefixes"])


def test_raw_counts_match_the_data_sets_readme(raw, rules, params):
    _, metrics = run_etl(raw, rules, params["etl"]["recent_window_days"], params["etl"]["days_since_cap"])
    assert metrics["raw"] == {
        "lines": 541_909,
        "invoices": 25_900,
        "cancellation_lines": 9_288,
        "stock_codes": 4_070,
        "customers": 4_372,
        "exact_duplicate_lines": 5_268,
        "total_quantity": 5_176_450,
    }
    assert metrics["removed"]["exact_duplicates"] == 5_268
    assert metrics["lines_in"] - metrics["removed_total"] == metrics["lines_kept"]


def test_cleaned_data_holds_only_product_sales(raw, rules):
    kept, _ = clean(raw, rules)
    assert kept.filter(pl.col("invoice_no").str.starts_with("C")).height == 0
    assert kept["quantity"].min() > 0 and kept["unit_price"].min() > 0
    assert kept.filter(pl.col("stockcode").is_in(["POST", "DOT", "M", "BANK CHARGES"])).height == 0
    assert kept.filter(pl.col("stockcode") != pl.col("stockcode").str.to_uppercase()).height == 0
    assert kept.height == kept.unique().height
    assert kept["description"].null_count() == 0


@pytest.mark.parametrize("cutoff", [datetime(2011, 3, 1, 12, 0), datetime(2011, 9, 15, 9, 30)])
def test_features_do_not_change_when_later_lines_are_removed(raw, rules, params, cutoff):
    kept, _ = clean(raw, rules)
    window, cap = params["etl"]["recent_window_days"], params["etl"]["days_since_cap"]
    full = add_features(kept, window, cap).filter(pl.col("invoice_date") <= cutoff)
    truncated = add_features(kept.filter(pl.col("invoice_date") <= cutoff), window, cap)
    assert truncated.height == full.height > 100_000
    assert_frame_equal(truncated, full)
