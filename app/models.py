"""The models the API serves: each stockcode's served record (``pricing.registry.serving``: the
latest approval or signed-off candidate, unless a pin, rollback or revocation says otherwise),
loaded from the remote.

A ``ServedModel`` holds what answering needs, in memory: the portable network (NumPy), the
product's recent lines (the demand curve's context), its price evidence and the lineage's own
recommendation. ``ModelCatalogue`` keeps one per stockcode and refreshes them from the
registry store: a newer approval (or a pin, a rollback) replaces the old model only once the
new one has loaded completely; a failed load keeps the model already served, unless it was
revoked, and is reported (``/ready``). A stockcode with nothing servable (only candidates,
everything revoked…) serves nothing, and ``/ready`` and its answers say why.
"""
from __future__ import annotations

import io
import json
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np
import polars as pl

from pricing.demand import SEGMENT, DemandCurve, Evidence, PriceResponse, price_evidence, price_response
from pricing.errors import DataValidationError
from pricing.features import LIST_PRICE, list_price_features
from pricing.layout import SPLITS, Layout
from pricing.portable import PortableModel
from pricing.price_response import WeeklyDemand, weekly_demand
from pricing.registry import Record, output_md5
from stores.dvc_remote import ArtifactError, Remote
from stores.registry_store import Head, RegistryStore, ServedReader

log = logging.getLogger(__name__)
LAYOUT = Layout()  # paths relative to a project root: as dvc.lock records them
PRICE_RESPONSE_PARAMS = "price_response"
DATE_COLUMN = "invoice_date"
GRID_PRICE = "__grid_price"
# The one-pass curve must be pricing.demand's, to float32 rounding (checked at every load).
CURVE_TOLERANCE = 1e-5
# Answers kept per served model, by range asked: a model's answer never changes, and a new
# approval is a new ServedModel with an empty cache.
ANSWER_CACHE_SIZE = 256


class LoadError(Exception):
    """A record's model could not be loaded: what, and why."""


# Failures the checks exist for (a changed byte, a malformed record, a store that does not
# answer): logged in a line. Anything else is logged with its trace, as a bug.
REFUSALS = (LoadError, ArtifactError, DataValidationError, OSError)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def lineage_params(record: Record, section: str) -> dict[str, Any]:
    """A params.yaml section as the record's lineage used it (the stage entry that lists it)."""
    for entry in record.lineage.get("stages", {}).values():
        for values in (entry.get("params") or {}).values():
            if isinstance(values, Mapping) and isinstance(values.get(section), Mapping):
                return dict(values[section])
    raise LoadError(f"the record's lineage has no {section!r} params")


