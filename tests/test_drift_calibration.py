"""The drift gate's defaults, proven on the real data.

The five best sellers plus the best sellers whose list price changed during the year (17
products) over the last 16 complete weeks of 2011, with the ``drift`` section of
``params.yaml`` as it stands. Two signals: a sudden break (``weekly``: the last week against
the 12 before; ``monthly``: the customer mix of the last 4 weeks against the 12 before) and a
stale training window (``training``: the last 4 weeks against the train split preprocess
would cut from the data known then). Drift is judged given the price (``price_to_list``, and
references kept to the current list price): a list-price change the retailer made is an event.

- ordinary product-weeks: on the five best sellers at most 1 in 10 raises either signal; over
  all 17 the stale-window signal stays at most 1 in 10 and the sudden break at most 15 in 100
  (one real event: the jumbo bags' buyers shifted in late August); no product-week drifts on
  its price given the list price; every list-price change in the windows is recorded as an
  event (85099B's £1.95 -> £2.08 in April every week);
- a list-price rise (10 % or 30 %) in the current week, or from four weeks ago, is an event
  (pending, then lasting) and fires the gate no more often than the same weeks unaltered;
- a promotion off the list (40 % of the lines 20 % off while the list price holds: the discount
  schedule drifting), in the current week: the weekly comparison fires on at least a third of
  the product-weeks (one week's ~50 lines against p < 1e-4); from four weeks ago: the gate
  fires on most;
- a 20 % change of the customer mix (a fifth of the registered buyers' lines replaced by
  unregistered buyers' lines, from four weeks ago): the gate fires on most (above one half).

The data comes from the real ETL run on the bundled raw file. ``pytest -m slow -s
tests/test_drift_calibration.py`` prints the table.
"""
from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import numpy as np
import pandas as pd
import polars as pl
import pytest

from pricing.drift import (
    DATE_COLUMN,
    PRICE_TO_LIST,
    STATUS_DRIFT,
    STATUS_INSUFFICIENT,
    DriftConfig,
    check_drift,
    current_window_end,
)
from pricing.etl import CleaningRules, run_etl
from pricing.layout import Layout, load_params
from pricing.raw_data import load_raw
from pricing.split import INVOICE_COLUMN, SplitConfig

pytestmark = pytest.mark.slow

BEST_SELLERS = ("85123A", "85099B", "22423", "47566", "20725")
# Best sellers whose list price changed during 2011 (85099B and 47566 among the five too).
PRICE_CHANGERS = ("85099B", "47566", "22386", "21931", "22411", "82482", "22077", "22577", "84596B", "22578",
                  "84596F", "21932", "21992", "21993")
PRODUCTS = tuple(dict.fromkeys(BEST_SELLERS + PRICE_CHANGERS))
# Its list price rose £1.95 -> £2.08 in April 2011 (in the bundled data): inside its training window.
LIST_PRICE_CHANGED = "85099B"
N_WEEKS = 16
MAX_ORDINARY_ALARM_RATE = 0.1
ALL_PRODUCTS_ALARM_RATE = 0.15
MOST = 0.5
SHIFT_ONSET_WEEKS = 4
MIX_SHARE = 0.2
PROMOTED_SHARE, PROMOTION = 0.4, 0.2
SEED = 0
SUDDEN, STALE = "sudden_break", "stale_training_window"
# The real ETL behind `sales` takes seconds: the tests spread over `make test`'s workers, except
# the list-price rises, which share the 40 Evidently runs of `unaltered` (tests/conftest.py).
SPREAD_OVER_WORKERS = True


@pytest.fixture(scope="module")
def params() -> dict:
    return load_params(Layout().root)


@pytest.fixture(scope="module")
def config(params) -> DriftConfig:
    return DriftConfig.from_params(params["drift"])


