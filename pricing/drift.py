"""Data drift of one product: a reference window against the current window, judged by Evidently.

Windows are whole weeks, Monday 00:00 to the next Monday 00:00, half-open ``[start, end)``.
The current window of every comparison ends where the last complete week ends (or the last
complete week on or before ``as_of``); its reference is the run of weeks just before it.

Each comparison runs Evidently's ``DataDriftPreset`` with every column's test and p-value
threshold pinned, because at our weekly volumes Evidently's automatic choice misses a 30 %
price rise and its distance tests fire on most ordinary weeks (see the drift section of
``measured-facts.md``). A comparison drifts when Evidently's own "share of drifted columns"
test fails; the product drifts when any comparison does. A comparison whose windows are too
small or whose current week is not over is not judged: ``insufficient_data``, never drift.
"""
from __future__ import annotations

import html
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any

import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset
from scipy import stats

from pricing.errors import DataValidationError

STATUS_OK = "ok"
STATUS_DRIFT = "drift"
STATUS_INSUFFICIENT = "insufficient_data"
GATE_MODES = ("block", "warn")
DATE_COLUMN = "invoice_date"

# Evidently stat tests we know the column kind of; the kind decides how Evidently reads the
# column (numbers vs categories), so an unknown test is refused rather than guessed.
NUMERICAL_TESTS = ("ks", "anderson", "cramer_von_mises", "mannw", "t_test", "es", "wasserstein", "ed")
CATEGORICAL_TESTS = ("chisquare", "z", "fisher_exact", "g_test", "TVD")

_VALUE_DRIFT_TYPE = "evidently:metric_v2:ValueDrift"
_DRIFTED_COUNT_TYPE = "evidently:metric_v2:DriftedColumnsCount"
_WEEK = pd.Timedelta(days=7)


# -- configuration -----------------------------------------------------------------------
@dataclass(frozen=True)
class WindowComparison:
    """``current_weeks`` of data judged against the ``reference_weeks`` just before them."""

    name: str
    current_weeks: int
    reference_weeks: int
    threshold: float
    drift_share: float


@dataclass(frozen=True)
class DriftConfig:
    """The ``drift`` section of ``params.yaml``, validated."""

    columns: Mapping[str, str]
    comparisons: tuple[WindowComparison, ...]
    min_current_rows: int
    min_reference_rows: int
    gate: str = "block"
    as_of: date | None = None

    @property
    def numerical_columns(self) -> list[str]:
        return [column for column, test in self.columns.items() if test in NUMERICAL_TESTS]

    @property
    def categorical_columns(self) -> list[str]:
        return [column for column, test in self.columns.items() if test in CATEGORICAL_TESTS]

    @classmethod
    def from_params(cls, section: Mapping[str, Any] | None) -> DriftConfig:
        """Build from the ``drift`` params section; any wrong key raises ``DataValidationError``."""
        if not isinstance(section, Mapping):
            raise DataValidationError("params.yaml: the 'drift' section is missing or not a mapping")
        try:
            gate = section.get("gate", "block")
            if gate not in GATE_MODES:
                raise DataValidationError(f"drift.gate must be one of {GATE_MODES}, got {gate!r}")
            columns = dict(section["columns"])
            if not columns:
                raise DataValidationError("drift.columns is empty: name at least one column to test")
            unknown = {c: t for c, t in columns.items() if t not in NUMERICAL_TESTS + CATEGORICAL_TESTS}
            if unknown:
                raise DataValidationError(
                    f"drift.columns: unsupported stat test(s) {unknown}; use one of "
                    f"{NUMERICAL_TESTS} (numeric) or {CATEGORICAL_TESTS} (categorical)"
                )
            comparisons = tuple(
                _comparison_from_params(name, spec) for name, spec in dict(section["comparisons"]).items()
            )
            if not comparisons:
                raise DataValidationError("drift.comparisons is empty: define at least one window pair")
            return cls(
                columns=columns,
                comparisons=comparisons,
                min_current_rows=_positive_int(section["min_current_rows"], "drift.min_current_rows"),
                min_reference_rows=_positive_int(section["min_reference_rows"], "drift.min_reference_rows"),
                gate=gate,
                as_of=_as_date(section.get("as_of")),
            )
        except KeyError as error:
            raise DataValidationError(f"params.yaml: drift.{error.args[0]} is missing") from None
        except (TypeError, ValueError) as error:
            if isinstance(error, DataValidationError):
                raise
            raise DataValidationError(f"params.yaml: drift section is malformed: {error}") from None


