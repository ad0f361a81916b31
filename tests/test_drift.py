"""pricing.drift on small hand-made sales, and the data_drift_check stage around it."""
from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import date

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats

from pricing import drift
from pricing.drift import (
    EVENT_LASTING,
    EVENT_PENDING,
    PRICE_TO_LIST,
    STATUS_DRIFT,
    STATUS_INSUFFICIENT,
    STATUS_OK,
    DriftConfig,
    WindowComparison,
    check_drift,
    current_window_end,
    evidently_snapshot,
    read_snapshot,
    render_report_html,
    window_bounds,
)
from pricing.errors import DataValidationError
from pricing.layout import Layout, load_params
from pricing.split import SplitConfig, split_product_lines
from stages import data_drift_check
from stages.common import EXIT_DATA_VALIDATION, run_stage

STOCKCODE = "TEST1"
# 30 weeks of trading, Monday 2011-01-03 on; the data ends on the Friday after them, so the
# last complete week is week 30 (2011-07-25 to 2011-08-01).
FIRST_MONDAY = pd.Timestamp("2011-01-03")
N_WEEKS = 30
LAST_WEEK_END = FIRST_MONDAY + pd.Timedelta(weeks=N_WEEKS)
DATA_END = LAST_WEEK_END + pd.Timedelta(days=4, hours=12)
SPLIT_PARAMS = {"val_fraction": 0.2, "val_max_rows": 500, "test_fraction": 0.2, "test_max_rows": 500}
SPLIT = SplitConfig.from_params(SPLIT_PARAMS)

PARAMS = {
    "gate": "block",
    "as_of": None,
    "tests": {
        "unit_price": "ks",
        "quantity": "ks",
        "hour": "ks",
        "day_of_week": "chisquare",
        "is_uk": "chisquare",
        "is_registered": "chisquare",
    },
    "comparisons": {
        "weekly": {
            "current_weeks": 1,
            "reference_weeks": 12,
            "columns": ["unit_price", "quantity", "hour", "day_of_week", "is_uk"],
            "threshold": 1e-4,
            "drift_share": 0.1,
            "min_current_rows": 15,
            "min_reference_rows": 100,
        },
        "monthly": {
            "current_weeks": 4,
            "reference_weeks": 12,
            "columns": ["is_registered"],
            "threshold": 1e-3,
            "drift_share": 0.1,
            "min_current_rows": 40,
            "min_reference_rows": 100,
        },
        "training": {
            "reference": "training_window",
            "current_weeks": 4,
            "columns": ["unit_price", "is_registered"],
            "threshold": 1e-6,
            "drift_share": 0.1,
            "min_current_rows": 40,
            "min_reference_rows": 100,
        },
    },
}


def make_sales(n_weeks: int = N_WEEKS, lines_per_day: int = 8, seed: int = 0,
               price_weights: tuple[float, float, float] = (0.5, 0.3, 0.2)) -> pd.DataFrame:
    """A steady product: the same price points, quantities, hours and buyers every week."""
    rng = np.random.default_rng(seed)
    days = [
        FIRST_MONDAY + pd.Timedelta(days=d)
        for d in range(7 * n_weeks)
        if (FIRST_MONDAY + pd.Timedelta(days=d)).dayofweek != 5  # closed on Saturdays
    ]
    n = len(days) * lines_per_day
    day = np.repeat(np.array(days, dtype="datetime64[ns]"), lines_per_day)
    hour = rng.integers(8, 18, n)
    dates = pd.to_datetime(day) + pd.to_timedelta(hour, unit="h") + pd.to_timedelta(rng.integers(0, 60, n), unit="min")
    return pd.DataFrame(
        {
            "stockcode": STOCKCODE,
            "invoice_no": [f"{500000 + i}" for i in range(n)],
            "invoice_date": dates,
            "unit_price": rng.choice([2.55, 2.95, 3.25], n, p=list(price_weights)),
            "quantity": rng.choice([1, 2, 3, 4, 6, 12, 24, 32], n),
            "hour": hour.astype("int8"),
            "day_of_week": dates.dayofweek.astype("int8"),
            "is_uk": (rng.random(n) < 0.9).astype("int8"),
            "is_registered": (rng.random(n) < 0.8).astype("int8"),
        }
    )