@pytest.fixture(scope="module")
def split(params) -> SplitConfig:
    return SplitConfig.from_params(params["split"])


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
        processed.filter(pl.col("stockcode").is_in(PRODUCTS))
        .select("stockcode", INVOICE_COLUMN, DATE_COLUMN, *config.source_columns)
        .to_pandas()
    )
    by_product = {
        sc: rows.sort_values(DATE_COLUMN, kind="stable").reset_index(drop=True) for sc, rows in best.groupby("stockcode")
    }
    assert set(by_product) == set(PRODUCTS)
    return by_product, pd.Timestamp(data_start), pd.Timestamp(data_end)


@pytest.fixture(scope="module")
def week_ends(sales) -> list[pd.Timestamp]:
    """Exclusive ends (Mondays) of the last 16 complete weeks, oldest first."""
    _, _, data_end = sales
    last = current_window_end(data_end)
    return [last - pd.Timedelta(weeks=k) for k in reversed(range(N_WEEKS))]


def _check(rows, stockcode, config, split, week_end, sales):
    _, data_start, data_end = sales
    as_of = (week_end - timedelta(days=1)).date()  # the Sunday that closes the week
    return check_drift(
        rows, stockcode, replace(config, as_of=as_of), data_start=data_start, data_end=data_end, split=split
    ).result


def _only(config: DriftConfig, *names: str) -> DriftConfig:
    chosen = tuple(c for c in config.comparisons if c.name in names)
    assert len(chosen) == len(names), f"params.yaml: drift.comparisons lacks one of {names}"
    return replace(config, comparisons=chosen)


def customer_mix_change(rows: pd.DataFrame, onset: pd.Timestamp, share: float, rng) -> pd.DataFrame:
    """From ``onset``, a ``share`` of the lines become unregistered buyers' lines: registered
    lines drawn at random take the values of unregistered lines of the same period (price,
    quantity, hour, ... as those buyers really buy), keeping their own dates and invoices."""
    changed = rows.copy()
    later = changed.index[changed[DATE_COLUMN] >= onset]
    registered = later[changed.loc[later, "is_registered"] == 1]
    unregistered = later[changed.loc[later, "is_registered"] == 0]
    n = min(int(round(share * len(later))), len(registered))
    if n == 0 or len(unregistered) == 0:
        return changed
    targets = rng.choice(registered, size=n, replace=False)
    sources = rng.choice(unregistered, size=n, replace=True)
    columns = [c for c in changed.columns if c not in ("stockcode", INVOICE_COLUMN, DATE_COLUMN)]
    changed.loc[targets, columns] = changed.loc[sources, columns].to_numpy()
    return changed


def test_the_weeks_are_the_last_sixteen_complete_weeks_of_2011(week_ends):
    assert week_ends[-1] == pd.Timestamp("2011-12-05")  # the data ends Friday 9 December
    assert week_ends[0] == pd.Timestamp("2011-08-22")


