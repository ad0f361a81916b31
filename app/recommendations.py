"""``GET /v1/recommendations``: the newest catalogue run's price report (every product it priced,
``pricing.report``), paged and filtered by decision and by whether the price is one to act on.

The registry store names the newest report (``RegistryStore.latest_report``); its table is read
from the DVC remote by the hash recorded there, verified (``stores.dvc_remote``), and kept in
memory until a newer report is named. The store is looked at again at most once per reload
interval, as the models are.
"""
from __future__ import annotations

import io
import threading
import time
from collections.abc import Mapping
from typing import Any

import polars as pl

from app.predict import ASCII_INTEGER, ParameterError
from pricing.registry import DECISIONS
from stores.dvc_remote import ArtifactError, Remote
from stores.registry_store import RegistryStore

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 500
NO_DECISION = "none"  # a product the run recorded no decision for (a drift stop, a failure)
DECISION_FILTERS = (*DECISIONS, NO_DECISION)
PARAMETERS = ("decision", "act_on", "page", "page_size")
BOOLEANS = {"true": True, "false": False}


class ReportUnavailable(Exception):
    """No report to answer with: none stored yet (404), or the store or remote failed (503)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


def _whole(name: str, value: str, low: int, high: int | None) -> int:
    if not ASCII_INTEGER.fullmatch(value):
        raise ParameterError(name, f"{name} must be an integer in ASCII decimal digits, got {value[:40]!r}")
    number = int(value)
    if number < low or (high is not None and number > high):
        raise ParameterError(name, f"{name} must be {low} to {high}, got {number}" if high else
                                   f"{name} must be at least {low}, got {number}")
    return number


def check_query(values: Mapping[str, str]) -> dict[str, Any]:
    """The query's filters and page, typed; unknown names are an error (a typo would be ignored)."""
    unknown = sorted(set(values) - set(PARAMETERS))
    if unknown:
        raise ParameterError(unknown[0], f"unknown parameter {unknown[0]!r}; known: {', '.join(PARAMETERS)}")
    query: dict[str, Any] = {"page": 1, "page_size": DEFAULT_PAGE_SIZE}
    if "decision" in values:
        if values["decision"] not in DECISION_FILTERS:
            raise ParameterError("decision", f"decision must be one of {', '.join(DECISION_FILTERS)}, "
                                             f"got {values['decision'][:40]!r}")
        query["decision"] = values["decision"]
    if "act_on" in values:
        if values["act_on"] not in BOOLEANS:
            raise ParameterError("act_on", f"act_on must be true or false, got {values['act_on'][:40]!r}")
        query["act_on"] = BOOLEANS[values["act_on"]]
    if "page" in values:
        query["page"] = _whole("page", values["page"], 1, None)
    if "page_size" in values:
        query["page_size"] = _whole("page_size", values["page_size"], 1, MAX_PAGE_SIZE)
    return query


class LatestReport:
    """The newest catalogue report and its table, looked up at most once per ``reload_seconds``."""

    def __init__(self, store: RegistryStore, remote: Remote, reload_seconds: float) -> None:
        self.store, self.remote, self.reload_seconds = store, remote, reload_seconds
        self._report: dict[str, Any] | None = None
        self._table: pl.DataFrame | None = None
        self._looked_at: float | None = None
        self._lock = threading.Lock()

    def current(self) -> tuple[dict[str, Any], pl.DataFrame]:
        with self._lock:
            due = self._looked_at is None or time.monotonic() - self._looked_at >= self.reload_seconds
            if due or self._report is None:
                self._look()
            return self._report, self._table

    def _look(self) -> None:
        try:
            report = self.store.latest_report()
        except Exception as error:  # noqa: BLE001 - the store's own failure: say so, keep what was read
            if self._report is None:
                raise ReportUnavailable(503, "registry_unavailable",
                                        f"registry store {self.store.location}: {type(error).__name__}: {error}") from None
            return
        finally:
            self._looked_at = time.monotonic()
        if report is None:
            raise ReportUnavailable(404, "no_report", f"no catalogue run has stored a report in the registry store "
                                                      f"{self.store.location} yet")
        if self._report is not None and report["folder"]["md5"] == self._report["folder"]["md5"]:
            self._report = report
            return
        try:
            what = f"catalogue report {report['name']}"
            files = self.remote.read_directory(report["folder"]["md5"], what)
            table = pl.read_parquet(io.BytesIO(self.remote.read(files[report["table"]], f"{what}/{report['table']}")))
        except (ArtifactError, KeyError, TypeError, OSError, pl.exceptions.PolarsError) as error:
            if self._report is None:
                raise ReportUnavailable(503, "report_unavailable", f"{type(error).__name__}: {error}") from None
            return  # the report read before keeps answering
        self._report, self._table = report, table


def page_of(report: Mapping[str, Any], table: pl.DataFrame, query: Mapping[str, Any]) -> dict[str, Any]:
    chosen = table
    if "decision" in query:
        chosen = chosen.filter(pl.col("decision") == query["decision"])
    if "act_on" in query:
        chosen = chosen.filter(pl.col("act_on") == query["act_on"])
    size, number = query["page_size"], query["page"]
    pages = max(1, -(-chosen.height // size))
    rows = chosen.slice((number - 1) * size, size).to_dicts()
    return {"run_key": report.get("run_key"), "created_at": report.get("created_at"), "report": report.get("name"),
            "revision": report.get("revision"), "products": table.height, "matched": chosen.height,
            "page": number, "page_size": size, "pages": pages, "rows": rows}
