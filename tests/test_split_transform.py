import numpy as np
import pandas as pd
import pytest
from sales_factory import sale, sales

from pricing.errors import DataValidationError
from pricing.features import add_features
from pricing.split import split_sizes, time_ordered_split
from pricing.transform import fit_transformer, transform


@pytest.mark.parametrize(
    "n, expected",
    [(2320, (1392, 464, 464)), (5000, (4000, 500, 500)), (10, (6, 2, 2)), (5, (3, 1, 1))],
)
def test_split_sizes_follow_fraction_and_cap(n, expected):
    sizes = split_sizes(n, 0.2, 500, 0.2, 500)
    assert (sizes.train, sizes.val, sizes.test) == expected


@pytest.mark.parametrize("n, val_fraction, message", [(3, 0.2, "too few"), (100, 0.0, "between 0 and 1"), (100, 0.8, "leave lines")])
def test_bad_split_requests_are_rejected(n, val_fraction, message):
    with pytest.raises(DataValidationError, match=message):
        split_sizes(n, val_fraction, 500, 0.2, 500)


def test_split_is_time_ordered_and_complete():
    days = [f"2011-01-{day:02d} 10:00" for day in (9, 3, 7, 1, 5, 2, 8, 4, 6, 10)]
    frame = sales(*(sale(invoice=str(i), when=when) for i, when in enumerate(days)))
    parts = time_ordered_split(frame, split_sizes(frame.height, 0.2, 500, 0.2, 500))
    assert parts["train"]["invoice_date"].max() <= parts["val"]["invoice_date"].min()
    assert parts["val"]["invoice_date"].max() <= parts["test"]["invoice_date"].min()
    assert sum(part.height for part in parts.values()) == frame.height
    assert parts["test"]["invoice_no"].to_list() == ["0", "9"]


def product_lines(n: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    lines = [
        sale(
            invoice=str(i),
            when=f"2011-{1 + i // 28:02d}-{1 + i % 28:02d} {8 + i % 9:02d}:00",
            quantity=int(rng.integers(1, 30)),
            price=float(rng.choice([1.25, 2.55, 2.95])),
            customer=None if i % 3 == 0 else 12000 + i % 7,
            country="France" if i % 5 == 0 else "United Kingdom",
        )
        for i in range(n)
    ]
    return add_features(sales(*lines), 30, 365).to_pandas()


NUMERIC = ["list_price", "list_price_to_reference", "customer_lines_before", "hour"]
CATEGORICAL = ["day_of_week", "is_registered", "is_uk"]


def test_encodings_survive_a_parquet_dtype_round_trip(tmp_path):
    train = product_lines()
    transformer = fit_transformer(train, NUMERIC, CATEGORICAL)
    # What a later stage reads back may carry other dtypes (strings, floats) for categories.
    path = tmp_path / "x.parquet"
    train.assign(is_registered=train["is_registered"].astype(str), is_uk=train["is_uk"].astype(float)).to_parquet(path)
    reread = pd.read_parquet(path)
    out = transform(transformer, reread)
    for source in (*NUMERIC, *CATEGORICAL):
        columns = [name for name in out.columns if name == source or name.startswith(f"{source}_")]
        assert columns, source
        if train[source].nunique() > 1:
            for column in columns:
                assert out[column].nunique() > 1, f"{column} is constant though {source} varies"
    np.testing.assert_allclose(out.to_numpy(), transform(transformer, train).to_numpy())


def test_transformer_is_fit_on_train_only():
    lines = product_lines(90)
    train, later = lines.iloc[:60], lines.iloc[60:]
    transformer = fit_transformer(train, NUMERIC, CATEGORICAL)
    scaler = transformer.named_transformers_["numeric"].named_steps["scale"]
    np.testing.assert_allclose(scaler.mean_, train[NUMERIC].mean().to_numpy())
    assert not np.allclose(scaler.mean_, lines[NUMERIC].mean().to_numpy())
    assert transform(transformer, later).shape[0] == 30


def test_identifiers_and_bad_features_are_refused():
    lines = product_lines()
    with pytest.raises(DataValidationError, match="not in the processed data: nonsense"):
        fit_transformer(lines, [*NUMERIC, "nonsense"], CATEGORICAL)
    with pytest.raises(DataValidationError, match="both numeric and categorical: is_uk"):
        fit_transformer(lines, [*NUMERIC, "is_uk"], CATEGORICAL)
    with pytest.raises(DataValidationError, match="identifier column.*: customer_id"):
        fit_transformer(lines, [*NUMERIC, "customer_id"], CATEGORICAL)
    lines.loc[3, "hour"] = np.nan
    with pytest.raises(DataValidationError, match="missing values: hour"):
        fit_transformer(lines, NUMERIC, CATEGORICAL)


LOG_SCALED = ["customer_lines_before", "list_price"]


def test_log_scaled_features_are_log1p_then_standardised_on_train():
    lines = product_lines(90)
    train, later = lines.iloc[:60], lines.iloc[60:]
    transformer = fit_transformer(train, NUMERIC, CATEGORICAL, log_scaled=LOG_SCALED)
    plain = fit_transformer(train, NUMERIC, CATEGORICAL)
    out, out_plain = transform(transformer, later), transform(plain, later)
    # same feature names either way (only the order moves: plain numeric, log-scaled, one-hot)
    assert sorted(out.columns) == sorted(out_plain.columns)
    assert list(out.columns[:4]) == ["list_price_to_reference", "hour", "list_price", "customer_lines_before"]
    for name in LOG_SCALED:
        logged = np.log1p(train[name].astype(float))
        expected = (np.log1p(later[name].astype(float)) - logged.mean()) / logged.std(ddof=0)
        np.testing.assert_allclose(out[name].to_numpy(), expected.to_numpy(), rtol=1e-10)
    for name in set(out.columns) - set(LOG_SCALED):
        np.testing.assert_allclose(out[name].to_numpy(), out_plain[name].to_numpy())


def test_log_scaled_transformer_survives_a_parquet_dtype_round_trip(tmp_path):
    train = product_lines()
    transformer = fit_transformer(train, NUMERIC, CATEGORICAL, log_scaled=LOG_SCALED)
    path = tmp_path / "x.parquet"
    train.assign(
        is_registered=train["is_registered"].astype(str),
        is_uk=train["is_uk"].astype(float),
        customer_lines_before=train["customer_lines_before"].astype("int32"),
    ).to_parquet(path)
    reread = pd.read_parquet(path)
    np.testing.assert_allclose(transform(transformer, reread).to_numpy(), transform(transformer, train).to_numpy())
    assert (transform(transformer, reread).dtypes == "float64").all()


def test_log_scaling_refuses_negative_values_and_unlisted_features():
    lines = product_lines()
    with pytest.raises(DataValidationError, match="not listed under features.numeric: is_uk"):
        fit_transformer(lines, NUMERIC, CATEGORICAL, log_scaled=["is_uk"])
    transformer = fit_transformer(lines, NUMERIC, CATEGORICAL, log_scaled=LOG_SCALED)
    later = lines.assign(customer_lines_before=lines["customer_lines_before"] - 5)
    with pytest.raises(DataValidationError, match="negative values: customer_lines_before"):
        transform(transformer, later)
    with pytest.raises(DataValidationError, match="negative values: customer_lines_before"):
        fit_transformer(later, NUMERIC, CATEGORICAL, log_scaled=LOG_SCALED)