def test_ordinary_weeks(sales, config, split, week_ends):
    by_product, _, _ = sales
    results = [(sc, end, _check(by_product[sc], sc, config, split, end, sales)) for sc in PRODUCTS for end in week_ends]
    judged = [(sc, end, r) for sc, end, r in results if r["status"] != STATUS_INSUFFICIENT]
    unjudged = sorted({sc for sc, _, r in results if r["status"] == STATUS_INSUFFICIENT})
    sudden = [(sc, str(end.date())) for sc, end, r in judged if r["signals"][SUDDEN] == STATUS_DRIFT]
    stale = [(sc, str(end.date())) for sc, end, r in judged if r["signals"][STALE] == STATUS_DRIFT]
    by_price = [(sc, str(end.date()), c) for sc, end, r in judged for name, comparison in r["comparisons"].items()
                for c, detail in comparison["columns"].items() if detail["drifted"] and c == PRICE_TO_LIST]
    events = {}
    for sc, _, r in results:
        events.setdefault(sc, set()).update((e["week"], e["old_price"], e["new_price"]) for e in r["events"])
    n = len(judged)
    print(
        f"\nordinary product-weeks ({len(PRODUCTS)} products x {N_WEEKS} weeks, {n} judged): sudden break "
        f"{_rate(len(sudden), n)} {sudden}; stale training window {_rate(len(stale), n)} {stale}; "
        f"{PRICE_TO_LIST} drifted: {by_price}; some weeks not judged (too few lines): {unjudged}"
    )
    print("list-price events seen: " + "; ".join(f"{sc} {sorted(found)}" for sc, found in events.items() if found))
    assert not [sc for sc in BEST_SELLERS if sc in unjudged]  # the five best sellers are judged every week
    five = [case for case in judged if case[0] in BEST_SELLERS]
    assert sum(r["signals"][SUDDEN] == STATUS_DRIFT for _, _, r in five) <= MAX_ORDINARY_ALARM_RATE * len(five)
    assert sum(r["signals"][STALE] == STATUS_DRIFT for _, _, r in five) <= MAX_ORDINARY_ALARM_RATE * len(five)
    # Over all 17, the sudden-break alarms are mostly one real event: who buys the jumbo bags
    # (85099B, 22386, 21931, 22411) shifted in late August (registered share ~0.55 -> ~0.8, no
    # list-price change then), caught by the monthly comparison on all four.
    assert len(sudden) <= ALL_PRODUCTS_ALARM_RATE * n
    assert len(stale) <= MAX_ORDINARY_ALARM_RATE * n
    assert not by_price  # no product-week drifts on its price given the list price
    for sc, end, r in results:
        if sc == LIST_PRICE_CHANGED:
            assert ("2011-04-04", 1.95, 2.08) in {(e["week"], e["old_price"], e["new_price"]) for e in r["events"]}
            assert not r["comparisons"]["training"]["columns"][PRICE_TO_LIST]["drifted"], (sc, end)
    assert all(events[sc] for sc in PRICE_CHANGERS if sc != "47566")  # 47566 changed in February, before the windows


def price_rise(rows: pd.DataFrame, onset: pd.Timestamp, factor: float) -> pd.DataFrame:
    """The retailer's list-price rise: every line from ``onset`` on."""
    return rows.assign(unit_price=rows["unit_price"].where(rows[DATE_COLUMN] < onset, rows["unit_price"] * factor))


def promotion_off_the_list(rows: pd.DataFrame, onset: pd.Timestamp, share: float, discount: float, rng) -> pd.DataFrame:
    """The discount schedule drifting: from ``onset``, a ``share`` of the lines (drawn at random)
    sell ``discount`` below their price while the list price (the registered buyers' most common
    price) holds."""
    later = rows.index[rows[DATE_COLUMN] >= onset]
    promoted = rng.choice(later, size=int(round(share * len(later))), replace=False)
    changed = rows.copy()
    changed.loc[promoted, "unit_price"] = changed.loc[promoted, "unit_price"] * (1 - discount)
    return changed


def _rate(hits: int, cases: int) -> str:
    return f"{hits}/{cases} ({hits / cases:.0%})"


def _shifted(sales, config, split, weeks, change, onset_weeks) -> dict[str, int]:
    by_product, _, _ = sales
    fired = {SUDDEN: 0, STALE: 0, "gate": 0, "events": 0, "cases": 0}
    for sc in BEST_SELLERS:
        for end in weeks:
            result = _check(change(by_product[sc], end - pd.Timedelta(weeks=onset_weeks)), sc, config, split, end, sales)
            fired[SUDDEN] += result["signals"].get(SUDDEN) == STATUS_DRIFT
            fired[STALE] += result["signals"].get(STALE) == STATUS_DRIFT
            fired["gate"] += result["drift_detected"]
            fired["events"] += bool(result["events"])
            fired["cases"] += 1
    return fired


@pytest.fixture(scope="module")
def shifted_weeks(week_ends):
    """Every other week of the sixteen: enough cases for a rate at half the Evidently runs."""
    return week_ends[1::2]


