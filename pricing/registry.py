"""The approval record: which model version is served per stockcode, and why.

Decisions live in a **registry store** outside any work tree: a local folder by default (beside
the local DVC remote), an fsspec URL such as ``s3://bucket/registry`` in production. Each
decision is one immutable JSON object, ``<stockcode>/<time>-<decision>-<version>-<nonce>.json``:
two writers can never clash (the nonce), and the names sort in the order the decisions were
made. A decision is ``approved``, ``rejected`` or ``insufficient_data``, with the model version
(the content hash of its checkpoint, the same md5 DVC stores it under), the hashes of its
data, code and params summarised from the ``dvc.lock`` entries it descends from (kept in
full, so the lineage can be checked out and re-run), the git revision, the platform that
made it, metrics, drift, fairness and price verdicts, and when.

Read API (what the app uses)::

    from pricing.registry import approved_model
    record = approved_model("85123A", store)   # the last approved, or None
    record.model_path, record.model_md5, record.model_version

Pure: no Prefect, no DVC. Callers hand in ``dvc.lock`` entries as plain dicts.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import re
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import fsspec

from pricing.errors import DataValidationError

APPROVED = "approved"
REJECTED = "rejected"
INSUFFICIENT_DATA = "insufficient_data"
DECISIONS = (APPROVED, REJECTED, INSUFFICIENT_DATA)
SCHEMA = 2
CODE_SUFFIXES = (".py",)


@dataclass(frozen=True)
class Record:
    """One decision about one candidate model of one stockcode."""

    stockcode: str
    decision: str  # "approved" | "rejected" | "insufficient_data"
    model_version: str  # first 12 hex digits of the checkpoint's md5 (of the lineage without one)
    model_path: str | None  # the checkpoint, relative to the project root (None: nothing trained)
    model_md5: str | None  # its full md5: the DVC cache / remote object it is stored as
    decided_at: str  # ISO 8601, UTC
    git: dict[str, Any]  # {"rev": ..., "dirty": ...} of the checkout it was made in
    lineage: dict[str, Any]  # {"data", "code", "params": hashes, "stages": {address: dvc.lock entry}}
    metrics: dict[str, Any]  # {"val": ..., "test": ..., "risk": ...}
    verdicts: dict[str, Any]  # {"drift": {...}, "fairness": {"passed": ..., "reasons": [...]}}
    reasons: list[str] = field(default_factory=list)  # why rejected (empty when approved)
    overrides: list[str] = field(default_factory=list)  # params overridden for that run
    run: dict[str, Any] = field(default_factory=dict)  # orchestration provenance (flow run id…)
    platform: dict[str, Any] = field(default_factory=dict)  # CPU, Python, torch, numpy that made it
    schema: int = SCHEMA

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, default=str)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Record:
        known = {name for name in cls.__dataclass_fields__}
        return cls(**{key: value for key, value in data.items() if key in known})

    @property
    def approved(self) -> bool:
        return self.decision == APPROVED


# -- building a record -----------------------------------------------------------------------
def _digest(payload: Any) -> str:
    return hashlib.md5(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _entries(items: Any) -> list[dict[str, Any]]:
    return [item for item in (items or []) if isinstance(item, dict)]


def summarise_lineage(stages: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Data, code and params hashes over the ``dvc.lock`` entries of a model's lineage.

    code: every ``.py`` dependency; data: every other dependency; params: every param value.
    Each is an md5 over sorted (path, hash) pairs, so it changes exactly when one input does.
    """
    code: dict[str, Any] = {}
    data: dict[str, Any] = {}
    params: dict[str, Any] = {}
    for address, entry in sorted(stages.items()):
        for dep in _entries(entry.get("deps")):
            target = code if str(dep.get("path", "")).endswith(CODE_SUFFIXES) else data
            target[dep.get("path")] = dep.get("md5") or dep.get("hash")
        for params_file, values in (entry.get("params") or {}).items():
            for key, value in (values or {}).items():
                params[f"{params_file}:{key}"] = value
    return {
        "data": _digest(data),
        "code": _digest(code),
        "params": _digest(params),
        "stages": {address: dict(entry) for address, entry in stages.items()},
    }