@dataclass(eq=False)
class ServedModel:
    record: Record
    model: PortableModel
    context: pl.DataFrame  # the product's most recent lines, every raw feature
    evidence: Evidence
    response: PriceResponse  # the network's per-line curve on the lineage's own grid
    # The served price response as inference recorded it: the catalogue stage's row of the
    # product (weekly units at the current price, elasticity and interval, the level it came
    # from) and the recommendation with its reasons. None for records made before it existed.
    weekly: dict[str, Any] | None = None
    loaded_at: str = field(default_factory=_now)

    def __post_init__(self) -> None:
        self._answers: dict[Any, Any] = {}
        self._answers_lock = threading.Lock()
        # Built once, here, inside load_model: a record whose fields have the wrong types is
        # refused at load, and never fails a request to /v1/models.
        self._summary = self._build_summary()

    def answer(self, key: Any, compute):
        """``compute()``'s answer for ``key`` (a range asked), computed once per model."""
        with self._answers_lock:
            cached = self._answers.get(key)
        if cached is None:
            cached = compute()
            with self._answers_lock:
                self._answers[key] = cached
                while len(self._answers) > ANSWER_CACHE_SIZE:  # the oldest first: dicts keep insertion order
                    del self._answers[next(iter(self._answers))]
        return cached

    @property
    def stockcode(self) -> str:
        return self.record.stockcode

    @property
    def version(self) -> str:
        return self.record.model_version

    @property
    def evidence_range(self) -> tuple[float, float]:
        """The list prices the product held long enough to count as evidence."""
        prices = self.evidence.evidenced_prices or [self.evidence.current_price]
        return min(prices), max(prices)

    def default_range(self) -> tuple[float, float]:
        """The evidence range; with no list-price change, the lineage's diagnostic span around
        the current price (the curve is shown there, the recommendation stays the current price)."""
        low, high = self.evidence_range
        if high > low:
            return low, high
        return float(self.response.curve.prices.min()), float(self.response.curve.prices.max())

    def weekly_demand(self, prices: np.ndarray) -> list[WeeklyDemand]:
        """Expected weekly units at each price (the lineage's ``weekly_demand``), or [] without a
        weekly response."""
        if self.weekly is None:
            return []
        return weekly_demand(self.weekly["response"], prices, self.evidence_range)

    def recommendation(self) -> dict[str, Any]:
        """The lineage's recommendation: from the weekly response where the record has one (inside
        the guardrails, with its reasons), else the revenue-maximising list price per line inside
        the evidence."""
        if self.weekly is not None:
            chosen = self.weekly["recommendation"]
            price = float(chosen["recommended_price"])
            (at,) = self.weekly_demand(np.array([price]))
            return {
                "basis": "weekly",
                "unit_price": price,
                "decision": chosen["decision"],
                "quantity": at.units,
                "weekly_units": at.units,
                "weekly_units_interval": [at.units_low, at.units_high],
                "predicted_sales": price * at.units,
                "gain": chosen["gain"],
                "gain_interval": chosen["gain_interval"],
                "objective": chosen["objective"],
                "current_price": float(chosen["current_price"]),
                "elasticity": float(chosen["elasticity"]),
                "elasticity_interval": chosen["elasticity_interval"],
                "elasticity_level": chosen["elasticity_level"],
                "inside_evidence": not at.extrapolated,
                "reasons": list(chosen["reasons"]),
                "flags": list(self.response.flags),
            }
        response = self.response
        prices, demand = response.curve.prices, response.curve.demand
        at = int(np.argmin(np.abs(prices - response.recommended_price)))
        return {
            "unit_price": response.recommended_price,
            "quantity": float(demand[at]),
            "predicted_sales": float(prices[at] * demand[at]),
            "current_price": self.evidence.current_price,
            "elasticity": response.elasticity,
            "inside_evidence": True,
            "flags": list(response.flags),
            "basis": "per_line",
        }

    def curve(self, prices: np.ndarray) -> DemandCurve:
        """``pricing.demand.demand_curve`` in one pass: the list-price features of every context
        line at every price from one polars expression (the ETL's ``list_price_features``), and
        the network's price paths on them while each line's context path runs once
        (``PortableModel.predict_over_prices``)."""
        prices = np.asarray(prices, dtype=np.float64)
        features = list_price_features(pl.col(GRID_PRICE))
        price_columns = [name for name in (e.meta.output_name() for e in features) if name in self.model.raw_features]
        repriced = (pl.DataFrame({GRID_PRICE: prices}).join(self.context, how="cross").with_columns(features)
                    .select([pl.col(c).cast(pl.Float64) for c in price_columns]).to_numpy())
        lines = self.context.select([pl.col(c).cast(pl.Float64) for c in self.model.raw_features]).to_numpy()
        per_line = self.model.predict_over_prices(lines, price_columns,
                                                  repriced.reshape(len(prices), self.context.height, -1))
        return DemandCurve(prices=prices, per_line=per_line, segments=self.context[SEGMENT].to_numpy())

    def summary(self) -> dict[str, Any]:
        """The version and lineage summary ``/v1/models`` lists."""
        return self._summary

    def _build_summary(self) -> dict[str, Any]:
        record = self.record
        test = record.metrics.get("test") or {}
        return {
            "stockcode": record.stockcode,
            "model_version": record.model_version,
            "model_md5": record.model_md5,
            "decided_at": record.decided_at,
            "loaded_at": self.loaded_at,
            "git": record.git,
            "lineage": {key: record.lineage.get(key) for key in ("data", "code", "params")},
            "stages": sorted(record.lineage.get("stages", {})),
            "test_metrics": {k: v for k, v in test.items() if isinstance(v, (int, float)) and not isinstance(v, bool)},
            "verdicts": {name: {k: v for k, v in verdict.items() if k in ("status", "passed", "drift_detected")}
                         for name, verdict in record.verdicts.items() if isinstance(verdict, Mapping)},
            "platform": record.platform,
            "recommended_price": self.recommendation()["unit_price"],
            "elasticity": self.weekly["response"]["elasticity"] if self.weekly else None,
            "elasticity_level": self.weekly["response"]["level"] if self.weekly else None,
            "flags": list(self.response.flags),
            "evidence_range": list(self.evidence_range),
        }


def _read_table(remote: Remote, files: Mapping[str, str], name: str, what: str) -> pl.DataFrame:
    if name not in files:
        raise LoadError(f"{what} has no {name}")
    data = remote.read(files[name], f"{what}/{name}")
    return pl.read_parquet(io.BytesIO(data))


WEEKLY_KEYS = ("current_price", "elasticity", "elasticity_low", "elasticity_high", "level", "level_units",
               "level_units_low", "level_units_high")