@pytest.fixture(scope="module")
def config() -> DriftConfig:
    return DriftConfig.from_params(PARAMS)


@pytest.fixture(scope="module")
def sales() -> pd.DataFrame:
    return make_sales()


def run_check(rows, config, **kwargs):
    span = {"data_start": FIRST_MONDAY, "data_end": DATA_END, "split": SPLIT}
    return check_drift(rows, STOCKCODE, config, **{**span, **kwargs})


def in_last_weeks(rows: pd.DataFrame, n_weeks: int) -> pd.Series:
    return rows["invoice_date"] >= LAST_WEEK_END - pd.Timedelta(weeks=n_weeks)


@pytest.fixture(scope="module")
def steady(sales, config):
    return run_check(sales, config)


# -- configuration -----------------------------------------------------------------------
def test_the_project_params_are_a_valid_drift_config():
    config = DriftConfig.from_params(load_params(Layout().root)["drift"])
    assert config.gate in ("block", "warn")
    assert {c.name for c in config.comparisons} >= {"weekly"}


def test_config_reads_every_key(config):
    weekly, monthly, training = config.comparisons
    assert weekly == WindowComparison(
        name="weekly",
        current_weeks=1,
        reference_weeks=12,
        columns=("unit_price", "quantity", "hour", "day_of_week", "is_uk"),
        threshold=1e-4,
        drift_share=0.1,
        min_current_rows=15,
        min_reference_rows=100,
    )
    assert monthly.columns == ("is_registered",)
    assert config.columns == ["unit_price", "quantity", "hour", "day_of_week", "is_uk", "is_registered"]
    assert config.as_of is None and config.gate == "block"


def _with(path: str, value):
    params = yaml.safe_load(yaml.safe_dump(PARAMS))
    *parents, key = path.split(".")
    node = params
    for parent in parents:
        node = node[parent]
    if value is KeyError:
        del node[key]
    else:
        node[key] = value
    return params


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("gate", "stop", "drift.gate"),
        ("tests.unit_price", "wasserstein_typo", "unsupported stat test"),
        ("comparisons.weekly.columns", ["unit_price", "basket"], "no stat test in drift.tests for basket"),
        ("comparisons.weekly.columns", [], "columns is empty"),
        ("comparisons.weekly.threshold", 1.5, "threshold must be a p-value"),
        ("comparisons.weekly.drift_share", 0, "drift_share must be in"),
        ("comparisons.weekly.current_weeks", 0, "current_weeks must be a positive integer"),
        ("comparisons.monthly.min_reference_rows", "many", "min_reference_rows must be a positive integer"),
        ("comparisons.weekly.reference_weeks", KeyError, "'reference_weeks' is missing"),
        ("tests", KeyError, "'tests' is missing"),
        ("comparisons", {}, "comparisons is empty"),
        ("as_of", "last friday", "drift.as_of must be an ISO date"),
    ],
)
def test_bad_params_name_the_problem(path, value, message):
    with pytest.raises(DataValidationError, match=message):
        DriftConfig.from_params(_with(path, value))


def test_a_missing_drift_section_is_a_validation_error():
    with pytest.raises(DataValidationError, match="'drift' section"):
        DriftConfig.from_params(None)


def test_as_of_accepts_a_yaml_date():
    assert DriftConfig.from_params(_with("as_of", date(2011, 7, 31))).as_of == date(2011, 7, 31)
    assert DriftConfig.from_params(_with("as_of", "2011-07-31")).as_of == date(2011, 7, 31)


# -- windows -----------------------------------------------------------------------------
def test_the_current_week_is_the_last_complete_one():
    friday_noon = pd.Timestamp("2011-12-09 12:50")
    assert current_window_end(friday_noon) == pd.Timestamp("2011-12-05")  # the week of 28 Nov
    sunday_night = pd.Timestamp("2011-12-04 23:59")
    assert current_window_end(sunday_night) == pd.Timestamp("2011-11-28")  # Sunday may not be over
    assert current_window_end(pd.Timestamp("2011-12-05 00:00")) == pd.Timestamp("2011-12-05")


