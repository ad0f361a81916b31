"""The drift gate's defaults, proven on the real data (issue 2, item 4).

The five best sellers over the last 16 complete weeks of 2011, with the ``drift`` section of
``params.yaml`` as it stands:

- ordinary product-weeks: at most 1 in 10 raises an alarm;
- a 30 % price rise in the current week fires on every product-week;
- all unregistered buyers gone fires within four weeks of the change, every time.

The data comes from the real ETL run on the bundled raw file, not from an earlier
``dvc repro``. ~150 Evidently runs: about a minute on a 2-core machine.
"""
from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pandas as pd
import polars as pl
import pytest

from pricing.drift import DATE_COLUMN, STATUS_INSUFFICIENT, DriftConfig, check_drift, current_window_end
from pricing.etl import CleaningRules, run_etl
from pricing.layout import Layout, load_params
from pricing.raw_data import load_raw

pytestmark = pytest.mark.slow

BEST_SELLERS = ("85123A", "85099B", "22423", "47566", "20725")
N_WEEKS = 16
MAX_ORDINARY_ALARM_RATE = 0.1
PRICE_RISE = 1.3
WEEKS_TO_CATCH_MIX_CHANGE = 4
# A customer-mix change starts at the beginning of each 4-week block of the 16 weeks.
MIX_CHANGE_START_WEEKS = range(0, N_WEEKS, WEEKS_TO_CATCH_MIX_CHANGE)


@pytest.fixture(scope="module")
def params() -> dict:
    return load_params(Layout().root)


@pytest.fixture(scope="module")
def config(params) -> DriftConfig:
    return DriftConfig.from_params(params["drift"])


@pytest.fixture(scope="module")
def sales(params, config) -> tuple[dict[str, pd.DataFrame], pd.Timestamp, pd.Timestamp]:
    """Per best seller, its processed rows; and the first and last moment of the whole data."""
    raw = load_raw(Layout().root / "data" / "raw" / "online_retail.parquet")
    etl = params["etl"]
    processed, _ = run_etl(
        raw,
        CleaningRules(etl["non_product_codes"], etl["non_product_prefixes"]),
        recent_window_days=etl["recent_window_days"],
        days_since_cap=etl["days_since_cap"],
    )
    data_start, data_end = processed.get_column(DATE_COLUMN).min(), processed.get_column(DATE_COLUMN).max()
    best = (
        processed.filter(pl.col("stockcode").is_in(BEST_SELLERS))
        .select("stockcode", DATE_COLUMN, *config.columns)
        .to_pandas()
    )
    by_product = {sc: rows.reset_index(drop=True) for sc, rows in best.groupby("stockcode")}
    assert set(by_product) == set(BEST_SELLERS)
    return by_product, pd.Timestamp(data_start), pd.Timestamp(data_end)


@pytest.fixture(scope="module")
def week_ends(sales) -> list[pd.Timestamp]:
    """Exclusive ends (Mondays) of the last 16 complete weeks, oldest first."""
    _, _, data_end = sales
    last = current_window_end(data_end)
    return [last - pd.Timedelta(weeks=k) for k in reversed(range(N_WEEKS))]


def _as_of(week_end: pd.Timestamp):
    """The Sunday that closes the week ending at ``week_end``."""
    return (week_end - timedelta(days=1)).date()


def _monday(week_end: pd.Timestamp) -> str:
    return str((week_end - pd.Timedelta(weeks=1)).date())


def _drifted(result: dict) -> list[str]:
    return [column for column, verdict in result["columns"].items() if verdict["drifted"]]


def _check(rows, stockcode, config, week_end, sales):
    _, data_start, data_end = sales
    return check_drift(
        rows, stockcode, replace(config, as_of=_as_of(week_end)), data_start=data_start, data_end=data_end
    ).result


def test_the_weeks_are_the_last_sixteen_complete_weeks_of_2011(week_ends):
    assert week_ends[-1] == pd.Timestamp("2011-12-05")  # the data ends Friday 9 December
    assert week_ends[0] == pd.Timestamp("2011-08-22")


def test_ordinary_weeks_raise_at_most_one_alarm_in_ten(sales, config, week_ends):
    by_product, _, _ = sales
    results = [
        (sc, end, _check(by_product[sc], sc, config, end, sales)) for sc in BEST_SELLERS for end in week_ends
    ]
    alarms = [(sc, f"week of {_monday(end)}", _drifted(r)) for sc, end, r in results if r["drift_detected"]]
    unjudged = [(sc, _monday(end)) for sc, end, r in results if r["status"] == STATUS_INSUFFICIENT]
    print(f"\nordinary product-weeks: {len(alarms)}/{len(results)} alarms {alarms}; not judged: {unjudged}")

    assert len(alarms) <= MAX_ORDINARY_ALARM_RATE * len(results)
    # No alarm only counts if the week was judged.
    assert not unjudged


def test_a_thirty_percent_price_rise_fires_on_every_product_week(sales, config, week_ends):
    by_product, _, _ = sales
    # The comparisons are OR-ed, so the weekly one firing alone proves the gate fires.
    weekly_only = replace(config, comparisons=tuple(c for c in config.comparisons if c.name == "weekly"))
    assert weekly_only.comparisons, "params.yaml: drift.comparisons has no 'weekly' comparison"
    missed = []
    for sc in BEST_SELLERS:
        rows = by_product[sc]
        for end in week_ends:
            in_current_week = (rows[DATE_COLUMN] >= end - pd.Timedelta(weeks=1)) & (rows[DATE_COLUMN] < end)
            raised = rows.assign(unit_price=rows["unit_price"].where(~in_current_week, rows["unit_price"] * PRICE_RISE))
            result = _check(raised, sc, weekly_only, end, sales)
            if not (result["drift_detected"] and result["columns"]["unit_price"]["drifted"]):
                missed.append((sc, _monday(end), result["status"]))
    n_cases = len(BEST_SELLERS) * len(week_ends)
    print(f"\n30 % price rise: fired on {n_cases - len(missed)}/{n_cases}; missed {missed}")
    assert not missed


def test_all_unregistered_buyers_gone_fires_within_four_weeks(sales, config, week_ends):
    by_product, _, _ = sales
    weeks_to_fire, missed = {}, []
    for sc in BEST_SELLERS:
        rows = by_product[sc]
        for start_week in MIX_CHANGE_START_WEEKS:
            change_start = week_ends[start_week] - pd.Timedelta(weeks=1)
            changed = rows.loc[~((rows[DATE_COLUMN] >= change_start) & (rows["is_registered"] == 0))]
            for weeks_since_change in range(1, WEEKS_TO_CATCH_MIX_CHANGE + 1):
                end = week_ends[start_week + weeks_since_change - 1]
                if _check(changed, sc, config, end, sales)["drift_detected"]:
                    weeks_to_fire[(sc, change_start.date())] = weeks_since_change
                    break
            else:
                missed.append((sc, change_start.date()))
    n_cases = len(BEST_SELLERS) * len(MIX_CHANGE_START_WEEKS)
    print(
        f"\nunregistered buyers gone: fired within {WEEKS_TO_CATCH_MIX_CHANGE} weeks on {len(weeks_to_fire)}/{n_cases}; "
        f"weeks to fire: {sorted(weeks_to_fire.values())}; missed {missed}"
    )
    assert not missed
