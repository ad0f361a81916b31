"""The one normalisation of stock codes: the ETL applies it to the data, and every stage that
looks a product up applies it to the stockcode it was given (``85123a`` finds ``85123A``)."""
from __future__ import annotations

import polars as pl


def normalise_stockcodes(codes: pl.Expr) -> pl.Expr:
    """Stock codes compare case- and space-insensitively (`85123a ` is `85123A`)."""
    return codes.str.strip_chars().str.to_uppercase()


def normalise_stockcode(code: str) -> str:
    """One stock code, normalised by the very expression the ETL applies to the data."""
    return pl.select(normalise_stockcodes(pl.lit(str(code), dtype=pl.String))).item()
