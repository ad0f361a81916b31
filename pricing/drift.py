"""Data drift of one product: a reference window against the current window, judged by Evidently.

Windows are whole weeks, Monday 00:00 to the next Monday 00:00, half-open ``[start, end)``.
The current window of every comparison ends where the last complete week ends (or the last
complete week on or before ``as_of``). Its reference is either the run of weeks just before
it (signal ``sudden_break``: data we should not trust yet) or the candidate's training
window, the train split exactly as ``preprocess`` cuts it (signal ``stale_training_window``:
does the data the candidate will serve on still look like what it learned from?).

Each comparison runs Evidently's ``DataDriftPreset`` with every column's test and p-value
threshold pinned, because at our weekly volumes Evidently's automatic choice misses a 30 %
price rise and its distance tests fire on most ordinary weeks
(``tests/test_drift_calibration.py`` measures the pinned tests on the five best sellers). A
comparison drifts when Evidently's own "share of drifted columns" test fails; the product
drifts when any comparison does. A comparison whose windows are too
small or whose current week is not over is not judged: ``insufficient_data``, never drift.
"""
from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
from evidently import DataDefinition, Dataset, Report
from evidently.core.metric_types import render_widgets
from evidently.legacy.calculations.stattests import get_stattest
from evidently.legacy.core import ColumnType
from evidently.legacy.renderers.html_widgets import group_widget, text_widget
from evidently.presets import DataDriftPreset
from scipy import stats

from pricing.as_of import parse_as_of
from pricing.drift_gate import STATUS_DRIFT, STATUS_INSUFFICIENT, STATUS_OK, DriftGate
from pricing.errors import DataValidationError
from pricing.price_response import PRODUCT, WEEK, modal_list_price, price_moves, weekly_panel
from pricing.split import INVOICE_COLUMN, SplitConfig, split_product_lines

DATE_COLUMN = "invoice_date"
# A line's price relative to the list price in effect that week (the evidence's list price,
# pricing/price_response.py): the discount schedule and segment pricing, whatever the list price
# is. A list-price change the retailer made moves unit_price, not this: it is an event.
PRICE_TO_LIST = "price_to_list"
# What the check derives, and the stored columns it derives them from (quantity: the events'
# weekly panel).
DERIVED_COLUMNS = {PRICE_TO_LIST: ("unit_price", "is_registered")}
EVENT_SOURCE_COLUMNS = ("unit_price", "is_registered", "quantity")
EVENT_LASTING, EVENT_PENDING = "lasting", "pending"
# What a comparison's reference is: the weeks just before its current window, or the lines the
# candidate model trains on (the train split as ``preprocess`` cuts it).
REFERENCE_PRECEDING = "preceding_weeks"
REFERENCE_TRAINING = "training_window"
# The question each kind of comparison answers (the verdict's ``signals``).
SIGNAL_OF_REFERENCE = {REFERENCE_PRECEDING: "sudden_break", REFERENCE_TRAINING: "stale_training_window"}

# Evidently stat tests that return a p-value (thresholds and the JSON read one), by the column
# kind they need; the kind decides how Evidently reads the column, so an unknown test is
# refused rather than guessed. Distance tests (wasserstein, jensenshannon, psi) are left out
# on purpose: they fire on most ordinary weeks at our volumes.
NUMERICAL_TESTS = ("ks", "anderson", "cramer_von_mises", "mannw", "t_test")
CATEGORICAL_TESTS = ("chisquare", "z", "fisher_exact", "g_test")

_VALUE_DRIFT_TYPE = "evidently:metric_v2:ValueDrift"
_DRIFTED_COUNT_TYPE = "evidently:metric_v2:DriftedColumnsCount"
_WEEK = pd.Timedelta(days=7)


# -- configuration -----------------------------------------------------------------------
@dataclass(frozen=True)
class WindowComparison:
    """``current_weeks`` of data judged against the ``reference_weeks`` just before them (or,
    with ``reference`` = ``training_window``, against the candidate's training lines), on
    ``columns``; a column drifts when its p-value falls below ``threshold``."""

    name: str
    current_weeks: int
    reference_weeks: int | None
    columns: tuple[str, ...]
    threshold: float
    drift_share: float
    min_current_rows: int
    min_reference_rows: int
    reference: str = REFERENCE_PRECEDING

    @property
    def signal(self) -> str:
        return SIGNAL_OF_REFERENCE[self.reference]


