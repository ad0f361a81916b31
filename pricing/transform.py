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


def build_transformer(numeric: Sequence[str], categorical: Sequence[str]) -> ColumnTransformer:
    numeric_pipeline = Pipeline([("scale", StandardScaler())])
    categorical_pipeline = Pipeline(
        [
            ("as_int", FunctionTransformer(as_int64, feature_names_out="one-to-one")),
            ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False, dtype=np.float64)),
        ]
    )
    transformer = ColumnTransformer(
        [("numeric", numeric_pipeline, list(numeric)), ("categorical", categorical_pipeline, list(categorical))],
        remainder="drop",
        verbose_feature_names_out=False,
    )
    return transformer.set_output(transform="pandas")


def check_feature_columns(frame: pd.DataFrame, numeric: Sequence[str], categorical: Sequence[str]) -> None:
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


def fit_transformer(train: pd.DataFrame, numeric: Sequence[str], categorical: Sequence[str]) -> ColumnTransformer:
    check_feature_columns(train, numeric, categorical)
    return build_transformer(numeric, categorical).fit(train)


def transform(transformer: ColumnTransformer, frame: pd.DataFrame) -> pd.DataFrame:
    """Model input as float64 columns named by ``transformer.get_feature_names_out()``."""
    return transformer.transform(frame).astype("float64")