def test_as_of_picks_the_last_complete_week_on_or_before_that_day():
    data_end = pd.Timestamp("2011-12-09 12:50")
    assert current_window_end(data_end, date(2011, 11, 27)) == pd.Timestamp("2011-11-28")  # a Sunday
    assert current_window_end(data_end, date(2011, 11, 26)) == pd.Timestamp("2011-11-21")
    # A date past the data cannot make the final, partial week complete.
    assert current_window_end(data_end, date(2012, 1, 1)) == pd.Timestamp("2011-12-05")


def test_window_bounds_are_whole_weeks_back_to_back(config):
    weekly, monthly, _ = config.comparisons
    end = pd.Timestamp("2011-12-05")
    bounds = window_bounds(end, weekly)
    assert (bounds.reference_start, bounds.current_start) == (pd.Timestamp("2011-09-05"), pd.Timestamp("2011-11-28"))
    bounds = window_bounds(end, monthly)
    assert (bounds.reference_start, bounds.current_start) == (pd.Timestamp("2011-08-15"), pd.Timestamp("2011-11-07"))


# -- verdicts ----------------------------------------------------------------------------
def test_steady_sales_do_not_drift(steady):
    result = steady.result
    assert result["status"] == STATUS_OK and result["drift_detected"] is False
    assert result["n_drifted_columns"] == 0 and result["share_drifted_columns"] == 0.0
    assert set(steady.judged) == {"weekly", "monthly", "training"}
    assert result["signals"] == {"sudden_break": STATUS_OK, "stale_training_window": STATUS_OK}
    assert result["reasons"] == []


def test_the_verdict_is_json_with_every_field_the_gate_and_dvc_read(steady, config):
    result = json.loads(json.dumps(steady.result, allow_nan=False))
    for key in (
        "stockcode", "status", "drift_detected", "gate", "n_drifted_columns", "share_drifted_columns",
        "columns", "comparisons", "reasons", "signals", "current_end",
    ):
        assert key in result, key
    assert result["stockcode"] == STOCKCODE and result["gate"] == "block"
    # A dependency of preprocess: no wall-clock time, or a regenerated verdict never matches dvc.lock.
    assert "timestamp" not in result
    assert result["current_end"] == LAST_WEEK_END.isoformat()
    assert result["columns"]["is_registered"] == {
        "test": "chisquare", "drifted": False, "compared_in": ["monthly", "training"], "drifted_in": [],
    }
    weekly = result["comparisons"]["weekly"]
    assert weekly["current"] == {
        "start": (LAST_WEEK_END - pd.Timedelta(weeks=1)).isoformat(),
        "end": LAST_WEEK_END.isoformat(),
        "rows": 6 * 8,
    }
    assert weekly["reference"]["rows"] == 12 * 6 * 8
    assert set(weekly["columns"]) == set(config.comparisons[0].columns)
    for column in weekly["columns"].values():
        assert set(column) == {"test", "statistic", "p_value", "threshold", "drifted"}
        assert column["threshold"] == 1e-4


def test_p_values_are_evidentlys_and_match_the_textbook_tests(sales, steady):
    weekly = steady.result["comparisons"]["weekly"]["columns"]
    current = sales[(sales["invoice_date"] >= LAST_WEEK_END - pd.Timedelta(weeks=1))]
    reference = sales[
        (sales["invoice_date"] >= LAST_WEEK_END - pd.Timedelta(weeks=13))
        & (sales["invoice_date"] < LAST_WEEK_END - pd.Timedelta(weeks=1))
    ]
    expected = stats.ks_2samp(reference["quantity"], current["quantity"])
    assert weekly["quantity"]["p_value"] == pytest.approx(expected.pvalue)
    assert weekly["quantity"]["statistic"] == pytest.approx(expected.statistic)