@dataclass(frozen=True)
class DriftConfig:
    """The ``drift`` section of ``params.yaml``, validated."""

    tests: Mapping[str, str]
    comparisons: tuple[WindowComparison, ...]
    gate: str = "block"
    as_of: date | None = None
    policy: DriftGate = field(default_factory=DriftGate)
    # A list-price event, measured as the catalogue's evidence measures a lasting change
    # (price_response_catalogue.min_change / hold_weeks; the stage hands them in).
    event_min_change: float = 0.02
    event_hold_weeks: int = 4

    @property
    def uses_training_window(self) -> bool:
        return any(c.reference == REFERENCE_TRAINING for c in self.comparisons)

    @property
    def columns(self) -> list[str]:
        """Every column some comparison tests, in the order of ``tests``."""
        used = {column for comparison in self.comparisons for column in comparison.columns}
        return [column for column in self.tests if column in used]

    @property
    def source_columns(self) -> list[str]:
        """The stored columns the check reads: the tested ones, what the derived ones come from,
        and what the list-price events need."""
        wanted = [c for c in self.columns if c not in DERIVED_COLUMNS]
        wanted += [s for c in self.columns for s in DERIVED_COLUMNS.get(c, ())] + list(EVENT_SOURCE_COLUMNS)
        return list(dict.fromkeys(wanted))

    @classmethod
    def from_params(cls, section: Mapping[str, Any] | None) -> DriftConfig:
        """Build from the ``drift`` params section; any wrong key raises ``DataValidationError``."""
        if not isinstance(section, Mapping):
            raise DataValidationError("params.yaml: the 'drift' section is missing or not a mapping")
        try:
            policy = DriftGate.from_params(section)
            tests = {str(column): test for column, test in dict(section["tests"]).items()}
            unknown = {c: t for c, t in tests.items() if t not in NUMERICAL_TESTS + CATEGORICAL_TESTS}
            if unknown:
                raise DataValidationError(
                    f"drift.tests: unsupported stat test(s) {unknown}; use one of "
                    f"{NUMERICAL_TESTS} (numeric) or {CATEGORICAL_TESTS} (categorical)"
                )
            comparisons = tuple(
                _comparison_from_params(str(name), spec, tests) for name, spec in dict(section["comparisons"]).items()
            )
            if not comparisons:
                raise DataValidationError("drift.comparisons is empty: define at least one window pair")
            return cls(
                tests=tests,
                comparisons=comparisons,
                gate=policy.gate,
                policy=policy,
                as_of=_as_date(section.get("as_of")),
            )
        except KeyError as error:
            raise DataValidationError(f"params.yaml: drift key {error.args[0]!r} is missing") from None
        except (TypeError, ValueError) as error:
            if isinstance(error, DataValidationError):
                raise
            raise DataValidationError(f"params.yaml: drift section is malformed: {error}") from None


def _comparison_from_params(name: str, spec: Mapping[str, Any], tests: Mapping[str, str]) -> WindowComparison:
    key = f"drift.comparisons.{name}"
    threshold = float(spec["threshold"])
    drift_share = float(spec["drift_share"])
    if not 0 < threshold < 1:
        raise DataValidationError(f"{key}.threshold must be a p-value in (0, 1), got {threshold}")
    if not 0 < drift_share <= 1:
        raise DataValidationError(f"{key}.drift_share must be in (0, 1], got {drift_share}")
    reference = spec.get("reference", REFERENCE_PRECEDING)
    if reference not in SIGNAL_OF_REFERENCE:
        raise DataValidationError(f"{key}.reference must be one of {tuple(SIGNAL_OF_REFERENCE)}, got {reference!r}")
    if reference == REFERENCE_PRECEDING:
        reference_weeks = _positive_int(spec["reference_weeks"], f"{key}.reference_weeks")
    elif spec.get("reference_weeks") is not None:
        raise DataValidationError(f"{key}: reference_weeks has no meaning against the training window; drop it")
    else:
        reference_weeks = None
    columns = tuple(str(column) for column in spec["columns"])
    if not columns:
        raise DataValidationError(f"{key}.columns is empty: name at least one column to test")
    untested = [column for column in columns if column not in tests]
    if untested:
        raise DataValidationError(f"{key}.columns: no stat test in drift.tests for {', '.join(untested)}")
    return WindowComparison(
        name=name,
        current_weeks=_positive_int(spec["current_weeks"], f"{key}.current_weeks"),
        reference_weeks=reference_weeks,
        reference=reference,
        columns=columns,
        threshold=threshold,
        drift_share=drift_share,
        min_current_rows=_positive_int(spec["min_current_rows"], f"{key}.min_current_rows"),
        min_reference_rows=_positive_int(spec["min_reference_rows"], f"{key}.min_reference_rows"),
    )


