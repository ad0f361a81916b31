"""The drift gate's defaults, proven on the real data.

The five best sellers over the last 16 complete weeks of 2011, with the ``drift`` section of
``params.yaml`` as it stands. Two signals: a sudden break (``weekly``: the last week against
the 12 before; ``monthly``: the customer mix of the last 4 weeks against the 12 before) and a
stale training window (``training``: the last 4 weeks against the train split preprocess
would cut from the data known then).

- ordinary product-weeks: at most 1 in 10 raises a sudden-break alarm; the stale-window
  signal stays quiet on the four best sellers whose list price held all year and fires on
  every week of 85099B, whose list price rose from £1.95 to £2.08 in April, inside its
  training window (a real shift, not a false alarm);
- a 30 % price rise in the current week fires the weekly comparison every time; one that
  began four weeks ago fires the gate every time;
- a 10 % price rise and a 20 % change of the customer mix (a fifth of the registered
  buyers' lines replaced by unregistered buyers' lines, from four weeks ago): the detection
  rates are printed and must be "most" (above one half).

The data comes from the real ETL run on the bundled raw file. ~500 Evidently runs: about
four minutes on a 2-core machine. ``pytest -m slow -s tests/test_drift_calibration.py``
prints the table.
"""
from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import numpy as np
import pandas as pd
import polars as pl
import pytest

from pricing.drift import DATE_COLUMN, STATUS_DRIFT, STATUS_INSUFFICIENT, DriftConfig, check_drift, current_window_end
from pricing.etl import CleaningRules, run_etl
from pricing.layout import Layout, load_params
from pricing.raw_data import load_raw
from pricing.split import INVOICE_COLUMN, SplitConfig

pytestmark = pytest.mark.slow

BEST_SELLERS = ("85123A", "85099B", "22423", "47566", "20725")
# Its list price rose £1.95 -> £2.08 in April 2011 (in the bundled data): inside its training window.
LIST_PRICE_CHANGED = "85099B"
N_WEEKS = 16
MAX_ORDINARY_ALARM_RATE = 0.1
MOST = 0.5
SHIFT_ONSET_WEEKS = 4
MIX_SHARE = 0.2
SEED = 0
SUDDEN, STALE = "sudden_break", "stale_training_window"


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
        processed.filter(pl.col("stockcode").is_in(BEST_SELLERS))
        .select("stockcode", INVOICE_COLUMN, DATE_COLUMN, *config.columns)
        .to_pandas()
    )
    by_product = {
        sc: rows.sort_values(DATE_COLUMN, kind="stable").reset_index(drop=True) for sc, rows in best.groupby("stockcode")
    }
    assert set(by_product) == set(BEST_SELLERS)
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


def price_rise(rows: pd.DataFrame, onset: pd.Timestamp, factor: float) -> pd.DataFrame:
    return rows.assign(unit_price=rows["unit_price"].where(rows[DATE_COLUMN] < onset, rows["unit_price"] * factor))


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


def _rate(hits: int, cases: int) -> str:
    return f"{hits}/{cases} ({hits / cases:.0%})"


def test_the_weeks_are_the_last_sixteen_complete_weeks_of_2011(week_ends):
    assert week_ends[-1] == pd.Timestamp("2011-12-05")  # the data ends Friday 9 December
    assert week_ends[0] == pd.Timestamp("2011-08-22")


def test_ordinary_weeks(sales, config, split, week_ends):
    by_product, _, _ = sales
    results = [
        (sc, end, _check(by_product[sc], sc, config, split, end, sales)) for sc in BEST_SELLERS for end in week_ends
    ]
    unjudged = [(sc, str(end.date()), r["reasons"]) for sc, end, r in results if r["status"] == STATUS_INSUFFICIENT]
    sudden = [(sc, str(end.date())) for sc, end, r in results if r["signals"][SUDDEN] == STATUS_DRIFT]
    stale = [(sc, str(end.date())) for sc, end, r in results if r["signals"][STALE] == STATUS_DRIFT]
    steady_stale = [case for case in stale if case[0] != LIST_PRICE_CHANGED]
    changed_stale = [case for case in stale if case[0] == LIST_PRICE_CHANGED]
    any_alarm = [r for _, _, r in results if r["drift_detected"]]
    n = len(results)
    print(
        f"\nordinary product-weeks: sudden break {_rate(len(sudden), n)} {sudden}; "
        f"stale training window {_rate(len(steady_stale), n - N_WEEKS)} on the four with a steady list price, "
        f"{_rate(len(changed_stale), N_WEEKS)} on {LIST_PRICE_CHANGED} (list price rose in April); "
        f"gate fires {_rate(len(any_alarm), n)}; not judged: {unjudged}"
    )
    assert not unjudged  # no alarm only counts if the week was judged
    assert len(sudden) <= MAX_ORDINARY_ALARM_RATE * n
    assert len(steady_stale) <= MAX_ORDINARY_ALARM_RATE * (n - N_WEEKS)
    assert len(changed_stale) == N_WEEKS
    for sc, end, r in results:
        if sc == LIST_PRICE_CHANGED:
            assert r["comparisons"]["training"]["columns"]["unit_price"]["drifted"], (sc, end)


