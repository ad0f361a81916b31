"""The approval record: which model version is served per stockcode, and why.

A plain, append-only JSON-lines file per stockcode (``registry/<stockcode>.jsonl``), tracked
by git beside ``dvc.lock``. Each line is one decision — ``approved`` or ``rejected`` — with
the model version (the content hash of its checkpoint, the same md5 DVC stores it under),
the hashes of its data, code and params summarised from the ``dvc.lock`` entries it descends
from (kept in full too), the git revision, metrics, drift and fairness verdicts, and when.

Read API (what the app uses)::

    from pricing.registry import approved_model
    record = approved_model("85123A", root)   # the last approved, or None
    record.model_path, record.model_md5, record.model_version

Pure: no Prefect, no DVC. Callers hand in ``dvc.lock`` entries as plain dicts.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pricing.layout import Layout

APPROVED = "approved"
REJECTED = "rejected"
DECISIONS = (APPROVED, REJECTED)
SCHEMA = 1
CODE_SUFFIXES = (".py",)


def record_file(root: Path | str, stockcode: str) -> Path:
    """Where the decisions about ``stockcode`` are recorded."""
    return Layout(Path(root)).registry_record(stockcode)


@dataclass(frozen=True)
class Record:
    """One decision about one candidate model of one stockcode."""

    stockcode: str
    decision: str  # "approved" | "rejected"
    model_version: str  # first 12 hex digits of the checkpoint's md5
    model_path: str  # the checkpoint, relative to the project root
    model_md5: str | None  # its full md5: the DVC cache / remote object it is stored as
    decided_at: str  # ISO 8601, UTC
    git: dict[str, Any]  # {"rev": ..., "dirty": ...} of the checkout it was made in
    lineage: dict[str, Any]  # {"data", "code", "params": hashes, "stages": {address: dvc.lock entry}}
    metrics: dict[str, Any]  # {"val": ..., "test": ..., "risk": ...}
    verdicts: dict[str, Any]  # {"drift": {...}, "fairness": {"passed": ..., "reasons": [...]}}
    reasons: list[str] = field(default_factory=list)  # why rejected (empty when approved)
    overrides: list[str] = field(default_factory=list)  # params overridden for that run
    run: dict[str, Any] = field(default_factory=dict)  # orchestration provenance (flow run id…)
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


def make_record(
    *,
    stockcode: str,
    decision: str,
    model_path: str,
    stages: Mapping[str, Mapping[str, Any]],
    git: Mapping[str, Any],
    metrics: Mapping[str, Any],
    verdicts: Mapping[str, Any],
    reasons: Iterable[str] = (),
    overrides: Iterable[str] = (),
    run: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> Record:
    if decision not in DECISIONS:
        raise ValueError(f"decision must be one of {DECISIONS}, got {decision!r}")
    lineage = summarise_lineage(stages)
    md5 = output_md5(stages, model_path)
    version = (md5 or _digest(lineage))[:12]
    return Record(
        stockcode=stockcode,
        decision=decision,
        model_version=version,
        model_path=model_path,
        model_md5=md5,
        decided_at=(now or datetime.now(timezone.utc)).isoformat(timespec="seconds"),
        git=dict(git),
        lineage=lineage,
        metrics=dict(metrics),
        verdicts=dict(verdicts),
        reasons=list(reasons),
        overrides=list(overrides),
        run=dict(run or {}),
    )


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
    }


def fairness_verdict(risk_metrics: Mapping[str, Any]) -> dict[str, Any]:
    return {"passed": risk_metrics.get("passed") is True, "reasons": list(risk_metrics.get("reasons") or [])}


# -- reading and writing ---------------------------------------------------------------------
def append(root: Path | str, record: Record) -> bool:
    """Add ``record`` unless it repeats the latest decision for its stockcode. True if added."""
    if same_candidate(latest(root, record.stockcode), record):
        return False
    path = record_file(root, record.stockcode)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        handle.write(record.to_json() + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return True


def history(root: Path | str, stockcode: str) -> list[Record]:
    """Every decision about ``stockcode``, oldest first."""
    path = record_file(root, stockcode)
    if not path.exists():
        return []
    return [Record.from_dict(json.loads(line)) for line in path.read_text().splitlines() if line.strip()]


def latest(root: Path | str, stockcode: str) -> Record | None:
    records = history(root, stockcode)
    return records[-1] if records else None


def approved_model(stockcode: str, root: Path | str = ".") -> Record | None:
    """The last approved model of ``stockcode`` — the one to serve — or None."""
    return next((r for r in reversed(history(root, stockcode)) if r.approved), None)


def stockcodes(root: Path | str = ".") -> list[str]:
    """Stockcodes with at least one recorded decision."""
    folder = Layout(Path(root)).registry_dir
    return sorted(p.stem for p in folder.glob("*.jsonl")) if folder.is_dir() else []


# -- showing ---------------------------------------------------------------------------------
def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def describe(record: Record, detailed: bool = True) -> str:
    """A human-readable account of one decision and its lineage."""
    lines = [
        f"{record.decision.upper()}  {record.stockcode}  model {record.model_version}  at {record.decided_at}",
        f"  model      {record.model_path}  md5 {record.model_md5}",
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
    lines.append(f"  fairness   {'passed' if fairness.get('passed') else 'failed'}")
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
