"""Hand-made sales lines in the canonical (post-load) schema, for domain tests."""
from __future__ import annotations

from datetime import datetime

import polars as pl

from pricing.raw_data import RAW_SCHEMA


def sale(
    invoice: str = "500001",
    stockcode: str = "P1",
    quantity: int = 1,
    when: str = "2011-01-03 10:00",
    price: float = 1.0,
    customer: int | None = 12345,
    country: str = "United Kingdom",
    description: str | None = "A PRODUCT",
) -> dict:
    return {
        "invoice_no": invoice,
        "stockcode": stockcode,
        "description": description,
        "quantity": quantity,
        "invoice_date": datetime.fromisoformat(when),
        "unit_price": price,
        "customer_id": customer,
        "country": country,
    }


def sales(*lines: dict) -> pl.DataFrame:
    return pl.DataFrame(list(lines), schema=RAW_SCHEMA)