def output_md5(stages: Mapping[str, Mapping[str, Any]], path: str) -> str | None:
    """The md5 ``dvc.lock`` records for output ``path`` in any of ``stages``."""
    for entry in stages.values():
        for out in _entries(entry.get("outs")):
            if out.get("path") == path:
                return out.get("md5")
    return None


def differing_outputs(recorded: Mapping[str, Any] | None, again: Mapping[str, Any] | None) -> list[str]:
    """The outputs of a stage whose md5 in ``again`` is not the one ``recorded`` (a ``dvc.lock``
    entry each): changed, or missing from the new entry."""
    after = {out.get("path"): out.get("md5") for out in _entries((again or {}).get("outs"))}
    return sorted(out.get("path") for out in _entries((recorded or {}).get("outs"))
                  if after.get(out.get("path")) != out.get("md5"))


def _package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def current_platform() -> dict[str, Any]:
    """What made a model: the same seed gives other bytes on another CPU or library version."""
    return {
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "system": platform.system(),
        "python": platform.python_version(),
        **{name: _package_version(name) for name in ("torch", "numpy", "scikit-learn", "dvc")},
    }


def make_record(
    *,
    stockcode: str,
    decision: str,
    model_path: str | None,
    stages: Mapping[str, Mapping[str, Any]],
    git: Mapping[str, Any],
    metrics: Mapping[str, Any],
    verdicts: Mapping[str, Any],
    reasons: Iterable[str] = (),
    overrides: Iterable[str] = (),
    run: Mapping[str, Any] | None = None,
    platform_info: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> Record:
    if decision not in DECISIONS:
        raise ValueError(f"decision must be one of {DECISIONS}, got {decision!r}")
    lineage = summarise_lineage(stages)
    md5 = output_md5(stages, model_path) if model_path else None
    version = (md5 or _digest(lineage))[:12]
    return Record(
        stockcode=stockcode,
        decision=decision,
        model_version=version,
        model_path=model_path,
        model_md5=md5,
        decided_at=(now or datetime.now(timezone.utc)).isoformat(timespec="microseconds"),
        git=dict(git),
        lineage=lineage,
        metrics=dict(metrics),
        verdicts=dict(verdicts),
        reasons=list(reasons),
        overrides=list(overrides),
        run=dict(run or {}),
        platform=dict(current_platform() if platform_info is None else platform_info),
    )


def lineage_problems(stages: Mapping[str, Mapping[str, Any]], model_path: str) -> list[str]:
    """Why the lock entries of a candidate do not form one chain (empty: they do).

    The checkpoint must be an output of one stage and a dependency of another (inference),
    and every dependency that some stage of the lineage outputs must carry that output's md5:
    then the risk verdict speaks of the predictions of exactly this model.
    """
    produced: dict[str, tuple[str, Any]] = {}
    for address, entry in stages.items():
        for out in _entries(entry.get("outs")):
            produced[str(out.get("path"))] = (address, out.get("md5"))
    problems = []
    if model_path not in produced or not produced[model_path][1]:
        problems.append(f"no stage of the lineage outputs the model {model_path}")
    consumers = [
        address for address, entry in stages.items()
        if any(dep.get("path") == model_path for dep in _entries(entry.get("deps")))
    ]
    if not consumers:
        problems.append(f"no stage of the lineage depends on the model {model_path}")
    for address, entry in stages.items():
        for dep in _entries(entry.get("deps")):
            path = str(dep.get("path"))
            if path in produced and dep.get("md5") != produced[path][1]:
                problems.append(
                    f"{address} used {path} md5 {dep.get('md5')} but {produced[path][0]} "
                    f"recorded md5 {produced[path][1]}"
                )
    return problems


def same_candidate(a: Record | None, b: Record) -> bool:
    """Is ``b`` the decision already recorded as ``a`` (same model, lineage and verdict)?"""
    return (
        a is not None
        and a.decision == b.decision
        and a.model_version == b.model_version
        and {k: a.lineage.get(k) for k in ("data", "code", "params")}
        == {k: b.lineage.get(k) for k in ("data", "code", "params")}
    )


# -- verdicts --------------------------------------------------------------------------------
_DRIFT_FLAGS = ("drift_detected", "drifted", "drift")


def drifted_columns(drift_metrics: Mapping[str, Any]) -> list[str]:
    """Names of the columns the drift stage flagged (``columns``: a mapping or a list)."""
    columns = drift_metrics.get("columns") or {}
    items: Iterable[tuple[str, Any]]
    if isinstance(columns, Mapping):
        items = columns.items()
    else:
        items = ((str(c.get("column") or c.get("name")), c) for c in columns if isinstance(c, Mapping))
    flagged = []
    for name, detail in items:
        if isinstance(detail, Mapping):
            flag = next((detail[key] for key in _DRIFT_FLAGS if key in detail), None)
            if flag is True or (isinstance(flag, str) and flag.lower() in {"drift", "true", "yes"}):
                flagged.append(name)
        elif detail is True:
            flagged.append(name)
    return flagged


def drift_verdict(drift_metrics: Mapping[str, Any]) -> dict[str, Any]:
    status = drift_metrics.get("status") or ("drift" if drift_metrics.get("drift_detected") else "ok")
    return {
        "status": status,
        "drift_detected": bool(drift_metrics.get("drift_detected")) or status == "drift",
        "drifted_columns": drifted_columns(drift_metrics),
        # the retailer's own list-price changes the check saw: events the candidate retrains on, not drift
        "events": [dict(event) for event in drift_metrics.get("events") or [] if isinstance(event, Mapping)],
    }


def fairness_verdict(risk_metrics: Mapping[str, Any]) -> dict[str, Any]:
    passed = risk_metrics.get("passed") is True
    return {
        "passed": passed,
        # passed / failed / not_assessable (too little data to tell), as the risk stage says
        "verdict": risk_metrics.get("verdict") or ("passed" if passed else "failed"),
        "reasons": list(risk_metrics.get("reasons") or []),
    }


def risk_verdicts(risk_metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The risk stage's verdicts as the record keeps them: the overall gate, and each check's
    own section where the stage reports one (e.g. ``price_response``)."""
    verdicts: dict[str, Any] = {"fairness": fairness_verdict(risk_metrics)}
    for section in ("price_response",):
        if isinstance(risk_metrics.get(section), Mapping):
            verdicts[section] = dict(risk_metrics[section])
    return verdicts


def peer_risk_metrics(histories: Mapping[str, list[Record]], stockcode: str) -> dict[str, dict[str, Any]]:
    """The risk-stage metrics of every other stockcode's latest decision that measured them, by
    ``<stockcode>@<model version>``: the peers a candidate's fairness is pooled with."""
    peers = {}
    for code, records in sorted(histories.items()):
        if code == stockcode:
            continue
        trained = next((r for r in reversed(records)
                        if isinstance(r.metrics.get("risk"), Mapping) and r.metrics["risk"].get("checks")), None)
        if trained is not None:
            peers[f"{code}@{trained.model_version}"] = dict(trained.metrics["risk"])
    return peers


# -- the store ---------------------------------------------------------------------------------
# Stockcodes become object-name prefixes: keep them to what every store spells the same way.
# Matched whole (fullmatch): ``$`` would also match before a trailing newline.
_STOCKCODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def check_stockcode(stockcode: str) -> str:
    if not isinstance(stockcode, str) or not _STOCKCODE.fullmatch(stockcode):
        raise DataValidationError(
            f"stockcode {stockcode!r} is not a valid stock code (letters, digits, '.', '_', '-'; at most 64)"
        )
    return stockcode


def _object_name(record: Record) -> str:
    stamp = re.sub(r"[^0-9T]", "", record.decided_at.split("+")[0])
    return f"{stamp}Z-{record.decision}-{record.model_version}-{uuid.uuid4().hex[:12]}.json"


class RegistryStoreError(OSError):
    """The registry store could not be reached, read or written (keys, permissions, network)."""


@contextmanager
def _reaching(store: "RegistryStore", doing: str) -> Iterator[None]:
    """Say which store and what for when the storage underneath fails (S3: a wrong key, an
    endpoint that does not answer), whatever the error's type (botocore's are not OSError)."""
    try:
        yield
    except (FileNotFoundError, DataValidationError):
        raise
    except Exception as error:  # noqa: BLE001 - re-raised with the store named
        raise RegistryStoreError(f"registry store {store.location}: could not {doing}: "
                                 f"{type(error).__name__}: {error}") from error


class RegistryStore:
    """The decisions of every stockcode under one location (a folder or an fsspec URL)."""

    def __init__(self, location: str | os.PathLike, **storage_options: Any) -> None:
        text = os.fspath(location)
        self.location = text if "://" in text else str(Path(text).expanduser().resolve())
        # A store of its own, not fsspec's cached instance: that one keeps the endpoint and keys
        # the process first saw, even after the environment names others.
        self.fs, self.base = fsspec.core.url_to_fs(self.location, skip_instance_cache=True, **storage_options)
        self.is_local = "file" in (self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,))

    def __repr__(self) -> str:
        return f"RegistryStore({self.location!r})"

    def _folder(self, stockcode: str) -> str:
        return f"{self.base.rstrip('/')}/{check_stockcode(stockcode)}"

    def put(self, record: Record) -> str:
        """Write ``record`` as a new immutable object; return its name in the store."""
        folder = self._folder(record.stockcode)
        name = _object_name(record)
        payload = (record.to_json() + "\n").encode()
        with _reaching(self, f"write {record.stockcode}/{name}"):
            self._write(folder, name, payload)
        return f"{record.stockcode}/{name}"

    def _write(self, folder: str, name: str, payload: bytes) -> None:
        if self.is_local:  # readers must never see half an object: write aside, then rename
            self.fs.makedirs(folder, exist_ok=True)
            tmp = f"{folder}/.{name}.tmp"
            with self.fs.open(tmp, "wb") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, f"{folder}/{name}")
        else:  # an object store's PUT is atomic
            self.fs.pipe_file(f"{folder}/{name}", payload)

    def _names(self, stockcode: str) -> list[str]:
        folder = self._folder(stockcode)
        try:
            with _reaching(self, f"list {stockcode}"):
                listed = self.fs.ls(folder, detail=False, refresh=True)
        except FileNotFoundError:
            return []
        names = [str(path).rstrip("/").rsplit("/", 1)[-1] for path in listed]
        return sorted(name for name in names if name.endswith(".json") and not name.startswith("."))

    def history(self, stockcode: str) -> list[Record]:
        """Every decision about ``stockcode``, oldest first."""
        folder = self._folder(stockcode)
        records = []
        for name in self._names(stockcode):
            with _reaching(self, f"read {stockcode}/{name}"):
                text = self.fs.cat_file(f"{folder}/{name}").decode()
            try:
                records.append(Record.from_dict(json.loads(text)))
            except (ValueError, TypeError) as error:
                raise DataValidationError(f"registry object {self.location}/{stockcode}/{name} is corrupt: {error}") from error
        return records

    def stockcodes(self) -> list[str]:
        """Stockcodes with at least one recorded decision."""
        try:
            with _reaching(self, "list its stockcodes"):
                listed = self.fs.ls(self.base, detail=True, refresh=True)
        except FileNotFoundError:
            return []
        return sorted(
            str(item["name"]).rstrip("/").rsplit("/", 1)[-1] for item in listed if item.get("type") == "directory"
        )