def test_the_verdicts_are_those_of_evidentlys_report(sales, steady, config):
    """The verdicts come from Evidently's stat tests without its report (whose plotly widgets
    only the page needs): on quiet and drifted comparisons they equal what the report says."""
    raised = sales.assign(unit_price=sales["unit_price"].where(~in_last_weeks(sales, 1), sales["unit_price"] * 1.3))
    registered_only = sales.loc[~(in_last_weeks(sales, 4) & (sales["is_registered"] == 0))]
    checks = [steady, run_check(raised, config), run_check(registered_only, config)]
    compared = [(check.result["comparisons"][name], judged) for check in checks for name, judged in check.judged.items()]
    assert {comparison["status"] for comparison, _ in compared} == {STATUS_OK, STATUS_DRIFT}
    for comparison, judged in compared:
        count, share, drifted, columns = read_snapshot(evidently_snapshot(judged, config))
        assert (count, share) == (comparison["n_drifted_columns"], comparison["share_drifted_columns"])
        assert drifted == (comparison["status"] == STATUS_DRIFT)
        assert {c: (v["p_value"], v["drifted"]) for c, v in columns.items()} == {
            c: (v["p_value"], v["drifted"]) for c, v in comparison["columns"].items()}


def test_a_page_that_would_disagree_with_the_verdict_is_refused(sales, config, monkeypatch):
    raised = sales.assign(unit_price=sales["unit_price"].where(~in_last_weeks(sales, 1), sales["unit_price"] * 1.3))
    check = run_check(raised, config)
    # As if another Evidently version's report read the same lines differently.
    monkeypatch.setattr(drift, "read_snapshot", lambda snapshot: (0, 0.0, False, {}))
    with pytest.raises(RuntimeError, match="disagrees with its stat tests"):
        render_report_html(check)


def test_a_price_rise_in_the_current_week_is_drift(sales, config):
    raised = sales.assign(unit_price=sales["unit_price"].where(~in_last_weeks(sales, 1), sales["unit_price"] * 1.3))
    result = run_check(raised, config).result
    assert result["status"] == STATUS_DRIFT and result["drift_detected"] is True
    assert "weekly" in result["columns"]["unit_price"]["drifted_in"]
    assert result["signals"]["sudden_break"] == STATUS_DRIFT
    assert any(r.startswith("weekly (sudden_break): drift in unit_price (p=") for r in result["reasons"])
    weekly = result["comparisons"]["weekly"]
    assert weekly["drift_detected"] and weekly["columns"]["unit_price"]["drifted"]
    assert weekly["columns"]["unit_price"]["p_value"] < 1e-4
    assert weekly["n_drifted_columns"] >= 1 and weekly["share_drifted_columns"] >= 0.2
    assert result["n_drifted_columns"] >= 1


def test_losing_every_unregistered_buyer_is_drift_within_a_month(sales, config):
    registered_only = sales.loc[~(in_last_weeks(sales, 4) & (sales["is_registered"] == 0))]
    result = run_check(registered_only, config).result
    assert result["drift_detected"] is True
    assert result["comparisons"]["monthly"]["columns"]["is_registered"]["drifted"]
    assert "monthly" in result["columns"]["is_registered"]["drifted_in"]


def test_drift_in_one_comparison_is_drift_of_the_product(sales, config):
    raised = sales.assign(unit_price=sales["unit_price"].where(~in_last_weeks(sales, 1), sales["unit_price"] * 1.3))
    result = run_check(raised, config).result
    assert result["comparisons"]["monthly"]["status"] == STATUS_OK
    assert result["status"] == STATUS_DRIFT


# -- windows too small to judge ----------------------------------------------------------
def test_an_empty_current_week_is_insufficient_data_not_a_crash(sales, config):
    quiet_last_week = sales.loc[~in_last_weeks(sales, 1)]
    result = run_check(quiet_last_week, config).result
    weekly = result["comparisons"]["weekly"]
    assert weekly["status"] == STATUS_INSUFFICIENT and weekly["drift_detected"] is False
    assert weekly["current"]["rows"] == 0 and "fewer than min_current_rows=15" in weekly["reason"]
    assert weekly["columns"] == {}
    assert result["status"] == STATUS_INSUFFICIENT and result["drift_detected"] is False


def test_a_thin_reference_is_insufficient_data(config):
    young_product = make_sales(n_weeks=N_WEEKS).loc[lambda f: f["invoice_date"] >= LAST_WEEK_END - pd.Timedelta(weeks=3)]
    result = run_check(young_product, config).result
    for comparison in result["comparisons"].values():
        assert comparison["status"] == STATUS_INSUFFICIENT
    assert "min_reference_rows" in result["comparisons"]["weekly"]["reason"]
    assert result["drift_detected"] is False


