"""Reading a raw sales file (UCI Online Retail schema) into a typed polars frame.

Accepts the bundled parquet, UCI's Excel file, or a CSV export of it. Column names are
normalised to snake_case; the later *Online Retail II* names are accepted as aliases.
Anything missing, empty or mistyped raises ``DataValidationError`` with a message that
names the problem.
"""
from __future__ import annotations

from pathlib import Path

import polars as pl

from pricing.errors import DataValidationError

# Canonical name -> accepted source names (UCI first, then Online Retail II).
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "invoice_no": ("InvoiceNo", "Invoice"),
    "stockcode": ("StockCode",),
    "description": ("Description",),
    "quantity": ("Quantity",),
    "invoice_date": ("InvoiceDate",),
    "unit_price": ("UnitPrice", "Price"),
    "customer_id": ("CustomerID", "Customer ID"),
    "country": ("Country",),
}

RAW_SCHEMA: dict[str, pl.DataType] = {
    "invoice_no": pl.String(),
    "stockcode": pl.String(),
    "description": pl.String(),
    "quantity": pl.Int64(),
    "invoice_date": pl.Datetime("us"),
    "unit_price": pl.Float64(),
    "customer_id": pl.Int64(),
    "country": pl.String(),
}

# Columns that must hold a value on every line; description and customer may be missing.
REQUIRED_VALUES = ("invoice_no", "stockcode", "quantity", "invoice_date", "unit_price", "country")

SUPPORTED_SUFFIXES = (".parquet", ".csv", ".xlsx")


def load_raw(path: Path | str, csv_datetime_format: str = "%m/%d/%Y %H:%M") -> pl.DataFrame:
    """Read ``path`` and return it with canonical column names and types."""
    path = Path(path)
    if not path.exists():
        raise DataValidationError(f"input file not found: {path}")
    if path.is_dir():
        raise DataValidationError(f"input path is a directory, not a file: {path}")
    if path.stat().st_size == 0:
        raise DataValidationError(f"input file is empty: {path}")
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise DataValidationError(
            f"unsupported input type '{suffix}' for {path}: use one of {', '.join(SUPPORTED_SUFFIXES)}"
        )
    frame = _read(path, suffix)
    if frame.height == 0:
        raise DataValidationError(f"input file has no rows: {path}")
    try:
        return coerce_types(normalise_columns(frame), csv_datetime_format)
    except DataValidationError as error:
        raise DataValidationError(f"{path}: {error}") from error


def _read(path: Path, suffix: str) -> pl.DataFrame:
    try:
        if suffix == ".parquet":
            return pl.read_parquet(path)
        if suffix == ".csv":
            # Everything as text: types are checked column by column below, with messages.
            return pl.read_csv(path, infer_schema=False)
        return pl.read_excel(path, engine="calamine")
    except DataValidationError:
        raise
    except Exception as error:  # the readers raise many types; the user needs one line
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DataValidationError(f"cannot read {path} as {suffix[1:]}: {message}") from error


def normalise_columns(frame: pl.DataFrame) -> pl.DataFrame:
    """Rename source columns to canonical names; fail naming every missing column."""
    stripped = {name: name.strip() for name in frame.columns}
    frame = frame.rename(stripped)
    renames: dict[str, str] = {}
    missing: list[str] = []
    for canonical, aliases in COLUMN_ALIASES.items():
        found = next((alias for alias in (canonical, *aliases) if alias in frame.columns), None)
        if found is None:
            missing.append(aliases[0])
        else:
            renames[found] = canonical
    if missing:
        raise DataValidationError(
            f"missing column(s): {', '.join(missing)} (found: {', '.join(frame.columns)})"
        )
    return frame.rename(renames).select(list(COLUMN_ALIASES))


def coerce_types(frame: pl.DataFrame, csv_datetime_format: str) -> pl.DataFrame:
    """Cast every column to ``RAW_SCHEMA``; name each column whose values do not fit."""
    problems: list[str] = []
    columns: list[pl.Series] = []
    for name, dtype in RAW_SCHEMA.items():
        source = frame.get_column(name)
        converted = _convert(source, dtype, csv_datetime_format)
        bad = source.is_not_null() & converted.is_null()
        if source.dtype == pl.String:
            bad = bad & (source.str.strip_chars() != "")
        n_bad = int(bad.sum())
        if n_bad:
            example = source.filter(bad).head(1).to_list()[0]
            problems.append(f"{name}: {n_bad} value(s) not {dtype} (e.g. {example!r})")
        columns.append(converted.alias(name))
    if problems:
        raise DataValidationError("mistyped column(s): " + "; ".join(problems))
    typed = pl.DataFrame(columns)
    require_finite(typed)
    missing_values = [name for name in REQUIRED_VALUES if typed.get_column(name).null_count() == typed.height]
    if missing_values:
        raise DataValidationError(f"column(s) with no values at all: {', '.join(missing_values)}")
    return typed


def require_finite(frame: pl.DataFrame) -> None:
    """Refuse NaN and infinite numbers, naming each column that holds them.

    ``NaN > 0`` is true in polars, so a NaN price passes the cleaning rules and spreads through
    running sums (``customer_spend_before``) into every later line of that customer.
    """
    problems = []
    for name, dtype in frame.schema.items():
        if not dtype.is_float():
            continue
        values = frame.get_column(name)
        non_finite = values.is_nan() | values.is_infinite()
        n_bad = int(non_finite.sum())
        if n_bad:
            examples = sorted({str(v) for v in values.filter(non_finite).head(50).to_list()})
            problems.append(f"{name}: {n_bad} non-finite value(s) ({', '.join(examples)})")
    if problems:
        raise DataValidationError("non-finite number(s) in column(s): " + "; ".join(problems))


def _convert(source: pl.Series, dtype: pl.DataType, datetime_format: str) -> pl.Series:
    if source.dtype == dtype:
        return source
    if source.dtype == pl.String:
        text = source.str.strip_chars()
        text = pl.Series(source.name, text).replace("", None)
        if dtype == pl.Datetime("us"):
            return text.str.strptime(pl.Datetime("us"), datetime_format, strict=False)
        if dtype == pl.Int64():
            # Excel and some exports write whole numbers as 17850.0.
            return _whole_floats_to_int(text.cast(pl.Float64, strict=False))
        return text.cast(dtype, strict=False)
    if dtype == pl.String():
        if source.dtype.is_float():
            return _whole_floats_to_int(source).cast(pl.String)
        return source.cast(pl.String)
    if dtype == pl.Int64() and source.dtype.is_float():
        return _whole_floats_to_int(source)
    if dtype == pl.Datetime("us") and isinstance(source.dtype, pl.Datetime):
        return source.dt.replace_time_zone(None).dt.cast_time_unit("us")
    if dtype == pl.Datetime("us") and source.dtype == pl.Date:
        return source.cast(pl.Datetime("us"))
    return source.cast(dtype, strict=False)


def _whole_floats_to_int(values: pl.Series) -> pl.Series:
    """Floats that are whole numbers become Int64; fractional ones become null (a type error)."""
    frame = pl.DataFrame({"v": values})
    return frame.select(
        pl.when(pl.col("v") == pl.col("v").round(0)).then(pl.col("v")).otherwise(None).cast(pl.Int64)
    ).to_series().alias(values.name)