def open_store(store: RegistryStore | str | os.PathLike) -> RegistryStore:
    return store if isinstance(store, RegistryStore) else RegistryStore(store)


def append(store: RegistryStore | str | os.PathLike, record: Record) -> bool:
    """Add ``record`` unless it repeats the latest decision for its stockcode. True if added."""
    store = open_store(store)
    if same_candidate(latest(store, record.stockcode), record):
        return False
    store.put(record)
    return True


def history(store: RegistryStore | str | os.PathLike, stockcode: str) -> list[Record]:
    """Every decision about ``stockcode``, oldest first."""
    return open_store(store).history(stockcode)


def latest(store: RegistryStore | str | os.PathLike, stockcode: str) -> Record | None:
    records = history(store, stockcode)
    return records[-1] if records else None


def approved_model(stockcode: str, store: RegistryStore | str | os.PathLike) -> Record | None:
    """The last approved model of ``stockcode`` — the one to serve — or None."""
    return next((r for r in reversed(history(store, stockcode)) if r.approved), None)


def stockcodes(store: RegistryStore | str | os.PathLike) -> list[str]:
    """Stockcodes with at least one recorded decision."""
    return open_store(store).stockcodes()


# -- showing ---------------------------------------------------------------------------------
def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def describe(record: Record, detailed: bool = True) -> str:
    """A human-readable account of one decision and its lineage."""
    lines = [
        f"{record.decision.upper()}  {record.stockcode}  model {record.model_version}  at {record.decided_at}",
        f"  model      {record.model_path or '(none trained)'}  md5 {record.model_md5}",
        f"  git        {record.git.get('rev')}{'  (work tree dirty)' if record.git.get('dirty') else ''}",
        f"  hashes     data {record.lineage.get('data')}  code {record.lineage.get('code')}"
        f"  params {record.lineage.get('params')}",
    ]
    drift = record.verdicts.get("drift", {})
    fairness = record.verdicts.get("fairness", {})
    lines.append(
        f"  drift      {drift.get('status')}"
        + (f" (columns: {', '.join(drift.get('drifted_columns') or [])})" if drift.get("drifted_columns") else "")
    )
    basis = f" (basis: {fairness['basis']})" if fairness.get("basis") else ""
    lines.append(f"  risk gate  {fairness.get('verdict') or ('passed' if fairness.get('passed') else 'failed')}{basis}")
    for event in drift.get("events") or []:
        lines.append(f"  event      {event.get('note')}")
    for reason in record.reasons or fairness.get("reasons") or []:
        lines.append(f"             - {reason}")
    if record.overrides:
        lines.append(f"  overrides  {' '.join(record.overrides)}")
    for split in ("val", "test"):
        values = record.metrics.get(split) or {}
        flat = {k: v for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if flat:
            lines.append(f"  {split:<10} " + "  ".join(f"{k} {_fmt(v)}" for k, v in sorted(flat.items())))
    if record.run:
        lines.append(f"  run        {record.run}")
    if record.platform:
        shown = ("machine", "cpu", "python", "torch", "numpy")
        lines.append("  platform   " + "  ".join(f"{k} {record.platform.get(k)}" for k in shown))
    if detailed:
        lines.append("  stages (dvc.lock):")
        for address, entry in record.lineage.get("stages", {}).items():
            lines.append(f"    {address}")
            for dep in _entries(entry.get("deps")):
                lines.append(f"      dep  {dep.get('path')}  {dep.get('md5')}")
            for params_file, values in (entry.get("params") or {}).items():
                lines.append(f"      par  {params_file}: {json.dumps(values, sort_keys=True, default=str)}")
            for out in _entries(entry.get("outs")):
                lines.append(f"      out  {out.get('path')}  {out.get('md5')}")
    return "\n".join(lines)