def test_a_current_week_before_the_data_starts_is_insufficient_data(sales, config):
    # The data begins on the Wednesday of the current week: that week is not whole.
    late_start = LAST_WEEK_END - pd.Timedelta(days=5)
    result = run_check(sales, config, data_start=late_start).result
    assert "before the data does" in result["comparisons"]["weekly"]["reason"]
    assert result["status"] == STATUS_INSUFFICIENT


def test_the_final_partial_week_is_never_judged(sales, config):
    # Sales in the unfinished week after the last complete one do not enter any window.
    partial = sales.iloc[:20].assign(invoice_date=LAST_WEEK_END + pd.Timedelta(days=1), unit_price=99.0)
    result = run_check(pd.concat([sales, partial], ignore_index=True), config).result
    assert result["status"] == STATUS_OK
    assert result["comparisons"]["weekly"]["current"]["end"] == LAST_WEEK_END.isoformat()


def test_no_rows_with_a_known_data_span_is_insufficient_data(sales, config):
    result = run_check(sales.iloc[0:0], config).result
    assert result["status"] == STATUS_INSUFFICIENT and result["rows"] == 0


def test_as_of_moves_the_current_window_back(sales, config):
    result = run_check(sales, replace(config, as_of=date(2011, 7, 10))).result  # a Sunday
    assert result["current_end"] == pd.Timestamp("2011-07-11").isoformat()
    assert result["as_of"] == "2011-07-10"


# -- bad input ---------------------------------------------------------------------------
def test_missing_columns_are_named(sales, config):
    with pytest.raises(DataValidationError, match="missing column.*hour, is_uk"):
        run_check(sales.drop(columns=["hour", "is_uk"]), config)


def test_null_values_are_refused(sales, config):
    with pytest.raises(DataValidationError, match="null values in quantity"):
        run_check(sales.assign(quantity=sales["quantity"].astype("float").where(sales.index != 3)), config)


def test_dates_must_be_datetimes(sales, config):
    with pytest.raises(DataValidationError, match="not a datetime"):
        run_check(sales.assign(invoice_date=sales["invoice_date"].astype(str)), config)


def test_rows_of_another_product_are_refused(sales, config):
    with pytest.raises(DataValidationError, match="other stockcodes too \\(OTHER\\)"):
        run_check(sales.assign(stockcode=np.where(sales.index == 0, "OTHER", STOCKCODE)), config)


def test_no_rows_and_no_data_span_is_a_validation_error(sales, config):
    with pytest.raises(DataValidationError, match="no rows"):
        check_drift(sales.iloc[0:0], STOCKCODE, config)


def test_without_a_data_span_the_products_own_dates_place_the_windows(sales, config):
    result = check_drift(sales, STOCKCODE, config, split=SPLIT).result
    # The product's last sale is a Sunday evening: that week may not be over.
    assert result["current_end"] == (LAST_WEEK_END - pd.Timedelta(weeks=1)).isoformat()


# -- the HTML report ---------------------------------------------------------------------
def test_the_report_is_one_page_with_every_comparison(sales, config):
    quiet_last_week = sales.loc[~in_last_weeks(sales, 1)]
    check = run_check(quiet_last_week, config)
    page = render_report_html(check)
    assert page.lstrip().lower().startswith("<!doctype html>")
    assert "weekly: insufficient_data" in page and "Not judged" in page
    assert "monthly: ok" in page
    # Evidently's own widgets for the judged comparison, and its ~4 MB JavaScript bundle once.
    assert "is_registered" in page
    one_report = evidently_snapshot(check.judged["monthly"], config).get_html_str(as_iframe=False)
    assert len(page) < 1.2 * len(one_report)


def test_the_same_verdict_renders_the_same_page(sales, config):
    """The page is a DVC-tracked output: a reproduction compares it byte for byte."""
    first, again = (render_report_html(run_check(sales, config)) for _ in range(2))
    assert first == again
    assert "6ba7b810-9dad-11d1-80b4-00c04fd430c8" in first  # the bundle's own constants are left alone


