"""The pandas reference ETL (bench/pandas_reference.py) and the polars ETL (pricing/) agree.

The reference is written independently of ``pricing``; on a sample of the real data (every
line of 30 stock codes, non-product and lower-case codes included) both must keep the same
rows in the same order, count the same removals, and compute every feature alike. The
reference is also held to the hand-made cases of tests/test_features.py, so a disagreement
can be traced to the side that breaks the spec.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pytest

from bench import pandas_reference as reference
from pricing.etl import CleaningRules, run_etl
from pricing.features import FEATURE_COLUMNS
from pricing.layout import load_params
from pricing.raw_data import load_raw

# Best sellers (long histories, repeat customers), codes that occur in lower case too,
# non-product codes the rules drop, and a few mid-sized products.
SAMPLE_CODES = [
    "85123A", "22423", "85099B", "47566", "20725", "84879", "22720", "22197", "21212",
    "47566B", "15056N", "72349B", "84997D", "84997B", "84509A", "84970S",
    "POST", "M", "C2", "BANK CHARGES", "GIFT_0001_20", "GIFT_0001_10", "AMAZONFEE",
    "23084", "22086", "21931", "22960", "23298", "82484", "21166",
]  # fmt: skip
FLOAT_RTOL = 1e-9


@pytest.fixture(scope="module")
def params():
    return load_params()


@pytest.fixture(scope="module")
def sample_path(params, tmp_path_factory):
    """The real lines of SAMPLE_CODES (any case), every 40th description blanked, as parquet."""
    raw = pd.read_parquet(params["data"]["input_path"])
    codes = raw["StockCode"].str.strip().str.upper()
    sample = raw[codes.isin(SAMPLE_CODES)].reset_index(drop=True)
    sample.loc[sample.index % 40 == 7, "Description"] = pd.NA  # exercises the imputation
    path = tmp_path_factory.mktemp("sample") / "sample.parquet"
    sample.to_parquet(path, index=False)
    return path


@pytest.fixture(scope="module")
def both(params, sample_path):
    etl = params["etl"]
    polars_out, polars_metrics = run_etl(
        load_raw(sample_path),
        CleaningRules(etl["non_product_codes"], etl["non_product_prefixes"]),
        recent_window_days=etl["recent_window_days"],
        days_since_cap=etl["days_since_cap"],
        list_price_weeks=etl["list_price_weeks"],
    )
    pandas_out, pandas_metrics = reference.run_etl(reference.load_raw(sample_path), etl)
    return polars_out, polars_metrics, pandas_out, pandas_metrics


def mismatches(expected: pl.DataFrame, actual: pd.DataFrame) -> dict[str, str]:
    """Column -> description of where the pandas frame differs from the polars one."""
    problems: dict[str, str] = {}
    for column in expected.columns:
        want = expected.get_column(column)
        got = pl.from_pandas(actual[column]) if column in actual else None
        if got is None:
            problems[column] = "missing"
            continue
        if want.dtype.is_float() or got.dtype.is_float():
            a, b = want.cast(pl.Float64).to_numpy(), got.cast(pl.Float64).to_numpy()
            bad = ~np.isclose(a, b, rtol=FLOAT_RTOL, atol=0.0, equal_nan=True)
        else:
            if want.dtype != got.dtype and want.dtype.is_integer() and got.dtype.is_integer():
                got = got.cast(want.dtype)
            bad = ~want.eq_missing(got).fill_null(False).to_numpy()
        if bad.any():
            rows = np.flatnonzero(bad)[:3].tolist()
            problems[column] = (
                f"{int(bad.sum())} row(s) differ, e.g. rows {rows}: polars {want.gather(rows).to_list()}"
                f" vs pandas {got.gather(rows).to_list()}"
            )
    return problems


def test_the_sample_exercises_every_rule(both):
    _, polars_metrics, _, _ = both
    assert polars_metrics["lines_kept"] > 15_000
    assert all(count > 0 for count in polars_metrics["removed"].values()), polars_metrics["removed"]
    assert polars_metrics["stockcodes_normalised"] > 0
    assert polars_metrics["descriptions_imputed"] > 0


def test_same_counts_of_every_rule(both):
    _, polars_metrics, _, pandas_metrics = both
    assert pandas_metrics == polars_metrics


def test_same_rows_kept_in_the_same_order(both):
    polars_out, _, pandas_out, _ = both
    assert list(pandas_out.columns) == polars_out.columns
    assert len(pandas_out) == polars_out.height
    kept_columns = [column for column in polars_out.columns if column not in FEATURE_COLUMNS]
    assert mismatches(polars_out.select(kept_columns), pandas_out[kept_columns]) == {}


def test_every_feature_column_is_equal(both):
    polars_out, _, pandas_out, _ = both
    assert reference.FEATURE_COLUMNS == FEATURE_COLUMNS
    assert mismatches(polars_out.select(FEATURE_COLUMNS), pandas_out[FEATURE_COLUMNS]) == {}
    assert not pandas_out[FEATURE_COLUMNS].isna().any().any()
    # The sample has real history: the customer features are not all defaults.
    assert (pandas_out["customer_product_lines_before"] > 0).mean() > 0.2
    assert (pandas_out["product_recent_lines"] > 0).mean() > 0.5


# The hand-made cases of the feature spec run against the reference in tests/test_features.py.


def test_reference_features_of_the_sample_do_not_change_when_later_lines_are_removed(params, sample_path):
    etl = params["etl"]
    cleaned, _ = reference.clean(reference.load_raw(sample_path), etl["non_product_codes"], etl["non_product_prefixes"])
    cutoff = pd.Timestamp("2011-06-15 12:00")
    full = reference.add_features(cleaned, etl["recent_window_days"], etl["days_since_cap"])
    full = full[full["invoice_date"] <= cutoff].reset_index(drop=True)
    truncated = reference.add_features(
        cleaned[cleaned["invoice_date"] <= cutoff], etl["recent_window_days"], etl["days_since_cap"]
    )
    pd.testing.assert_frame_equal(truncated, full)