def _comparison_from_params(name: str, spec: Mapping[str, Any]) -> WindowComparison:
    threshold = float(spec["threshold"])
    drift_share = float(spec["drift_share"])
    if not 0 < threshold < 1:
        raise DataValidationError(f"drift.comparisons.{name}.threshold must be a p-value in (0, 1)")
    if not 0 < drift_share <= 1:
        raise DataValidationError(f"drift.comparisons.{name}.drift_share must be in (0, 1]")
    return WindowComparison(
        name=str(name),
        current_weeks=_positive_int(spec["current_weeks"], f"drift.comparisons.{name}.current_weeks"),
        reference_weeks=_positive_int(spec["reference_weeks"], f"drift.comparisons.{name}.reference_weeks"),
        threshold=threshold,
        drift_share=drift_share,
    )


def _positive_int(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DataValidationError(f"{key} must be a positive integer, got {value!r}")
    return value


def _as_date(value: Any) -> date | None:
    if value is None or isinstance(value, date):
        return value.date() if isinstance(value, datetime) else value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise DataValidationError(f"drift.as_of must be an ISO date (YYYY-MM-DD) or null, got {value!r}") from None


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
    current_start = current_end - comparison.current_weeks * _WEEK
    return WindowBounds(
        reference_start=current_start - comparison.reference_weeks * _WEEK,
        current_start=current_start,
        current_end=current_end,
    )


def rows_between(rows: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    dates = rows[DATE_COLUMN]
    return rows.loc[(dates >= start) & (dates < end)]


# -- one comparison ----------------------------------------------------------------------
@dataclass
class ComparisonOutcome:
    """The JSON-ready verdict of one comparison and, when it was judged, Evidently's snapshot."""

    result: dict[str, Any]
    snapshot: Any | None = None

    @property
    def status(self) -> str:
        return self.result["status"]


def compare_windows(
    rows: pd.DataFrame,
    comparison: WindowComparison,
    config: DriftConfig,
    current_end: pd.Timestamp,
    data_start: pd.Timestamp,
) -> ComparisonOutcome:
    """Judge one window pair of one product's ``rows`` with Evidently."""
    bounds = window_bounds(current_end, comparison)
    reference = rows_between(rows, bounds.reference_start, bounds.current_start)
    current = rows_between(rows, bounds.current_start, bounds.current_end)
    result: dict[str, Any] = {
        "status": STATUS_INSUFFICIENT,
        "drift_detected": False,
        "reason": None,
        "threshold": comparison.threshold,
        "drift_share": comparison.drift_share,
        "n_drifted_columns": 0,
        "share_drifted_columns": 0.0,
        "reference": _window_summary(bounds.reference_start, bounds.current_start, len(reference)),
        "current": _window_summary(bounds.current_start, bounds.current_end, len(current)),
        "columns": {},
    }
    reason = _insufficiency(bounds, data_start, len(reference), len(current), config)
    if reason is not None:
        result["reason"] = reason
        return ComparisonOutcome(result)

    columns = list(config.columns)
    snapshot = _run_evidently(reference[columns], current[columns], comparison, config)
    drifted_count, drifted_share, comparison_drifted, column_verdicts = _read_snapshot(snapshot)
    result.update(
        status=STATUS_DRIFT if comparison_drifted else STATUS_OK,
        drift_detected=comparison_drifted,
        n_drifted_columns=drifted_count,
        share_drifted_columns=drifted_share,
        columns={
            column: {
                "test": config.columns[column],
                "statistic": _finite_or_none(_test_statistic(config.columns[column], reference[column], current[column])),
                "p_value": _finite_or_none(column_verdicts[column]["p_value"]),
                "threshold": column_verdicts[column]["threshold"],
                "drifted": column_verdicts[column]["drifted"],
            }
            for column in columns
        },
    )
    return ComparisonOutcome(result, snapshot)


def _window_summary(start: pd.Timestamp, end: pd.Timestamp, n_rows: int) -> dict[str, Any]:
    return {"start": start.isoformat(), "end": end.isoformat(), "rows": n_rows}


def _insufficiency(
    bounds: WindowBounds, data_start: pd.Timestamp, n_reference: int, n_current: int, config: DriftConfig
) -> str | None:
    # The end of the current window is complete by construction (current_window_end); its
    # start is not when the data begins after it (mid-week).
    if data_start > bounds.current_start:
        return f"current window starts {bounds.current_start.date()}, before the data does ({data_start})"
    if n_current < config.min_current_rows:
        return f"current window has {n_current} rows, fewer than min_current_rows={config.min_current_rows}"
    if n_reference < config.min_reference_rows:
        return f"reference window has {n_reference} rows, fewer than min_reference_rows={config.min_reference_rows}"
    return None


def _run_evidently(reference: pd.DataFrame, current: pd.DataFrame, comparison: WindowComparison, config: DriftConfig):
    columns = list(config.columns)
    definition = DataDefinition(
        numerical_columns=config.numerical_columns, categorical_columns=config.categorical_columns
    )
    preset = DataDriftPreset(
        columns=columns,
        drift_share=comparison.drift_share,
        per_column_method=dict(config.columns),
        per_column_threshold={column: comparison.threshold for column in columns},
    )
    report = Report([preset], include_tests=True)
    return report.run(
        reference_data=Dataset.from_pandas(reference.reset_index(drop=True), data_definition=definition),
        current_data=Dataset.from_pandas(current.reset_index(drop=True), data_definition=definition),
    )


def _read_snapshot(snapshot: Any) -> tuple[int, float, bool, dict[str, dict[str, Any]]]:
    """Evidently's counts and verdicts: the drifted-columns count, its share, whether the
    share-of-drifted-columns test failed, and each column's p-value, threshold and test status."""
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


# -- the product -------------------------------------------------------------------------
@dataclass
class DriftCheck:
    """The verdict of every comparison for one product, as JSON (``result``) and snapshots."""

    result: dict[str, Any]
    snapshots: dict[str, Any] = field(default_factory=dict)

    @property
    def drift_detected(self) -> bool:
        return self.result["drift_detected"]


def check_drift(
    rows: pd.DataFrame,
    stockcode: str,
    config: DriftConfig,
    data_start: pd.Timestamp | None = None,
    data_end: pd.Timestamp | None = None,
    now: datetime | None = None,
) -> DriftCheck:
    """Run every configured comparison on one product's ``rows``.

    ``data_start``/``data_end`` are the first and last moments of the whole data set (the
    product's own first and last sale if not given): a quiet product's last sale says
    nothing about whether the week after it is over.
    """
    _validate_rows(rows, stockcode, config)
    if data_end is None or data_start is None:
        if rows.empty:
            raise DataValidationError(f"stockcode {stockcode}: no rows, and no data span given to place the windows")
        data_start = rows[DATE_COLUMN].min() if data_start is None else data_start
        data_end = rows[DATE_COLUMN].max() if data_end is None else data_end
    data_start, data_end = pd.Timestamp(data_start), pd.Timestamp(data_end)
    current_end = current_window_end(data_end, config.as_of)

    outcomes = {
        comparison.name: compare_windows(rows, comparison, config, current_end, data_start)
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
    result = {
        "stockcode": stockcode,
        "status": status,
        "drift_detected": status == STATUS_DRIFT,
        "gate": config.gate,
        "n_drifted_columns": n_drifted,
        "share_drifted_columns": n_drifted / len(config.columns),
        "n_columns": len(config.columns),
        "current_end": current_end.isoformat(),
        "as_of": config.as_of.isoformat() if config.as_of else None,
        "rows": len(rows),
        "columns": {
            column: {"test": test, "drifted": bool(drifted_in[column]), "drifted_in": drifted_in[column]}
            for column, test in config.columns.items()
        },
        "comparisons": {name: outcome.result for name, outcome in outcomes.items()},
        "timestamp": (now or datetime.now(timezone.utc)).isoformat(),
    }
    snapshots = {name: o.snapshot for name, o in outcomes.items() if o.snapshot is not None}
    return DriftCheck(result, snapshots)


def _validate_rows(rows: pd.DataFrame, stockcode: str, config: DriftConfig) -> None:
    required = [DATE_COLUMN, *config.columns]
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
    """One self-contained page: the verdict, then each comparison's Evidently report."""
    result = check.result
    sections = []
    for name, comparison in result["comparisons"].items():
        reference, current = comparison["reference"], comparison["current"]
        heading = (
            f"<h2>{html.escape(name)}: {html.escape(comparison['status'])}</h2>"
            f"<p>current {current['start']} to {current['end']} ({current['rows']} rows) vs reference "
            f"{reference['start']} to {reference['end']} ({reference['rows']} rows); a column drifts at "
            f"p &lt; {comparison['threshold']:g}, the comparison when {comparison['drift_share']:g} of the columns do.</p>"
        )
        snapshot = check.snapshots.get(name)
        body = (
            snapshot.get_html_str(as_iframe=True)
            if snapshot is not None
            else f"<p>Not judged: {html.escape(comparison['reason'] or '')}</p>"
        )
        sections.append(heading + body)
    title = f"Data drift of {html.escape(result['stockcode'])}: {html.escape(result['status'])}"
    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
        f"<title>{title}</title></head><body style='font-family: sans-serif'>"
        f"<h1>{title}</h1><p>gate: {html.escape(result['gate'])}; current window ends "
        f"{result['current_end']}; checked {html.escape(result['timestamp'])}</p>"
        + "\n".join(sections)
        + "</body></html>\n"
    )