def _positive_int(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DataValidationError(f"{key} must be a positive integer, got {value!r}")
    return value


def _as_date(value: Any) -> date | None:
    return parse_as_of(value, "drift.as_of")


# -- windows -----------------------------------------------------------------------------
def week_start(moment: pd.Timestamp) -> pd.Timestamp:
    """Monday 00:00 of the week holding ``moment``."""
    day = pd.Timestamp(moment).normalize()
    return day - pd.Timedelta(days=day.dayofweek)


def current_window_end(data_end: pd.Timestamp, as_of: date | None = None) -> pd.Timestamp:
    """End (exclusive, a Monday 00:00) of the last complete week of the data, or of the last
    complete week ending on or before ``as_of`` (a date: the whole day counts).

    A week is complete only once the data reaches its end: the final, partial week of a
    data set would otherwise be judged on a few days (it raised a false day-of-week alarm).
    """
    horizon = pd.Timestamp(data_end)
    if as_of is not None:
        horizon = min(horizon, pd.Timestamp(as_of) + pd.Timedelta(days=1))
    return week_start(horizon)


@dataclass(frozen=True)
class WindowBounds:
    reference_start: pd.Timestamp
    current_start: pd.Timestamp
    current_end: pd.Timestamp


def window_bounds(current_end: pd.Timestamp, comparison: WindowComparison) -> WindowBounds:
    """The weeks of a comparison; against the training window, ``reference_start`` is the
    current window's start too (the reference rows come from the split, not from weeks)."""
    current_start = current_end - comparison.current_weeks * _WEEK
    weeks = comparison.reference_weeks or 0
    return WindowBounds(
        reference_start=current_start - weeks * _WEEK,
        current_start=current_start,
        current_end=current_end,
    )


@dataclass(frozen=True)
class TrainingWindow:
    """The lines the candidate trains on (``rows``), or why they cannot be known (``reason``)."""

    rows: pd.DataFrame | None
    reason: str | None = None


def training_window(rows: pd.DataFrame, split: SplitConfig, horizon: pd.Timestamp) -> TrainingWindow:
    """The train split of the product's lines known before ``horizon``, cut by the very function
    ``preprocess`` uses; with ``horizon`` past the data's end, exactly what preprocess trains on."""
    if INVOICE_COLUMN not in rows.columns:
        raise DataValidationError(f"the training-window comparison needs the {INVOICE_COLUMN} column")
    known = rows.loc[rows[DATE_COLUMN] < horizon]
    lines = pl.DataFrame(
        {
            "_row": known.index.to_numpy(),
            DATE_COLUMN: known[DATE_COLUMN].to_numpy(),
            INVOICE_COLUMN: known[INVOICE_COLUMN].astype(str).to_numpy(),
        }
    )
    try:
        train = split_product_lines(lines, split)["train"]
    except DataValidationError as error:
        return TrainingWindow(None, f"no training window: {error}")
    return TrainingWindow(rows.loc[train.get_column("_row").to_list()])


def rows_between(rows: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    dates = rows[DATE_COLUMN]
    return rows.loc[(dates >= start) & (dates < end)]


# -- one comparison ----------------------------------------------------------------------
@dataclass(frozen=True)
class JudgedWindows:
    """The lines a comparison judged, kept for its Evidently report (``render_report_html``)."""

    comparison: WindowComparison
    reference: pd.DataFrame
    current: pd.DataFrame


@dataclass
class ComparisonOutcome:
    """The JSON-ready verdict of one comparison and, when it was judged, the lines it judged."""

    result: dict[str, Any]
    judged: JudgedWindows | None = None

    @property
    def status(self) -> str:
        return self.result["status"]


def compare_windows(
    rows: pd.DataFrame,
    comparison: WindowComparison,
    config: DriftConfig,
    current_end: pd.Timestamp,
    data_start: pd.Timestamp,
    training: TrainingWindow | None = None,
    price_since: pd.Timestamp | None = None,
) -> ComparisonOutcome:
    """Judge one window pair of one product's ``rows`` with Evidently.

    ``price_since``: the week the list price in effect began (the latest list-price event). Drift
    is what the data does given the price, so when the current window lies wholly at that price
    and the reference reaches back before it, the reference keeps only its lines at that price
    (quantity and who buys answer the price) — if they are enough to judge by
    (``min_reference_rows``). Otherwise (or when the change falls inside the current window) the
    whole reference is compared, and a shift it finds is attributed to the change: recorded
    with its numbers (``list_price_basis``), not drift."""
    bounds = window_bounds(current_end, comparison)
    current = rows_between(rows, bounds.current_start, bounds.current_end)
    unknown_reference = None
    if comparison.reference == REFERENCE_TRAINING:
        if training is None:
            raise ValueError(f"comparison {comparison.name!r} is against the training window: give it")
        unknown_reference = training.reason
        # Lines the candidate trained on that fall in the serving window would compare with themselves.
        trained = training.rows if training.rows is not None else rows.iloc[0:0]
        reference = trained.loc[trained[DATE_COLUMN] < bounds.current_start]
    else:
        reference = rows_between(rows, bounds.reference_start, bounds.current_start)
    price_basis = _at_the_current_price(reference, price_since, bounds, comparison)
    if price_basis["reference"] == "since_the_change":
        reference = reference.loc[reference[DATE_COLUMN] >= price_since]
    if comparison.reference == REFERENCE_TRAINING or price_basis["reference"] == "since_the_change":
        reference_summary = _window_summary(
            _first_or(reference, bounds.current_start), _last_or(reference, bounds.current_start), len(reference)
        )
    else:
        reference_summary = _window_summary(bounds.reference_start, bounds.current_start, len(reference))
    result: dict[str, Any] = {
        "signal": comparison.signal,
        "reference_kind": comparison.reference,
        "status": STATUS_INSUFFICIENT,
        "drift_detected": False,
        "reason": None,
        "threshold": comparison.threshold,
        "drift_share": comparison.drift_share,
        "n_drifted_columns": 0,
        "share_drifted_columns": 0.0,
        "reference": reference_summary,
        "current": _window_summary(bounds.current_start, bounds.current_end, len(current)),
        "list_price_basis": price_basis,
        "columns": {},
    }
    reason = unknown_reference or _insufficiency(bounds, data_start, len(reference), len(current), comparison)
    if reason is not None:
        result["reason"] = reason
        return ComparisonOutcome(result)

    columns = list(comparison.columns)
    judged = JudgedWindows(comparison, reference[columns].reset_index(drop=True), current[columns].reset_index(drop=True))
    drifted_count, drifted_share, comparison_drifted, column_verdicts = _judge(judged, config)
    # Across a list-price change it cannot compare at one price, a shift is the change's own
    # doing as far as this comparison can tell: recorded, not drift.
    explained = comparison_drifted and price_basis["reference"] == "mixed"
    if explained:
        shifted = [c for c in columns if column_verdicts[c]["drifted"]]
        price_basis = {**price_basis, "shift_attributed_to_the_change": shifted}
    result.update(
        status=STATUS_DRIFT if comparison_drifted and not explained else STATUS_OK,
        drift_detected=comparison_drifted and not explained,
        list_price_basis=price_basis,
        n_drifted_columns=drifted_count,
        share_drifted_columns=drifted_share,
        columns={
            column: {
                "test": config.tests[column],
                "statistic": _finite_or_none(_test_statistic(config.tests[column], reference[column], current[column])),
                "p_value": _finite_or_none(column_verdicts[column]["p_value"]),
                "threshold": column_verdicts[column]["threshold"],
                "drifted": column_verdicts[column]["drifted"] and not explained,
            }
            for column in columns
        },
    )
    return ComparisonOutcome(result, judged)


def _at_the_current_price(reference: pd.DataFrame, price_since: pd.Timestamp | None, bounds: WindowBounds,
                          comparison: WindowComparison) -> dict[str, Any]:
    """Which reference lines a comparison judges by, given the list price in effect."""
    if price_since is None or not len(reference) or reference[DATE_COLUMN].min() >= price_since:
        return {"reference": "one_list_price", "since": None}
    since = price_since.date().isoformat()
    if price_since > bounds.current_start:
        return {"reference": "mixed", "since": since, "why": "the list price changed inside the current window"}
    at_price = int((reference[DATE_COLUMN] >= price_since).sum())
    if at_price < comparison.min_reference_rows:
        return {"reference": "mixed", "since": since, "why": f"{at_price} reference lines at the current list price, "
                f"fewer than min_reference_rows={comparison.min_reference_rows}"}
    return {"reference": "since_the_change", "since": since, "lines_before_left_out": len(reference) - at_price}


def _window_summary(start: pd.Timestamp, end: pd.Timestamp, n_rows: int) -> dict[str, Any]:
    return {"start": start.isoformat(), "end": end.isoformat(), "rows": n_rows}


def _first_or(frame: pd.DataFrame, default: pd.Timestamp) -> pd.Timestamp:
    return pd.Timestamp(frame[DATE_COLUMN].min()) if len(frame) else default


def _last_or(frame: pd.DataFrame, default: pd.Timestamp) -> pd.Timestamp:
    return pd.Timestamp(frame[DATE_COLUMN].max()) if len(frame) else default


def _insufficiency(
    bounds: WindowBounds, data_start: pd.Timestamp, n_reference: int, n_current: int, comparison: WindowComparison
) -> str | None:
    # The end of the current window is complete by construction (current_window_end); its
    # start is not when the data begins after it (mid-week).
    if data_start > bounds.current_start:
        return f"current window starts {bounds.current_start.date()}, before the data does ({data_start})"
    if n_current < comparison.min_current_rows:
        return f"current window has {n_current} rows, fewer than min_current_rows={comparison.min_current_rows}"
    if n_reference < comparison.min_reference_rows:
        return f"reference window has {n_reference} rows, fewer than min_reference_rows={comparison.min_reference_rows}"
    return None


def _judge(judged: JudgedWindows, config: DriftConfig) -> tuple[int, float, bool, dict[str, dict[str, Any]]]:
    """The verdicts Evidently's ``DataDriftPreset`` reaches, by its own stat tests, without
    building its report: ``Report.run`` spends ~80 % of its time drawing plotly widgets that
    only the HTML page shows (``render_report_html`` builds them, and checks they agree).

    As the preset does (evidently 0.7.23, pinned): each column is cleaned of infinities and
    nulls and judged by its registered test at the comparison's threshold; the comparison
    drifts when the share of drifted columns is not below ``drift_share`` (the preset's
    ``lt(drift_share)`` test on ``DriftedColumnsCount``). Returns the drifted-columns count,
    its share, whether the comparison drifted, and each column's p-value, threshold and verdict."""
    verdicts = {}
    for column in judged.comparison.columns:
        test = config.tests[column]
        kind = ColumnType.Numerical if test in NUMERICAL_TESTS else ColumnType.Categorical
        reference, current = (frame[column].replace([-np.inf, np.inf], np.nan).dropna()
                              for frame in (judged.reference, judged.current))
        outcome = get_stattest(reference, current, kind, test)(reference, current, kind, judged.comparison.threshold)
        verdicts[column] = {"p_value": float(outcome.drift_score), "threshold": float(outcome.actual_threshold),
                            "drifted": bool(outcome.drifted)}
    count = sum(verdict["drifted"] for verdict in verdicts.values())
    share = count / len(verdicts)
    return count, share, not share < judged.comparison.drift_share, verdicts


def evidently_snapshot(judged: JudgedWindows, config: DriftConfig):
    """Evidently's report of one judged comparison (its widgets are the HTML page's)."""
    comparison, columns = judged.comparison, list(judged.comparison.columns)
    definition = DataDefinition(
        numerical_columns=[c for c in columns if config.tests[c] in NUMERICAL_TESTS],
        categorical_columns=[c for c in columns if config.tests[c] in CATEGORICAL_TESTS],
    )
    preset = DataDriftPreset(
        columns=columns,
        drift_share=comparison.drift_share,
        per_column_method={column: config.tests[column] for column in columns},
        per_column_threshold={column: comparison.threshold for column in columns},
    )
    report = Report([preset], include_tests=True)
    return report.run(
        reference_data=Dataset.from_pandas(judged.reference, data_definition=definition),
        current_data=Dataset.from_pandas(judged.current, data_definition=definition),
    )


def read_snapshot(snapshot: Any) -> tuple[int, float, bool, dict[str, dict[str, Any]]]:
    """A report's counts and verdicts, in the shape of ``_judge``'s: the drifted-columns count,
    its share, whether the share-of-drifted-columns test failed, and each column's p-value,
    threshold and test status."""
    content = snapshot.dict()
    failed_metrics = {
        test["metric_config"]["metric_id"]: test["status"] == "FAIL" for test in content["tests"]
    }
    count_entries = [m for m in content["metrics"] if m["config"]["type"] == _DRIFTED_COUNT_TYPE]
    if len(count_entries) != 1:
        raise RuntimeError(f"expected one DriftedColumnsCount in the Evidently snapshot, got {len(count_entries)}")
    count_entry = count_entries[0]
    verdicts = {
        m["config"]["column"]: {
            "p_value": float(m["value"]),
            "threshold": float(m["config"]["threshold"]),
            "drifted": failed_metrics[m["id"]],
        }
        for m in content["metrics"]
        if m["config"]["type"] == _VALUE_DRIFT_TYPE
    }
    return (
        int(count_entry["value"]["count"]),
        float(count_entry["value"]["share"]),
        failed_metrics[count_entry["id"]],
        verdicts,
    )


def _test_statistic(test: str, reference: pd.Series, current: pd.Series) -> float | None:
    """The test statistic behind Evidently's p-value (Evidently reports only the p-value),
    computed on the same inputs the same way, so a reader sees how large the shift is."""
    if test == "ks":
        return float(stats.ks_2samp(reference, current).statistic)
    if test == "chisquare":
        categories = sorted(set(reference.dropna()) | set(current.dropna()))
        reference_counts = reference.value_counts()
        current_counts = current.value_counts()
        scale = len(current) / len(reference)
        expected = [reference_counts.get(c, 0) * scale for c in categories]
        observed = [current_counts.get(c, 0) for c in categories]
        if any(e == 0 and o > 0 for e, o in zip(expected, observed)):
            return math.inf  # a category the reference never saw
        with_expectation = [(o, e) for o, e in zip(observed, expected) if e > 0]
        return float(sum((o - e) ** 2 / e for o, e in with_expectation))
    return None


def _finite_or_none(value: float | None) -> float | None:
    # JSON has no NaN or Infinity; a p-value of NaN (one category only) or an infinite
    # statistic (a category new in the current window) is written as null.
    return value if value is not None and math.isfinite(value) else None


# -- the list price: what the retailer set, and drift given it ----------------------------
def _event_lines(rows: pd.DataFrame, stockcode: str) -> pl.DataFrame:
    return pl.DataFrame({
        PRODUCT: [stockcode] * len(rows),
        DATE_COLUMN: rows[DATE_COLUMN].to_numpy(),
        **{column: rows[column].to_numpy() for column in EVENT_SOURCE_COLUMNS},
    })


def with_price_to_list(rows: pd.DataFrame, stockcode: str) -> pd.DataFrame:
    """``rows`` with ``price_to_list``: each line's unit price over the list price in effect in its
    week (the weekly panel's weeks and modal price; carried forward over weeks without a
    registered line, back over the weeks before the first one)."""
    lines = _event_lines(rows, stockcode).with_columns(pl.col(DATE_COLUMN).dt.truncate("1w").alias(WEEK))
    by_week = (lines.select(WEEK).unique().sort(WEEK)
               .join(modal_list_price(lines).drop(PRODUCT), on=WEEK, how="left")
               .with_columns(pl.col("list_price").forward_fill().backward_fill()))
    if by_week["list_price"].null_count():
        raise DataValidationError(f"drift check of {stockcode}: no registered-buyer line, so no list price to "
                                  f"judge {PRICE_TO_LIST} against")
    list_price = lines.join(by_week, on=WEEK, how="left", maintain_order="left")["list_price"].to_numpy()
    return rows.assign(**{PRICE_TO_LIST: rows["unit_price"].to_numpy(dtype=float) / list_price})


def list_price_events(rows: pd.DataFrame, stockcode: str, config: DriftConfig, current_end: pd.Timestamp,
                      since: pd.Timestamp, trained_until: pd.Timestamp | None) -> list[dict[str, Any]]:
    """The list-price changes the retailer made from ``since`` to ``current_end``, measured as the
    catalogue's evidence measures them (the weekly panel's list price, pricing/price_response.py):
    ``lasting`` once the new price held ``event_hold_weeks`` sale weeks, ``pending`` while it is
    the price in effect but has not held that long yet; each from the last price that held. A
    move that did not hold and is no longer in effect (a blip) is no event, nor is the return
    from it. ``in_training_window``: the candidate's training lines
    reach the new price."""
    try:
        panel = weekly_panel(_event_lines(rows, stockcode), current_end.to_pydatetime())
    except DataValidationError:
        return []
    events = []
    established = float(panel.sort(WEEK)["list_price"][0]) if panel.height else None
    for move in price_moves(panel, config.event_min_change).iter_rows(named=True):
        lasting = move["held"] >= config.event_hold_weeks
        week = pd.Timestamp(move[WEEK])
        old, new = established, move["new_price"]
        if new == old or not (lasting or move["in_effect"]):
            continue  # back to the price that held before a blip, or a blip itself
        if lasting:
            established = new
        if week < since:
            continue
        kind = EVENT_LASTING if lasting else EVENT_PENDING
        events.append({
            "week": week.date().isoformat(), "old_price": old, "new_price": new, "change": new / old - 1,
            "held_weeks": move["held"], "kind": kind,
            "in_training_window": None if trained_until is None else bool(week <= trained_until),
            "note": (f"list price {old:g} -> {new:g} from the week of {week.date()} ({kind}, held "
                     f"{move['held']} sale weeks): a change the retailer made, not drift"),
        })
    return events


# -- the product -------------------------------------------------------------------------
@dataclass
class DriftCheck:
    """The verdict of every comparison for one product, as JSON (``result``), and the lines
    each judged comparison compared."""

    result: dict[str, Any]
    config: DriftConfig
    judged: dict[str, JudgedWindows] = field(default_factory=dict)

    @property
    def drift_detected(self) -> bool:
        return self.result["drift_detected"]


def check_drift(
    rows: pd.DataFrame,
    stockcode: str,
    config: DriftConfig,
    data_start: pd.Timestamp | None = None,
    data_end: pd.Timestamp | None = None,
    split: SplitConfig | None = None,
) -> DriftCheck:
    """Run every configured comparison on one product's ``rows``.

    ``data_start``/``data_end`` are the first and last moments of the whole data set (the
    product's own first and last sale if not given): a quiet product's last sale says
    nothing about whether the week after it is over. ``split`` (the ``split`` params) cuts
    the training window of the training-window comparison, as ``preprocess`` will; the lines
    it sees are those known by the end of ``as_of``'s day (all of them when ``as_of`` is null).

    The verdict holds no wall-clock time: it is a dependency of ``preprocess``, so the same
    data and params must give the same bytes.
    """
    _validate_rows(rows, stockcode, config)
    # Judged given the price (price_to_list tested), the comparisons keep to the current list
    # price; testing unit_price itself, a list-price change is drift, as it was before events.
    given_the_price = PRICE_TO_LIST in config.columns
    if given_the_price:
        rows = with_price_to_list(rows, stockcode)
    if data_end is None or data_start is None:
        if rows.empty:
            raise DataValidationError(f"stockcode {stockcode}: no rows, and no data span given to place the windows")
        data_start = rows[DATE_COLUMN].min() if data_start is None else data_start
        data_end = rows[DATE_COLUMN].max() if data_end is None else data_end
    data_start, data_end = pd.Timestamp(data_start), pd.Timestamp(data_end)
    current_end = current_window_end(data_end, config.as_of)
    training = None
    if config.uses_training_window:
        if split is None:
            raise ValueError("the drift config compares against the training window: give the split config")
        horizon = data_end + pd.Timedelta(microseconds=1)
        if config.as_of is not None:
            horizon = min(horizon, pd.Timestamp(config.as_of) + pd.Timedelta(days=1))
        training = training_window(rows, split, horizon)

    trained = training.rows if training is not None else None
    known_training = trained is not None and len(trained) > 0
    starts = [window_bounds(current_end, c).reference_start for c in config.comparisons]
    starts += [pd.Timestamp(trained[DATE_COLUMN].min())] if known_training else []
    trained_until = pd.Timestamp(trained[DATE_COLUMN].max()) if known_training else None
    events = list_price_events(rows, stockcode, config, current_end, min(starts), trained_until)
    price_since = pd.Timestamp(events[-1]["week"]) if events and given_the_price else None
    outcomes = {
        comparison.name: compare_windows(rows, comparison, config, current_end, data_start, training, price_since)
        for comparison in config.comparisons
    }
    statuses = [outcome.status for outcome in outcomes.values()]
    if STATUS_DRIFT in statuses:
        status = STATUS_DRIFT
    elif STATUS_INSUFFICIENT in statuses:
        status = STATUS_INSUFFICIENT
    else:
        status = STATUS_OK
    drifted_in = {
        column: [name for name, o in outcomes.items() if o.result["columns"].get(column, {}).get("drifted")]
        for column in config.columns
    }
    n_drifted = sum(1 for names in drifted_in.values() if names)
    compared_in = {
        column: [c.name for c in config.comparisons if column in c.columns] for column in config.columns
    }
    result = {
        "stockcode": stockcode,
        "status": status,
        "drift_detected": status == STATUS_DRIFT,
        "reasons": _reasons(outcomes),
        "events": events,
        "signals": _signals(config, outcomes),
        "gate": config.gate,
        "n_drifted_columns": n_drifted,
        "share_drifted_columns": n_drifted / len(config.columns),
        "n_columns": len(config.columns),
        "current_end": current_end.isoformat(),
        "as_of": config.as_of.isoformat() if config.as_of else None,
        "rows": len(rows),
        "columns": {
            column: {
                "test": config.tests[column],
                "drifted": bool(drifted_in[column]),
                "compared_in": compared_in[column],
                "drifted_in": drifted_in[column],
            }
            for column in config.columns
        },
        "comparisons": {name: outcome.result for name, outcome in outcomes.items()},
    }
    return DriftCheck(result, config, {name: o.judged for name, o in outcomes.items() if o.judged is not None})


def _signals(config: DriftConfig, outcomes: Mapping[str, ComparisonOutcome]) -> dict[str, str]:
    """Per question (sudden break, stale training window), the worst status of its comparisons."""
    worst = {STATUS_OK: 0, STATUS_INSUFFICIENT: 1, STATUS_DRIFT: 2}
    signals: dict[str, str] = {}
    for comparison in config.comparisons:
        status = outcomes[comparison.name].status
        previous = signals.get(comparison.signal, STATUS_OK)
        signals[comparison.signal] = max(previous, status, key=worst.__getitem__)
    return signals


def _reasons(outcomes: Mapping[str, ComparisonOutcome]) -> list[str]:
    """One line per comparison that did not come out ``ok``: what drifted, or why it was not judged."""
    reasons = []
    for name, outcome in outcomes.items():
        result = outcome.result
        if outcome.status == STATUS_DRIFT:
            drifted = ", ".join(
                f"{column} (p={detail['p_value']:.2g})" if detail["p_value"] is not None else column
                for column, detail in result["columns"].items()
                if detail["drifted"]
            )
            reason = f"{name} ({result['signal']}): drift in {drifted}"
            if result["reference_kind"] == REFERENCE_TRAINING:
                window = f"{result['reference']['start'][:10]} to {result['reference']['end'][:10]}"
                reason += (
                    f"; the candidate would be stale (its training window {window} no longer looks like the "
                    "serving weeks): train on a window ending nearer now (smaller split.val_max_rows / "
                    "test_max_rows) or accept it with drift.gate: warn"
                )
            reasons.append(reason)
        elif (result.get("list_price_basis") or {}).get("shift_attributed_to_the_change"):
            basis = result["list_price_basis"]
            reasons.append(
                f"{name} ({result['signal']}): a shift in {', '.join(basis['shift_attributed_to_the_change'])} across the "
                f"list-price change of {basis['since']}, attributed to it ({basis['why']}): not drift"
            )
        elif outcome.status == STATUS_INSUFFICIENT:
            reasons.append(
                f"{name} ({result['signal']}): not judged, {result['reason']} "
                f"(reference {result['reference']['rows']} rows, current {result['current']['rows']} rows)"
            )
    return reasons


def _validate_rows(rows: pd.DataFrame, stockcode: str, config: DriftConfig) -> None:
    required = [DATE_COLUMN, *config.source_columns, *([INVOICE_COLUMN] if config.uses_training_window else [])]
    missing = [column for column in required if column not in rows.columns]
    if missing:
        raise DataValidationError(f"drift check of {stockcode}: missing column(s) {', '.join(missing)}")
    if not pd.api.types.is_datetime64_any_dtype(rows[DATE_COLUMN]):
        raise DataValidationError(f"drift check of {stockcode}: {DATE_COLUMN} is {rows[DATE_COLUMN].dtype}, not a datetime")
    with_nulls = [column for column in required if rows[column].isna().any()]
    if with_nulls:
        raise DataValidationError(f"drift check of {stockcode}: null values in {', '.join(with_nulls)}")
    if "stockcode" in rows.columns:
        others = sorted(set(rows["stockcode"].astype(str)) - {stockcode})
        if others:
            raise DataValidationError(f"drift check of {stockcode}: rows of other stockcodes too ({', '.join(others[:5])})")


# -- the HTML report ---------------------------------------------------------------------
def render_report_html(check: DriftCheck) -> str:
    """One self-contained page: the verdict, then each comparison's Evidently report.

    Evidently renders one snapshot per page (``get_html_str``); two pages side by side would
    carry its ~4 MB JavaScript bundle twice, so the snapshots' widgets are rendered into one
    dashboard instead. That reads the snapshot's ``_widgets``/``_tests_widgets`` (private in
    evidently 0.7.23, pinned; tests/test_drift.py notices if they move).
    """
    result = check.result
    widgets = [text_widget(title=f"Data drift of {result['stockcode']}: {result['status']}", text=_verdict_markdown(result))]
    for name, comparison in result["comparisons"].items():
        reference, current = comparison["reference"], comparison["current"]
        title = (
            f"{name}: {comparison['status']} | current {current['start'][:10]} to {current['end'][:10]} "
            f"({current['rows']} rows) vs reference {reference['start'][:10]} to {reference['end'][:10]} "
            f"({reference['rows']} rows) | a column drifts at p < {comparison['threshold']:g}"
        )
        judged = check.judged.get(name)
        if judged is None:
            widgets.append(text_widget(title=title, text=f"Not judged: {comparison['reason']}"))
            continue
        snapshot = evidently_snapshot(judged, check.config)
        _check_the_report_agrees(name, read_snapshot(snapshot), _judge(judged, check.config))
        widgets.append(group_widget(title=title, widgets=[*snapshot._widgets, *snapshot._tests_widgets]))
    return stable_render_ids(render_widgets(widgets, as_iframe=False))


def _check_the_report_agrees(name: str, reported: tuple, judged: tuple) -> None:
    """The page must show the verdict recorded: a report that disagrees with the stat tests
    judged without it (another Evidently version) stops the stage rather than publish both."""
    if json.dumps(reported, sort_keys=True) != json.dumps(judged, sort_keys=True):  # NaN p-values equal too
        raise RuntimeError(f"drift comparison {name!r}: Evidently's report {reported} disagrees with its stat tests "
                           f"run without the report {judged}; is evidently still the pinned version?")


# Evidently names each widget (a UUID7) and the page's dashboard (``metric_<hex>``) afresh on
# every render. The page is a DVC-tracked output, and the same verdict must give the same
# bytes (or a reproduction could never match its record), so those ids are renamed in order of
# first appearance, each one consistently, so the page's references still hold. Only these two
# shapes: its JavaScript bundle holds constant UUIDs of other versions (uuid's DNS namespace).
_RENDER_IDS = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
                         r"|(?<=metric_)[0-9a-f]{32}")


def stable_render_ids(page: str) -> str:
    renamed: dict[str, str] = {}

    def rename(match: re.Match[str]) -> str:
        found = match.group(0)
        if found not in renamed:
            n = len(renamed)
            renamed[found] = f"00000000-0000-7000-8000-{n:012x}" if "-" in found else f"{n:032x}"
        return renamed[found]

    return _RENDER_IDS.sub(rename, page)


def _verdict_markdown(result: Mapping[str, Any]) -> str:
    lines = [
        f"**{result['status']}** (drift detected: {result['drift_detected']}; gate: {result['gate']}); "
        f"current windows end {result['current_end'][:10]}.",
        "",
        "| comparison | status | drifted columns | reason |",
        "|---|---|---|---|",
    ]
    for name, comparison in result["comparisons"].items():
        drifted = [c for c, v in comparison["columns"].items() if v["drifted"]]
        lines.append(f"| {name} | {comparison['status']} | {', '.join(drifted) or '-'} | {comparison['reason'] or '-'} |")
    if result.get("events"):
        lines += ["", "List-price events (the retailer's own changes: they retrain the product, they do not stop it):", ""]
        lines += [f"- {event['note']}" for event in result["events"]]
    return "\n".join(lines)
