"""Demand curve, evidence and recommendation (pricing/demand.py) with plain predict callables."""
import numpy as np
import pandas as pd
import polars as pl
import pytest
import torch
from sales_factory import sale, sales

from pricing.demand import (
    INSUFFICIENT_PRICE_VARIATION,
    demand_curve,
    judge_price_response,
    price_evidence,
    price_response,
    reprice,
)
from pricing.errors import DataValidationError
from pricing.features import FEATURE_COLUMNS, PRICE_DERIVED_COLUMNS, add_features
from pricing.model import build_model, hparams_of

COLUMNS = ["list_price", "list_price_to_reference", "product_reference_price", "hour", "is_registered"]
BAND = [-8.0, 0.0]


def weeks(prices_by_week, lines_per_week=3, start="2011-01-03"):
    """list_price and invoice_date of lines, one list price per week."""
    dates, prices = [], []
    for w, price in enumerate(prices_by_week):
        for i in range(lines_per_week):
            dates.append(pd.Timestamp(start) + pd.Timedelta(weeks=w, hours=i))
            prices.append(price)
    return np.array(prices), pd.Series(dates)


def context(n=40, seed=0, reference=2.0):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "list_price": 2.0, "list_price_to_reference": 2.0 / reference, "product_reference_price": reference,
        "hour": rng.integers(8, 18, n).astype(float), "is_registered": (rng.random(n) < 0.7).astype(int),
    })
    return frame


def falling(raw):
    """Demand falling with the list price, rising with the hour: 20 * p^-1.5 * (1 + hour / 20)."""
    return 20.0 * raw[:, 0] ** -1.5 * (1 + raw[:, 3] / 20)


def test_evidence_counts_prices_lines_weeks_and_changes():
    prices, dates = weeks([1.95] * 4 + [2.08] * 6 + [1.95] * 2)
    evidence = price_evidence(prices, dates, min_weeks=2)
    assert evidence.prices == [{"price": 1.95, "lines": 18, "weeks": 6}, {"price": 2.08, "lines": 18, "weeks": 6}]
    assert evidence.n_changes == 2 and evidence.current_price == 1.95 and evidence.n_weeks == 12
    assert evidence.sufficient and evidence.evidenced_prices == [1.95, 2.08]
    single, single_dates = weeks([2.95] * 8)
    assert not price_evidence(single, single_dates).sufficient
    # a price held for one week only is recorded but is no evidence, and no change
    blip, blip_dates = weeks([2.55] + [2.95] * 8 + [3.50] + [2.95] * 2)
    blips = price_evidence(blip, blip_dates, min_weeks=2)
    assert not blips.sufficient and blips.n_changes == 0 and len(blips.prices) == 3


def test_recommendation_maximises_revenue_inside_the_evidence():
    prices, dates = weeks([1.5] * 3 + [2.0] * 3 + [2.5] * 3)
    evidence = price_evidence(prices, dates)
    # elasticity -1.5: revenue falls with price, so the lowest evidenced price wins
    low = price_response(context(), evidence, falling, COLUMNS, n_points=11)
    assert low.recommended_price == pytest.approx(1.5) and low.flags == []
    assert low.elasticity == pytest.approx(-1.5, abs=1e-9)
    # inelastic demand (-0.5): revenue rises with price, yet never beyond the highest evidenced price
    inelastic = price_response(context(), evidence, lambda raw: 20.0 * raw[:, 0] ** -0.5, COLUMNS, n_points=11)
    assert inelastic.recommended_price == pytest.approx(2.5)
    assert inelastic.curve.prices.min() == pytest.approx(1.5) and inelastic.curve.prices.max() == pytest.approx(2.5)
    table = inelastic.table()
    assert table["recommended"].sum() == 1 and table.loc[table["recommended"] == 1, "price"].item() == 2.5
    assert set(table.loc[table["observed"] == 1, "price"]) == {1.5, 2.0, 2.5}


def test_no_list_price_change_recommends_the_current_price_flagged():
    prices, dates = weeks([2.95] * 10)
    response = price_response(context(), price_evidence(prices, dates), lambda raw: 20.0 * raw[:, 0] ** -0.5,
                              COLUMNS, n_points=9, diagnostic_span=0.2)
    assert response.recommended_price == 2.95 and response.flags == [INSUFFICIENT_PRICE_VARIATION]
    # the response is still drawn (to check it), around the current price
    assert response.curve.prices.min() == pytest.approx(2.95 * 0.8) and response.curve.prices.max() == pytest.approx(2.95 * 1.2)
    verdict = judge_price_response(response.summary(), BAND)
    assert verdict["status"] == INSUFFICIENT_PRICE_VARIATION and verdict["passed"] and verdict["reasons"] == []
    assert "no list-price change observed" in verdict["checks"]["elasticity"]["note"]