# -- list-price changes are events; drift is judged given the price -----------------------
def _given_the_price(params: dict) -> dict:
    """``params`` with ``price_to_list`` tested where ``unit_price`` was, as params.yaml does."""
    swap = lambda columns: [PRICE_TO_LIST if c == "unit_price" else c for c in columns]  # noqa: E731
    tests = {PRICE_TO_LIST if c == "unit_price" else c: t for c, t in params["tests"].items()}
    comparisons = {name: {**spec, "columns": swap(spec["columns"])} for name, spec in params["comparisons"].items()}
    return {**params, "tests": tests, "comparisons": comparisons}


@pytest.fixture(scope="module")
def priced_config() -> DriftConfig:
    return DriftConfig.from_params(_given_the_price(PARAMS))


@pytest.fixture(scope="module")
def listed() -> pd.DataFrame:
    """Sales whose list price (2.55) is most lines' price, as a real product's is: with the
    hand-made 50/30/20 mix a week's registered-buyer mode flips now and then."""
    return make_sales(price_weights=(0.7, 0.2, 0.1))


def test_params_yaml_judges_drift_given_the_price():
    drift = load_params(Layout().root)["drift"]
    tested = {c for spec in drift["comparisons"].values() for c in spec["columns"]}
    assert PRICE_TO_LIST in tested and "unit_price" not in tested


def raise_list_price(rows: pd.DataFrame, weeks_ago: int, factor: float) -> pd.DataFrame:
    since = in_last_weeks(rows, weeks_ago)
    return rows.assign(unit_price=rows["unit_price"].where(~since, rows["unit_price"] * factor))


def test_a_lasting_list_price_change_is_an_event_not_drift(listed, config, priced_config):
    raised = raise_list_price(listed, 14, 1.1)
    assert run_check(raised, config).result["status"] == STATUS_DRIFT  # unit_price tested: the change stops it
    result = run_check(raised, priced_config).result
    assert result["status"] == STATUS_OK, result["reasons"]
    [event] = result["events"]
    assert event["kind"] == EVENT_LASTING and event["held_weeks"] == 14
    assert (event["old_price"], event["new_price"]) == pytest.approx((2.55, 2.805))
    assert event["week"] == (LAST_WEEK_END - pd.Timedelta(weeks=14)).date().isoformat()
    assert event["in_training_window"] is True  # the candidate's train split reaches the new price
    assert "a change the retailer made, not drift" in event["note"]


def test_a_list_price_change_in_the_current_week_is_a_pending_event(listed, priced_config):
    result = run_check(raise_list_price(listed, 1, 1.3), priced_config).result
    assert result["status"] == STATUS_OK, result["reasons"]
    [event] = result["events"]
    assert event["kind"] == EVENT_PENDING and event["held_weeks"] == 1
    assert event["in_training_window"] is False


def test_a_one_week_price_blip_long_gone_is_no_event(listed, priced_config):
    week = (listed["invoice_date"] >= LAST_WEEK_END - pd.Timedelta(weeks=6)) & ~in_last_weeks(listed, 5)
    blip = listed.assign(unit_price=listed["unit_price"].where(~week, listed["unit_price"] * 1.2))
    assert run_check(blip, priced_config).result["events"] == []


def test_dearer_prices_off_the_list_are_drift_given_the_price(listed, priced_config):
    # The list price (the registered buyers' modal 2.55) holds; the lines above it get 30 % dearer.
    current = in_last_weeks(listed, 1) & (listed["unit_price"] > 2.55)
    dearer = listed.assign(unit_price=listed["unit_price"].where(~current, listed["unit_price"] * 1.3))
    result = run_check(dearer, priced_config).result
    assert result["events"] == []
    assert result["status"] == STATUS_DRIFT
    assert result["comparisons"]["weekly"]["columns"][PRICE_TO_LIST]["drifted"]