def _weekly_response(record: Record) -> dict[str, Any] | None:
    """The weekly response inference recorded, checked for what answering needs."""
    weekly = (record.metrics.get("test") or {}).get("weekly_response")
    if weekly is None:
        return None
    response = weekly.get("response") if isinstance(weekly, Mapping) else None
    if not isinstance(response, Mapping) or not isinstance(weekly.get("recommendation"), Mapping):
        raise LoadError(f"the record of {record.stockcode} {record.model_version} has a malformed weekly_response")
    missing = [key for key in WEEKLY_KEYS if not isinstance(response.get(key), (int, float, str))]
    if missing:
        raise LoadError(f"the weekly_response of {record.stockcode} {record.model_version} lacks {', '.join(missing)}")
    return dict(weekly)


def load_model(record: Record, remote: Remote) -> ServedModel:
    """Everything ``record``'s model needs to answer, each artifact verified by its md5. Any
    failure is a ``LoadError`` naming the record: a record whose fields have the wrong types,
    or a store whose client raises its own exceptions (botocore's are not ``OSError``), fails
    this model alone."""
    stockcode = record.stockcode
    try:
        stages = record.lineage.get("stages") or {}
        arrays_path = str(LAYOUT.portable_model_arrays(stockcode))
        spec_path = str(LAYOUT.portable_model_spec(stockcode))
        data_path = str(LAYOUT.preprocessed_dir(stockcode))
        hashes = {path: output_md5(stages, path) for path in (arrays_path, spec_path, data_path)}
        missing = [path for path, md5 in hashes.items() if not md5]
        if missing:
            raise LoadError(f"the record of {stockcode} {record.model_version} lists no {', '.join(missing)}")
        arrays_bytes = remote.read(hashes[arrays_path], arrays_path)
        spec_bytes = remote.read(hashes[spec_path], spec_path)
        files = remote.read_directory(hashes[data_path], data_path)
        with np.load(io.BytesIO(arrays_bytes), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
        model = PortableModel(json.loads(spec_bytes), arrays)
        raw = {split: _read_table(remote, files, LAYOUT.split_features(stockcode, split, False).name, data_path)
               for split in SPLITS}
        meta = {split: _read_table(remote, files, LAYOUT.split_meta(stockcode, split).name, data_path)
                for split in SPLITS}
        cfg = lineage_params(record, PRICE_RESPONSE_PARAMS)
        evidence = price_evidence(
            np.concatenate([raw[s][LIST_PRICE].to_numpy() for s in SPLITS]),
            np.concatenate([meta[s][DATE_COLUMN].cast(pl.Datetime("us")).to_numpy() for s in SPLITS]),
            min_weeks=int(cfg["min_weeks_at_price"]),
        )
        context = raw["test"].tail(int(cfg["context_lines"]))
        response = price_response(context, evidence, model.predict, model.raw_features,
                                  n_points=int(cfg["grid_points"]), diagnostic_span=float(cfg["diagnostic_span"]))
        served = ServedModel(record=record, model=model, context=context, evidence=evidence, response=response,
                             weekly=_weekly_response(record))
        gap = np.abs(served.curve(response.curve.prices).per_line - response.curve.per_line)
        if not (gap <= CURVE_TOLERANCE * (1 + np.abs(response.curve.per_line))).all():
            raise LoadError(f"{stockcode} {record.model_version}: the one-pass demand curve differs from "
                            f"pricing.demand's by up to {gap.max():.3g} units")
    except LoadError:
        raise
    except ArtifactError as error:
        raise LoadError(str(error)) from error
    except Exception as error:  # noqa: BLE001 - whatever it is, it is this record's failure
        raise LoadError(f"{stockcode} {record.model_version}: {type(error).__name__}: {error}") from error
    return served


@dataclass(frozen=True)
class Unserved:
    """A stockcode with decisions but nothing servable: its latest decision, and why."""

    latest: str
    why: str


@dataclass
class Failure:
    stockcode: str
    model_version: str | None
    error: str
    at: str = field(default_factory=_now)

    def as_dict(self, serving: str | None) -> dict[str, Any]:
        return {"stockcode": self.stockcode, "model_version": self.model_version, "error": self.error,
                "at": self.at, "still_serving": serving}


class ModelCatalogue:
    """The served model per stockcode, refreshed from the registry store: what is served is
    read through its heads (``stores.registry_store.ServedReader``), so a refresh with nothing
    changed costs a few requests whatever the number of products and decisions, and only a
    stockcode whose head changed (or whose model failed to load) is looked at again."""

    def __init__(self, store: RegistryStore, remote: Remote, reload_seconds: float) -> None:
        self.store, self.remote, self.reload_seconds = store, remote, reload_seconds
        self.reader = ServedReader(store)
        # stockcode -> the head last acted on with nothing left to do (served, or nothing
        # servable): the reader hands the same object back while it is unchanged, and such a
        # stockcode costs nothing at a reload. A failed load is not settled: tried again.
        self._settled: dict[str, Head] = {}
        self._last_heads: dict[str, Head | Exception] | None = None
        self.models: dict[str, ServedModel] = {}
        self.failures: dict[str, Failure] = {}
        self.unserved: dict[str, Unserved] = {}  # stockcodes with decisions but nothing servable
        self.why_served: dict[str, str] = {}  # stockcode -> why its model is the served one
        self.store_error: str | None = None
        self.store_empty = False  # the store was read and holds no decision at all
        self.last_refresh: float | None = None
        self.last_refresh_at: str | None = None
        self._refreshing = threading.Lock()

    def refresh(self, wait: bool = True) -> bool:
        """Load every stockcode's last approved model that is not the one already served.
        With ``wait=False`` return at once (False) if another thread is refreshing."""
        if not self._refreshing.acquire(blocking=wait):
            return False
        try:
            try:
                heads = self.reader.read()
            except Exception as error:  # the store unreachable: keep every model, say why
                self.store_error = f"registry store {self.store.location}: {type(error).__name__}: {error}"
                log.error("%s", self.store_error)
            else:
                self.store_error = None
                if heads is self._last_heads:  # the reader's own dict again: nothing changed
                    changed = {sc: heads[sc] for sc in self.failures}  # failed loads are tried again
                else:
                    self.store_empty = not heads
                    for gone in sorted(self.known() - set(heads)):
                        self._withdraw(gone)
                    changed = heads
                self._last_heads = heads
                for stockcode, head in changed.items():
                    self._refresh_one(stockcode, head)
            return True
        finally:
            # Even if the loop raised: a fault must not turn every request into a new refresh.
            self.last_refresh = time.monotonic()
            self.last_refresh_at = _now()
            self._refreshing.release()

    def known(self) -> set[str]:
        """Stockcodes served, failed or seen undecided."""
        return set(self.models) | set(self.failures) | set(self.unserved)

    def _withdraw(self, stockcode: str) -> None:
        """The store holds no decision about ``stockcode`` any more: nothing approves serving it."""
        if stockcode in self.models:
            log.warning("%s: no decision left in the registry store: model %s withdrawn", stockcode,
                        self.models[stockcode].version)
        for known in (self.models, self.failures, self.unserved, self.why_served, self._settled):
            known.pop(stockcode, None)

    def _refresh_one(self, stockcode: str, head: Head | Exception) -> None:
        """Serve what ``head`` (``stores.registry_store.ServedReader``: ``serving`` over the
        stockcode's objects) says, or say why not."""
        if self._settled.get(stockcode) is head:
            return
        self._settled.pop(stockcode, None)
        if isinstance(head, Head) and head.refused:
            head = DataValidationError(head.refused)
        if isinstance(head, Exception):  # one product's records never stop the others
            self._fail(stockcode, None, f"registry: {type(head).__name__}: {head}", head)
            return
        if head.latest_decision is None:
            self._withdraw(stockcode)
            return
        chosen = head.serving
        served = self.models.get(stockcode)
        if chosen.record is None:  # nothing servable: a model served until now is withdrawn
            if served is not None:
                log.warning("%s: model %s withdrawn: %s", stockcode, served.version, chosen.why)
            for known in (self.models, self.failures, self.why_served):
                known.pop(stockcode, None)
            self.unserved[stockcode] = Unserved(head.latest_decision, chosen.why)
            self._settled[stockcode] = head
            return
        self.unserved.pop(stockcode, None)
        try:
            if served is None or served.record != chosen.record:
                self.models[stockcode] = load_model(chosen.record, self.remote)
            self.failures.pop(stockcode, None)
            self.why_served[stockcode] = chosen.why
            self._settled[stockcode] = head
        except Exception as error:  # noqa: BLE001 - load_model raises LoadError; anything else is a bug, still this product's
            if served is not None and served.version in chosen.revoked:  # never kept: revoked
                del self.models[stockcode]
                self.why_served.pop(stockcode, None)
            self._fail(stockcode, chosen.record.model_version, str(error), error)

    def _fail(self, stockcode: str, version: str | None, message: str, error: Exception) -> None:
        self.failures[stockcode] = Failure(stockcode, version, message)
        cause = error.__cause__ if isinstance(error, LoadError) and error.__cause__ else error
        log.error("%s: model %s not served: %s: %s", stockcode, version, type(cause).__name__, message,
                  exc_info=None if isinstance(cause, REFUSALS) else cause)

    def refresh_if_due(self) -> None:
        """Refresh when the interval has passed; one caller refreshes, the others go on serving."""
        due = self.last_refresh is None or time.monotonic() - self.last_refresh >= self.reload_seconds
        if due:
            self.refresh(wait=False)

    def failure_report(self) -> list[dict[str, Any]]:
        return [failure.as_dict(self.models[sc].version if sc in self.models else None)
                for sc, failure in sorted(self.failures.items())]