def test_a_thirty_percent_price_rise_in_the_current_week_fires_every_time(sales, config, split, week_ends):
    by_product, _, _ = sales
    weekly = _only(config, "weekly")
    missed = []
    for sc in BEST_SELLERS:
        for end in week_ends:
            raised = price_rise(by_product[sc], end - pd.Timedelta(weeks=1), 1.3)
            result = _check(raised, sc, weekly, split, end, sales)
            if not (result["drift_detected"] and result["columns"]["unit_price"]["drifted"]):
                missed.append((sc, str(end.date()), result["status"]))
    n = len(BEST_SELLERS) * len(week_ends)
    print(f"\n30 % price rise in the current week: weekly fires {_rate(n - len(missed), n)}; missed {missed}")
    assert not missed


@pytest.fixture(scope="module")
def shifted_weeks(week_ends):
    """Every other week of the sixteen: enough cases for a rate at half the Evidently runs."""
    return week_ends[1::2]


def _detections(sales, config, split, weeks, change) -> dict[str, int]:
    by_product, _, _ = sales
    fired = {SUDDEN: 0, STALE: 0, "gate": 0}
    for sc in BEST_SELLERS:
        for end in weeks:
            result = _check(change(by_product[sc], end - pd.Timedelta(weeks=SHIFT_ONSET_WEEKS)), sc, config, split, end, sales)
            fired[SUDDEN] += result["signals"].get(SUDDEN) == STATUS_DRIFT
            fired[STALE] += result["signals"].get(STALE) == STATUS_DRIFT
            fired["gate"] += result["drift_detected"]
    return fired


@pytest.mark.parametrize("factor", [1.1, 1.3])
def test_a_price_rise_that_began_four_weeks_ago(sales, config, split, shifted_weeks, factor):
    fired = _detections(sales, config, split, shifted_weeks, lambda rows, onset: price_rise(rows, onset, factor))
    n = len(BEST_SELLERS) * len(shifted_weeks)
    print(
        f"\n{factor - 1:.0%} price rise from {SHIFT_ONSET_WEEKS} weeks ago: sudden break {_rate(fired[SUDDEN], n)}, "
        f"stale training window {_rate(fired[STALE], n)}, gate {_rate(fired['gate'], n)}"
    )
    assert fired[STALE] > MOST * n
    if factor >= 1.3:
        assert fired["gate"] == n


def test_a_price_rise_of_ten_percent_in_the_current_week(sales, config, split, shifted_weeks):
    by_product, _, _ = sales
    weekly = _only(config, "weekly")
    fired = sum(
        _check(price_rise(by_product[sc], end - pd.Timedelta(weeks=1), 1.1), sc, weekly, split, end, sales)["drift_detected"]
        for sc in BEST_SELLERS
        for end in shifted_weeks
    )
    n = len(BEST_SELLERS) * len(shifted_weeks)
    print(f"\n10 % price rise in the current week: weekly fires {_rate(fired, n)}")
    assert fired > MOST * n


def test_a_fifth_of_the_customer_mix_changing_four_weeks_ago(sales, config, split, shifted_weeks):
    rng = np.random.default_rng(SEED)
    mix = _only(config, "monthly", "training")
    fired = _detections(sales, mix, split, shifted_weeks, lambda rows, onset: customer_mix_change(rows, onset, MIX_SHARE, rng))
    n = len(BEST_SELLERS) * len(shifted_weeks)
    print(
        f"\n{MIX_SHARE:.0%} of lines from registered to unregistered buyers, from {SHIFT_ONSET_WEEKS} weeks ago: "
        f"monthly (sudden break) {_rate(fired[SUDDEN], n)}, stale training window {_rate(fired[STALE], n)}, "
        f"gate {_rate(fired['gate'], n)}"
    )
    assert fired["gate"] > MOST * n
