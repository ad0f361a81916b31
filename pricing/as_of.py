"""``as_of``: the one cut-off every stage applies (params.yaml's top-level ``as_of``).

A stage run as of a day sees only the lines dated on or before that day, so a run as of a past
Monday is what the lineage would have done then: a true backtest.
"""
from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from pricing.errors import DataValidationError

PARAM = "as_of"


def parse_as_of(value: Any, name: str = PARAM) -> date | None:
    """A date from params (YAML reads ``2011-07-31`` as a date; a string works too), or None."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise DataValidationError(f"{name} must be an ISO date (YYYY-MM-DD) or null, got {value!r}") from None


def horizon(value: Any) -> datetime | None:
    """The first instant after ``as_of``'s day: every line before it is known by then."""
    day = parse_as_of(value)
    return None if day is None else datetime(day.year, day.month, day.day) + timedelta(days=1)