def test_every_list_price_feature_is_recomputed_and_nothing_else():
    frame = context(reference=2.5)
    moved = reprice(frame, 3.0).to_pandas()
    assert (moved["list_price"] == 3.0).all() and moved["list_price_to_reference"].tolist() == pytest.approx([1.2] * 40)
    untouched = [c for c in frame.columns if c not in PRICE_DERIVED_COLUMNS]
    pd.testing.assert_frame_equal(moved[untouched], frame[untouched])


def test_recomputed_features_at_the_observed_price_equal_the_stored_features():
    lines = add_features(sales(*[
        sale(invoice=str(i), when=f"2011-01-{3 + i:02d} 10:00", price=[2.95, 2.55, 3.1][i % 3], quantity=1 + i,
             customer=None if i % 4 == 0 else 100 + i)
        for i in range(20)
    ]), 30, 365)
    stored = lines.select(FEATURE_COLUMNS)
    again = pl.concat([reprice(stored.slice(i, 1), stored["list_price"][i]) for i in range(stored.height)])
    assert again.equals(stored)


def test_the_curve_of_a_price_monotone_network_never_rises_for_random_contexts():
    torch.manual_seed(0)
    net = build_model(hparams_of(5, [16, 8], [0.0, 0.0], True, price_index=[0, 1], price_units=8)).eval()
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.add_(torch.randn_like(parameter))

    def predict(raw):
        scaled = np.column_stack([np.log1p(raw[:, 0]), raw[:, 1], raw[:, 2], raw[:, 3] / 10, raw[:, 4]])
        return np.exp(net.predict_log(scaled))  # positive, monotone in the network's output

    rng = np.random.default_rng(1)
    for seed in range(5):
        ctx = context(n=50, seed=seed, reference=float(rng.uniform(1, 4)))
        ctx["product_reference_price"] = rng.uniform(1, 4, len(ctx))
        curve = demand_curve(ctx, np.linspace(0.5, 8.0, 40), predict, COLUMNS)
        assert (np.diff(curve.per_line, axis=1) <= 1e-6 * curve.per_line[:, :-1]).all()
        assert curve.largest_rise()["lines_rising"] == 0
        assert (curve.per_line[:, 0] > curve.per_line[:, -1] * 1.01).all()  # a real fall, not a flat line


def test_a_rising_response_fails_with_the_reason_named():
    prices, dates = weeks([1.5] * 3 + [2.5] * 3)
    response = price_response(context(), price_evidence(prices, dates), lambda raw: 5.0 * raw[:, 0], COLUMNS)
    verdict = judge_price_response(response.summary(), BAND)
    assert verdict["status"] == "failed" and not verdict["checks"]["non_increasing"]["passed"]
    assert any("rises with the list price" in r for r in verdict["reasons"])
    assert any("elasticity 1.00" in r for r in verdict["reasons"])


def test_an_implausibly_steep_elasticity_fails():
    prices, dates = weeks([1.5] * 3 + [2.5] * 3)
    response = price_response(context(), price_evidence(prices, dates), lambda raw: 1e4 * raw[:, 0] ** -12.0, COLUMNS)
    verdict = judge_price_response(response.summary(), BAND)
    assert verdict["checks"]["non_increasing"]["passed"] and verdict["status"] == "failed"
    assert verdict["checks"]["elasticity"]["value"] == pytest.approx(-12.0)


def test_predict_is_called_once_and_bad_answers_are_refused():
    calls = []

    def counting(raw):
        calls.append(raw.shape)
        return np.ones(len(raw))

    demand_curve(context(n=7), [1.0, 2.0, 3.0], counting, COLUMNS)
    assert calls == [(21, len(COLUMNS))]
    with pytest.raises(DataValidationError, match="finite values"):
        demand_curve(context(), [1.0, 2.0], lambda raw: np.full(len(raw), np.nan), COLUMNS)
    with pytest.raises(DataValidationError, match="lacks feature column"):
        demand_curve(context(), [1.0], counting, [*COLUMNS, "basket_size"])
    with pytest.raises(DataValidationError, match="positive"):
        demand_curve(context(), [0.0, 1.0], counting, COLUMNS)