def test_demand_answering_a_list_price_change_is_judged_at_the_new_price(listed, priced_config):
    # From six weeks ago the price is 30 % up and every line buys half as much: the weekly
    # reference keeps its five weeks at the new price, where quantities did not move.
    since = in_last_weeks(listed, 6)
    answered = raise_list_price(listed, 6, 1.3).assign(
        quantity=listed["quantity"].where(~since, np.maximum(listed["quantity"] // 2, 1)))
    result = run_check(answered, priced_config).result
    weekly = result["comparisons"]["weekly"]
    assert weekly["list_price_basis"]["reference"] == "since_the_change"
    assert weekly["reference"]["rows"] == int((since & ~in_last_weeks(listed, 1)).sum())
    assert weekly["status"] == STATUS_OK and result["status"] == STATUS_OK, result["reasons"]
    # A (stronger) answer to a change only two weeks old: too few lines at the new price to judge
    # by, so the whole reference is used, and the record says why.
    recent = in_last_weeks(listed, 2)
    fresh = raise_list_price(listed, 2, 1.3).assign(quantity=listed["quantity"].where(~recent, 1))
    result = run_check(fresh, priced_config).result
    basis = result["comparisons"]["weekly"]["list_price_basis"]
    assert basis["reference"] == "mixed" and "fewer than min_reference_rows=100" in basis["why"]
    # Single units show against the older weeks, at the old price: the change's own doing.
    assert basis["shift_attributed_to_the_change"] == ["quantity"]
    assert result["status"] == STATUS_OK and not result["columns"]["quantity"]["drifted"]
    assert any("attributed to it" in reason for reason in result["reasons"])


def test_testing_unit_price_itself_a_list_price_change_is_still_drift(listed, config):
    result = run_check(raise_list_price(listed, 1, 1.3), config).result
    assert result["status"] == STATUS_DRIFT and result["columns"]["unit_price"]["drifted"]
    assert result["events"][0]["kind"] == EVENT_PENDING  # recorded all the same


# -- the stage ---------------------------------------------------------------------------
@pytest.fixture
def project(tmp_path, monkeypatch, sales):
    """A project root holding params.yaml and a processed_df of two products; the other one
    sells on into the unfinished week after the last complete one."""
    other = make_sales(n_weeks=N_WEEKS + 1, seed=1).assign(stockcode="OTHER")
    other = other.loc[other["invoice_date"] <= DATA_END]
    processed = pd.concat([sales, other], ignore_index=True).assign(description="x")
    layout = Layout(tmp_path)
    layout.processed_df.parent.mkdir(parents=True)
    processed.to_parquet(layout.processed_df)
    # the stage takes its cut-off from the top-level as_of, the one every stage applies
    drift = {key: value for key, value in PARAMS.items() if key != "as_of"}
    (tmp_path / "params.yaml").write_text(
        yaml.safe_dump({"as_of": None, "drift": drift, "split": SPLIT_PARAMS}, sort_keys=False))
    monkeypatch.chdir(tmp_path)
    return layout


def _outputs(layout: Layout, stockcode: str):
    return [layout.drift_report(stockcode), layout.drift_metrics(stockcode)]


def test_the_stage_writes_the_report_and_the_verdict(project):
    run_stage(data_drift_check.main, [STOCKCODE])
    verdict = json.loads(project.drift_metrics(STOCKCODE).read_text())
    assert verdict["stockcode"] == STOCKCODE and verdict["status"] == STATUS_OK
    # The whole data set, not the product's last sale, says which week is complete.
    assert verdict["current_end"] == LAST_WEEK_END.isoformat()
    assert "<html" in project.drift_report(STOCKCODE).read_text()[:2000].lower()


def test_the_stage_takes_the_top_level_as_of_and_refuses_a_second_one(project, capsys):
    params = yaml.safe_load(project.params_file.read_text())
    project.params_file.write_text(yaml.safe_dump({**params, "as_of": "2011-07-10"}, sort_keys=False))
    run_stage(data_drift_check.main, [STOCKCODE])
    assert json.loads(project.drift_metrics(STOCKCODE).read_text())["as_of"] == "2011-07-10"
    params["drift"]["as_of"] = "2011-07-10"
    project.params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    with pytest.raises(SystemExit):
        run_stage(data_drift_check.main, [STOCKCODE])
    assert "drift.as_of is now the top-level as_of" in capsys.readouterr().err


def test_the_stage_exits_zero_on_drift(project):
    processed = pd.read_parquet(project.processed_df)
    mine = (processed["stockcode"] == STOCKCODE) & in_last_weeks(processed, 1)
    processed.loc[mine, "unit_price"] *= 1.3
    processed.to_parquet(project.processed_df)
    run_stage(data_drift_check.main, [STOCKCODE])  # no SystemExit
    assert json.loads(project.drift_metrics(STOCKCODE).read_text())["drift_detected"] is True


def test_a_lower_case_stockcode_finds_the_product(project):
    run_stage(data_drift_check.main, [STOCKCODE.lower()])
    assert json.loads(project.drift_metrics(STOCKCODE.lower()).read_text())["stockcode"] == STOCKCODE


@pytest.mark.parametrize(
    ("break_input", "message"),
    [
        (lambda layout: None, "unknown stockcode 'NOPE'"),
        (lambda layout: layout.processed_df.unlink(), "processed data not found"),
        (
            lambda layout: pd.read_parquet(layout.processed_df).drop(columns=["is_uk"]).to_parquet(layout.processed_df),
            "missing column\\(s\\) is_uk",
        ),
        (lambda layout: (layout.root / "params.yaml").write_text("drift: {gate: block}\n"), "'tests' is missing"),
    ],
)
def test_bad_input_exits_non_zero_with_one_line_and_writes_nothing(project, capsys, break_input, message):
    stockcode = "NOPE" if "NOPE" in message else STOCKCODE
    break_input(project)
    with pytest.raises(SystemExit) as exit_info:
        run_stage(data_drift_check.main, [stockcode])
    assert exit_info.value.code == EXIT_DATA_VALIDATION
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert re.search(message, error), error
    for path in _outputs(project, stockcode):
        assert not path.exists()


# -- the training window -----------------------------------------------------------------
def test_the_training_reference_is_the_train_split_preprocess_cuts(sales, steady):
    training = steady.result["comparisons"]["training"]
    lines = __import__("polars").from_pandas(sales[["invoice_no", "invoice_date"]])
    train = split_product_lines(lines, SPLIT)["train"]
    assert training["reference_kind"] == "training_window" and training["signal"] == "stale_training_window"
    assert training["reference"]["rows"] == train.height
    assert training["reference"]["start"] == pd.Timestamp(train["invoice_date"].min()).isoformat()
    assert training["reference"]["end"] == pd.Timestamp(train["invoice_date"].max()).isoformat()
    assert training["current"]["start"] == (LAST_WEEK_END - pd.Timedelta(weeks=4)).isoformat()


def test_a_shift_older_than_the_weekly_reference_is_caught_against_the_training_window(sales, config):
    # The price rose 14 weeks ago: the last week looks like the 12 before it, but not like
    # the first 18 weeks the candidate trains on.
    raised = sales.assign(unit_price=sales["unit_price"].where(~in_last_weeks(sales, 14), sales["unit_price"] * 1.1))
    result = run_check(raised, config).result
    assert result["comparisons"]["weekly"]["status"] == STATUS_OK
    assert result["comparisons"]["training"]["status"] == STATUS_DRIFT
    assert result["signals"] == {"sudden_break": STATUS_OK, "stale_training_window": STATUS_DRIFT}
    assert result["status"] == STATUS_DRIFT and result["drift_detected"] is True
    assert result["reasons"][0].startswith("training (stale_training_window): drift in unit_price")
    assert "the candidate would be stale (its training window 2011-01-03 to" in result["reasons"][0]


def test_too_few_lines_to_split_leave_the_training_window_unjudged_with_the_reason(sales, config):
    # Three lines cannot be cut into train, validation and test: no training window to compare with.
    result = run_check(sales.iloc[:3], config, data_end=DATA_END).result
    training = result["comparisons"]["training"]
    assert training["status"] == STATUS_INSUFFICIENT
    assert training["reason"].startswith("no training window: 3 lines are too few to split")
    assert result["status"] == STATUS_INSUFFICIENT and result["drift_detected"] is False
    assert any("reference 0 rows, current 0 rows" in reason for reason in result["reasons"])


def test_the_stage_writes_the_same_verdict_bytes_every_time(project):
    run_stage(data_drift_check.main, [STOCKCODE])
    first = project.drift_metrics(STOCKCODE).read_bytes()
    run_stage(data_drift_check.main, [STOCKCODE])
    assert project.drift_metrics(STOCKCODE).read_bytes() == first
