"""The feature transformer: scaling and one-hot encoding, fitted on the training split only.

Categorical columns are cast to integers inside the pipeline, so the encoder sees the same
dtype at fit and at transform time whatever parquet gave back (the tutorial's encoder was fit
on strings and fed integers later, silently zeroing ``is_registered``).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from pricing.errors import DataValidationError

# Row identifiers: kept for lineage, never model input (they would let a model memorise rows).
IDENTIFIER_COLUMNS = ("invoice_no", "customer_id", "stockcode", "invoice_date", "description")


def as_int64(values: pd.DataFrame) -> pd.DataFrame:
    """Categories as int64: one dtype for every source (str '1', int8 1, float 1.0)."""
    return values.apply(lambda column: pd.to_numeric(column, errors="raise").astype("int64"))


def log1p_non_negative(values: pd.DataFrame) -> pd.DataFrame:
    """``log1p`` of non-negative counts and amounts; a negative value is refused, not clipped.

    Heavy-tailed counts (a customer's lines or spend so far, last quantities) span four
    orders of magnitude: standard-scaled, a few customers sit at +20 sd and the bulk of the
    lines in a sliver near the mean. On the log scale they spread like the log1p target.
    """
    frame = values.apply(lambda column: pd.to_numeric(column, errors="raise").astype("float64"))
    negative = [str(name) for name in frame.columns if (frame[name] < 0).any()]
    if negative:
        raise DataValidationError(
            f"log-scaled feature(s) with negative values: {', '.join(negative)} (list them under "
            "features.numeric only)"
        )
    return np.log1p(frame)


def build_transformer(
    numeric: Sequence[str], categorical: Sequence[str], log_scaled: Sequence[str] = ()
) -> ColumnTransformer:
    """Numeric columns standard-scaled (``log_scaled`` ones after ``log1p``), categories one-hot.

    Every feature keeps its name whichever branch transforms it; the output columns are the
    plain numeric ones, then the log-scaled ones, then the one-hot columns
    (``get_feature_names_out()`` gives the order, and the stages record it).
    """
    log_scaled = [name for name in numeric if name in set(log_scaled)]
    plain = [name for name in numeric if name not in set(log_scaled)]
    numeric_pipeline = Pipeline([("scale", StandardScaler())])
    log_pipeline = Pipeline(
        [
            ("log1p", FunctionTransformer(log1p_non_negative, feature_names_out="one-to-one")),
            ("scale", StandardScaler()),
        ]
    )
    categorical_pipeline = Pipeline(
        [
            ("as_int", FunctionTransformer(as_int64, feature_names_out="one-to-one")),
            ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False, dtype=np.float64)),
        ]
    )
    branches = [("numeric", numeric_pipeline, plain)]
    if log_scaled:
        branches.append(("log_numeric", log_pipeline, log_scaled))
    branches.append(("categorical", categorical_pipeline, list(categorical)))
    transformer = ColumnTransformer(branches, remainder="drop", verbose_feature_names_out=False)
    return transformer.set_output(transform="pandas")


def check_feature_columns(
    frame: pd.DataFrame, numeric: Sequence[str], categorical: Sequence[str], log_scaled: Sequence[str] = ()
) -> None:
    not_numeric = [name for name in log_scaled if name not in numeric]
    if not_numeric:
        raise DataValidationError(
            f"log-scaled feature(s) not listed under features.numeric: {', '.join(not_numeric)}"
        )
    identifiers = [name for name in (*numeric, *categorical) if name in IDENTIFIER_COLUMNS]
    if identifiers:
        raise DataValidationError(f"identifier column(s) cannot be model features: {', '.join(identifiers)}")
    missing = [name for name in (*numeric, *categorical) if name not in frame.columns]
    if missing:
        raise DataValidationError(f"feature column(s) not in the processed data: {', '.join(missing)}")
    overlap = set(numeric) & set(categorical)
    if overlap:
        raise DataValidationError(f"feature(s) listed as both numeric and categorical: {', '.join(sorted(overlap))}")
    with_nulls = [name for name in (*numeric, *categorical) if frame[name].isna().any()]
    if with_nulls:
        raise DataValidationError(f"feature column(s) with missing values: {', '.join(with_nulls)}")


def fit_transformer(
    train: pd.DataFrame, numeric: Sequence[str], categorical: Sequence[str], log_scaled: Sequence[str] = ()
) -> ColumnTransformer:
    """The transformer fitted on ``train``; ``log_scaled`` (a subset of ``numeric``) get ``log1p`` first."""
    check_feature_columns(train, numeric, categorical, log_scaled)
    return build_transformer(numeric, categorical, log_scaled).fit(train)


def transform(transformer: ColumnTransformer, frame: pd.DataFrame) -> pd.DataFrame:
    """Model input as float64 columns named by ``transformer.get_feature_names_out()``."""
    return transformer.transform(frame).astype("float64")