@pytest.fixture(scope="module")
def unaltered(sales, config, split, shifted_weeks) -> dict[str, int]:
    return _shifted(sales, config, split, shifted_weeks, lambda rows, onset: rows, 0)


@pytest.mark.xdist_group("test_drift_calibration-unaltered")
@pytest.mark.parametrize(("factor", "onset_weeks"), [(1.1, 1), (1.3, 1), (1.3, SHIFT_ONSET_WEEKS)])
def test_a_list_price_rise_is_an_event_not_drift(sales, config, split, shifted_weeks, unaltered, factor, onset_weeks):
    ordinary = unaltered
    fired = _shifted(sales, config, split, shifted_weeks, lambda rows, onset: price_rise(rows, onset, factor), onset_weeks)
    n = fired["cases"]
    print(f"\n{factor - 1:.0%} list-price rise from {onset_weeks} week(s) ago: recorded as an event "
          f"{_rate(fired['events'], n)}; gate {_rate(fired['gate'], n)} (sudden {fired[SUDDEN]}, stale {fired[STALE]}); "
          f"the same weeks unaltered {_rate(ordinary['gate'], n)}")
    assert fired["events"] == n
    assert fired["gate"] <= ordinary["gate"]


def test_a_promotion_off_the_list_in_the_current_week_fires_the_weekly_comparison(sales, config, split, shifted_weeks):
    rng = np.random.default_rng(SEED)
    weekly = _only(config, "weekly")
    change = lambda rows, onset: promotion_off_the_list(rows, onset, PROMOTED_SHARE, PROMOTION, rng)  # noqa: E731
    fired = _shifted(sales, weekly, split, shifted_weeks, change, 1)
    n = fired["cases"]
    print(f"\n{PROMOTED_SHARE:.0%} of the lines {PROMOTION:.0%} off, the list price holding, in the current week: "
          f"weekly fires {_rate(fired['gate'], n)}")
    # One week of ~50 lines against p < 1e-4 (the threshold that keeps ordinary weeks quiet):
    # a third at least; the same promotion four weeks on is caught on most (the test below).
    assert fired["gate"] >= n / 3


def test_a_promotion_off_the_list_from_four_weeks_ago_fires_the_gate(sales, config, split, shifted_weeks):
    rng = np.random.default_rng(SEED)
    change = lambda rows, onset: promotion_off_the_list(rows, onset, PROMOTED_SHARE, PROMOTION, rng)  # noqa: E731
    fired = _shifted(sales, config, split, shifted_weeks, change, SHIFT_ONSET_WEEKS)
    n = fired["cases"]
    print(f"\n{PROMOTED_SHARE:.0%} of the lines {PROMOTION:.0%} off from {SHIFT_ONSET_WEEKS} weeks ago: sudden break "
          f"{_rate(fired[SUDDEN], n)}, stale training window {_rate(fired[STALE], n)}, gate {_rate(fired['gate'], n)}")
    assert fired["gate"] > MOST * n


def test_a_fifth_of_the_customer_mix_changing_four_weeks_ago(sales, config, split, shifted_weeks):
    rng = np.random.default_rng(SEED)
    mix = _only(config, "monthly", "training")
    fired = _shifted(sales, mix, split, shifted_weeks, lambda rows, onset: customer_mix_change(rows, onset, MIX_SHARE, rng),
                     SHIFT_ONSET_WEEKS)
    n = fired["cases"]
    print(
        f"\n{MIX_SHARE:.0%} of lines from registered to unregistered buyers, from {SHIFT_ONSET_WEEKS} weeks ago: "
        f"monthly (sudden break) {_rate(fired[SUDDEN], n)}, stale training window {_rate(fired[STALE], n)}, "
        f"gate {_rate(fired['gate'], n)}"
    )
    assert fired["gate"] > MOST * n
