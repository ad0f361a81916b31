"""The approval record: which model version is served per stockcode, and why.

Decisions live in a **registry store** outside any work tree (``stores.registry_store``: a
folder, or an S3 URL in production). Each decision is one immutable JSON object, named by the
stockcode's own sequence (``<stockcode>/0000000007.json``: a conditional create of the next
number, so the order is the store's and never a writer's clock, and two writers never clash).
A decision is ``approved``, ``candidate`` (passed every gate but overrode a gate param: served
once signed off), ``rejected`` or ``insufficient_data``, with the model version (the content
hash of its checkpoint, the same md5 DVC stores it under, spelled by
``pricing.versions.model_version``), the hashes of its data, code and params summarised from
the ``dvc.lock`` entries it descends from (kept in full, so the lineage can be checked out and
re-run), the git revision, the platform that made it, metrics, drift, fairness and price
verdicts, and when.

Governance acts are objects of their own in the same sequence (``Action``): a ``signoff`` of a
candidate, a ``pin``, an ``unpin``, a ``rollback``, a ``revoke``; history is never rewritten.
:func:`serving` is the rule that says, from a stockcode's ordered objects, what is served and
why (or why nothing is).

What a record says, not where it is kept: no storage client, no environment, no Prefect, no
DVC (``tests/test_layers.py``). Callers hand in ``dvc.lock`` entries as plain dicts and a
stockcode's objects as read from the store.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pricing.errors import DataValidationError
from pricing.versions import model_version

APPROVED = "approved"
CANDIDATE = "candidate"  # passed every gate, but overrode a gate param: served once signed off
REJECTED = "rejected"
INSUFFICIENT_DATA = "insufficient_data"
# Too few lines to train: priced from the catalogue's price response (``pricing.pooled``), no model.
POOLED = "pooled"
DECISIONS = (APPROVED, CANDIDATE, REJECTED, INSUFFICIENT_DATA, POOLED)
TRAINED = (APPROVED, CANDIDATE, REJECTED)  # the decisions that name a trained model
# Governance: acts about what is served, each an object of its own (history is never rewritten).
SIGNOFF = "signoff"  # a candidate signed off by someone: servable from then on
PIN = "pin"  # serve this version until unpinned or another pin
UNPIN = "unpin"
ROLLBACK = "rollback"  # serve the version served before the current one
REVOKE = "revoke"  # never serve this version again
ACTIONS = (SIGNOFF, PIN, UNPIN, ROLLBACK, REVOKE)
SCHEMA = 2
CODE_SUFFIXES = (".py",)


class _Stored:
    """What the store keeps as one JSON object: a decision or a governance act."""

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, default=str)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]):
        known = {name for name in cls.__dataclass_fields__}  # type: ignore[attr-defined]
        return cls(**{key: value for key, value in data.items() if key in known})


@dataclass(frozen=True)
class Record(_Stored):
    """One decision about one candidate model of one stockcode."""

    stockcode: str
    decision: str  # "approved" | "candidate" | "rejected" | "insufficient_data"
    model_version: str  # pricing.versions.model_version of the checkpoint's md5 (of the lineage without one)
    model_path: str | None  # the checkpoint, relative to the project root (None: nothing trained)
    model_md5: str | None  # its full md5: the DVC cache / remote object it is stored as
    decided_at: str  # ISO 8601, UTC
    git: dict[str, Any]  # {"rev": ..., "dirty": ...} of the checkout it was made in
    lineage: dict[str, Any]  # {"data", "code", "params": hashes, "stages": {address: dvc.lock entry}}
    metrics: dict[str, Any]  # {"val": ..., "test": ..., "risk": ...}
    verdicts: dict[str, Any]  # {"drift": {...}, "fairness": {"passed": ..., "reasons": [...]}}
    reasons: list[str] = field(default_factory=list)  # why rejected or a candidate (empty when approved)
    overrides: list[str] = field(default_factory=list)  # params overridden for that run
    run: dict[str, Any] = field(default_factory=dict)  # orchestration provenance (flow run id…)
    platform: dict[str, Any] = field(default_factory=dict)  # CPU, Python, torch, numpy that made it
    schema: int = SCHEMA

    @property
    def approved(self) -> bool:
        return self.decision == APPROVED


@dataclass(frozen=True)
class Action(_Stored):
    """A governance act about what is served for one stockcode: a sign-off, a pin, an unpin, a
    rollback or a revocation. An object of its own beside the decisions; it never edits one."""

    stockcode: str
    action: str  # one of ACTIONS
    model_version: str | None  # the version acted on (None: unpin, rollback)
    by: str  # who
    reason: str  # why (required for a sign-off and a revocation)
    at: str  # ISO 8601, UTC: for people; the order is the store's sequence, not this
    schema: int = SCHEMA


def make_action(stockcode: str, action: str, model_version: str | None, by: str, reason: str = "",
                now: datetime | None = None) -> Action:
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {ACTIONS}, got {action!r}")
    if not isinstance(by, str) or not by.strip():
        raise DataValidationError(f"{stockcode}: {action} needs who does it (--by NAME), got {by!r}")
    if action in (SIGNOFF, REVOKE) and (not isinstance(reason, str) or not reason.strip()):
        raise DataValidationError(f"{stockcode}: {action} needs a reason (--reason TEXT), got {reason!r}")
    if (model_version is None) != (action in (UNPIN, ROLLBACK)):
        raise ValueError(f"{action} {'takes no' if action in (UNPIN, ROLLBACK) else 'needs a'} model version")
    return Action(stockcode=stockcode, action=action, model_version=model_version, by=by.strip(),
                  reason=(reason or "").strip(),
                  at=(now or datetime.now(timezone.utc)).isoformat(timespec="microseconds"))


def parse_object(data: Mapping[str, Any]) -> Record | Action:
    """A stored object as what it is: a governance act (it has ``action``) or a decision."""
    return Action.from_dict(data) if "action" in data else Record.from_dict(data)


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
    version = model_version(md5 or _digest(lineage))
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


def peer_risk_metrics(histories: Mapping[str, list[Record]]) -> dict[str, dict[str, Any]]:
    """The risk-stage metrics of each stockcode's latest decision that measured them, by
    ``<stockcode>@<model version>``: the peers a candidate's fairness is pooled with."""
    peers = {}
    for code, records in sorted(histories.items()):
        trained = next((r for r in reversed(records)
                        if isinstance(r.metrics.get("risk"), Mapping) and r.metrics["risk"].get("checks")), None)
        if trained is not None:
            peers[f"{code}@{trained.model_version}"] = dict(trained.metrics["risk"])
    return peers


# -- object names ------------------------------------------------------------------------------
# Stockcodes become object-name prefixes: keep them to what every store spells the same way.
# Matched whole (fullmatch): ``$`` would also match before a trailing newline.
_STOCKCODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def check_stockcode(stockcode: str) -> str:
    if not isinstance(stockcode, str) or not _STOCKCODE.fullmatch(stockcode):
        raise DataValidationError(
            f"stockcode {stockcode!r} is not a valid stock code (letters, digits, '.', '_', '-'; at most 64)"
        )
    return stockcode


# Objects are named by a per-stockcode sequence, ``0000000001.json``, ``0000000002.json``…: the
# order is the store's, not a writer's clock. The name is the number alone, so two writers that
# take the same next number ask the store for the same object, and a conditional create lets
# exactly one have it (the other takes the next number). Objects written by older code are
# named ``<time>Z-<decision>-<version>-<nonce>.json``: they are read before every sequenced one,
# in the order of their names (their writers' clocks), as they always were.
_SEQUENCED = re.compile(r"(\d{10})\.json")
SEQUENCE_DIGITS = 10


def sequence_number(name: str) -> int | None:
    """The sequence number an object's name holds (None: an object of older code)."""
    match = _SEQUENCED.fullmatch(name)
    return int(match.group(1)) if match else None


def sequenced_name(number: int) -> str:
    return f"{number:0{SEQUENCE_DIGITS}d}.json"


def history_order(name: str) -> tuple[int, int, str]:
    """Sort key of object names in history order: older code's objects by name, then the sequence."""
    number = sequence_number(name)
    return (0, 0, name) if number is None else (1, number, name)


def next_sequence_number(names: Iterable[str]) -> int:
    """The number the next object of a stockcode whose objects are ``names`` tries first."""
    return max((n for n in map(sequence_number, names) if n is not None), default=0) + 1


def is_object_name(name: str) -> bool:
    """A stored object (JSON), not a writer's temporary file (hidden) or anything else."""
    return name.endswith(".json") and not name.startswith(".")


def decisions(items: Iterable[Record | Action]) -> list[Record]:
    """The decisions among a history's objects, in order."""
    return [item for item in items if isinstance(item, Record)]


def check_filed_under(stockcode: str, history: list[Record]) -> None:
    """Every record kept under ``stockcode``'s folder is about ``stockcode``: a record copied
    under another product's folder must not be served as that product's model."""
    strangers = [record for record in history if record.stockcode != stockcode]
    if strangers:
        stranger = strangers[-1]
        raise DataValidationError(
            f"{len(strangers)} record(s) kept under {stockcode} are about another stockcode: the "
            f"{stranger.decision} model {stranger.model_version} of {stranger.stockcode!r} ({stranger.decided_at}); "
            f"refused until removed")


def last_decided(records: Iterable[Record], decision: str) -> Record | None:
    """The last record of ``decision`` among ``records``."""
    return next((r for r in reversed(list(records)) if r.decision == decision), None)


# -- what is served ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Serving:
    """What is served for a stockcode, and why; or why nothing is."""

    stockcode: str
    record: Record | None  # the decision whose model is served (an approval, or a signed-off candidate)
    why: str  # e.g. "approved (entry #3)", "model 3f2a… revoked by J. Doe: wrong data"
    pinned: str | None = None  # the version a pin holds, if one does
    servable: tuple[str, ...] = ()  # versions approved or signed off, not revoked
    candidates: tuple[str, ...] = ()  # candidates not (yet) signed off, not revoked
    revoked: Mapping[str, Action] = field(default_factory=dict)

    @property
    def version(self) -> str | None:
        return self.record.model_version if self.record else None


def _who(action: Action, n: int) -> str:
    return f"{action.by}{': ' + action.reason if action.reason else ''} (entry #{n})"


def serving(stockcode: str, items: Iterable[Record | Action]) -> Serving:
    """The serving rule, over a stockcode's decisions and governance acts in history order:

    - the latest version to become servable is served: an ``approved`` decision, or a
      ``candidate`` once a sign-off names it;
    - a pin serves its version instead, until an unpin or another pin;
    - a rollback sets the served version aside and serves the one served before it (still
      servable), until a newer version becomes servable, a pin, or another rollback;
    - a revoked version is never served again (a pin or rollback holding it lapses).
    Acts that name no servable version (a pin of a rejected one, a sign-off of a non-candidate)
    change nothing: the commands refuse them before they are written (:func:`check_action`).
    """
    order: list[str] = []  # servable versions, in the order they became servable
    servable: dict[str, tuple[Record, str]] = {}
    candidates: dict[str, Record] = {}
    revoked: dict[str, Action] = {}
    rolled_back: dict[str, Action] = {}
    pin: tuple[str, str] | None = None
    hold: tuple[str, str] | None = None  # where a rollback stepped back to
    timeline: list[str] = []  # the versions served, as they changed
    withdrawn: Action | None = None  # the last revoke or rollback of a servable version
    last: Record | None = None

    def current() -> tuple[str | None, str]:
        for held in (pin, hold):
            if held and held[0] not in revoked:
                return held
        for version in reversed(order):
            if version not in revoked and version not in rolled_back:
                return version, servable[version][1]
        return None, ""

    def becomes_servable(version: str, record: Record, why: str) -> None:
        nonlocal hold
        if version in order:
            order.remove(version)
        order.append(version)
        servable[version] = (record, why)
        rolled_back.pop(version, None)
        hold = None

    for n, item in enumerate(items, 1):
        if isinstance(item, Record):
            last = item
            if item.decision == APPROVED:
                becomes_servable(item.model_version, item, f"approved (entry #{n})")
            elif item.decision == CANDIDATE:
                candidates[item.model_version] = item
        elif item.action == SIGNOFF and item.model_version in candidates and item.model_version not in revoked:
            becomes_servable(item.model_version, candidates.pop(item.model_version),
                             f"candidate signed off by {_who(item, n)}")
        elif item.action == PIN and item.model_version in servable and item.model_version not in revoked:
            pin, hold = (item.model_version, f"pinned by {_who(item, n)}"), None
        elif item.action == UNPIN:
            pin = None
        elif item.action == REVOKE:
            revoked[str(item.model_version)] = item
            withdrawn = item if item.model_version in servable else withdrawn
        elif item.action == ROLLBACK:
            served, _ = current()
            if served is not None:
                rolled_back[served], withdrawn = item, item
                pin = None if pin and pin[0] == served else pin
                back = next((v for v in reversed(timeline)
                             if v != served and v not in revoked and v not in rolled_back), None)
                hold = (back, f"served again: {served} rolled back by {_who(item, n)}") if back else None
        served, _ = current()
        if served and (not timeline or timeline[-1] != served):
            timeline.append(served)

    version, why = current()
    pinned = pin[0] if pin and pin[0] not in revoked else None
    common = {"pinned": pinned, "revoked": dict(revoked),
              "servable": tuple(v for v in order if v not in revoked),
              "candidates": tuple(v for v in candidates if v not in revoked)}
    if version is not None:
        return Serving(stockcode, servable[version][0], why, **common)
    return Serving(stockcode, None, _nothing_served(stockcode, last, withdrawn, revoked, common["candidates"]),
                   **common)


def _nothing_served(stockcode: str, last: Record | None, withdrawn: Action | None, revoked: Mapping[str, Action],
                    candidates: tuple[str, ...]) -> str:
    """Why nothing is served: the last withdrawal of a servable model, else what awaits."""
    if last is None:
        return "no decision recorded"
    if withdrawn is not None and withdrawn.action == REVOKE:
        return f"model {withdrawn.model_version} revoked by {withdrawn.by}: {withdrawn.reason}"
    if withdrawn is not None:
        return f"rolled back by {withdrawn.by}, and no earlier model is left to serve"
    if candidates:
        version = candidates[-1]
        return (f"candidate {version} awaits a sign-off "
                f"(python -m flows.lineage_cli approve {stockcode} {version} --by NAME --reason TEXT)")
    if last.model_version in revoked:
        act = revoked[last.model_version]
        return f"{last.decision} model {last.model_version} revoked by {act.by}: {act.reason}"
    if last.decision == POOLED:
        return ("no model: too few lines to train one (latest decision: pooled); its price, from the catalogue's "
                "price response, is in the catalogue run's report")
    return f"no approved model (latest decision: {last.decision})"


def resolve_version(stockcode: str, records: Iterable[Record], prefix: str) -> str:
    """The one trained model version of ``records`` that starts with ``prefix``."""
    versions = list(dict.fromkeys(r.model_version for r in records if r.decision in TRAINED))
    matches = [v for v in versions if prefix and v.startswith(prefix)]
    if not matches:
        raise DataValidationError(f"{stockcode}: no recorded model version starting {prefix!r} "
                                  f"(known: {', '.join(versions) or 'none'})")
    if len(matches) > 1:
        raise DataValidationError(f"{stockcode}: version {prefix!r} is ambiguous: {', '.join(matches)}")
    return matches[0]


def check_action(items: list[Record | Action], action: Action) -> Serving:
    """Refuse an act that would mean nothing (a sign-off of a non-candidate, a pin of a revoked
    version, a rollback with nothing to step back to…), naming why; else what is served after it."""
    sc, version = action.stockcode, action.model_version
    before = serving(sc, items)
    after = serving(sc, [*items, action])
    kinds = ", ".join(sorted({r.decision for r in decisions(items) if r.model_version == version}))
    if version in before.revoked:
        act = before.revoked[version]
        raise DataValidationError(f"{sc}: model {version} is already revoked by {act.by}: {act.reason}")
    if action.action == SIGNOFF and version not in before.candidates:
        signed = " (already signed off)" if version in before.servable and CANDIDATE in kinds else ""
        problem = f"model {version} is not a candidate awaiting a sign-off{signed} (its decisions: {kinds})"
    elif action.action == PIN and version not in before.servable:
        problem = f"model {version} cannot be pinned: it was never approved or signed off (its decisions: {kinds})"
    elif action.action == PIN and before.pinned == version:
        problem = f"model {version} is already pinned"
    elif action.action == UNPIN and not before.pinned:
        problem = "no pin is in effect"
    elif action.action == ROLLBACK and before.record is None:
        problem = f"nothing is served to roll back ({before.why})"
    elif action.action == ROLLBACK and after.record is None:
        problem = f"no earlier model to roll back to from {before.version} (revoke it to serve nothing)"
    else:
        problem = None
    if problem:
        raise DataValidationError(f"{sc}: {problem}")
    return after


# -- showing ---------------------------------------------------------------------------------
def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def describe(record: Record, detailed: bool = True) -> str:
    """A human-readable account of one decision and its lineage."""
    lines = [
        f"{record.decision.upper()}  {record.stockcode}  model {record.model_version}  at {record.decided_at}",
        f"  model      {record.model_path or '(none trained)'}  md5 {record.model_md5}",
        f"  git        {record.git.get('rev')}"
        + (f"  (work tree dirty: snapshot {record.git.get('commit')}, kept by {record.git.get('ref')}, "
           f"pushed: {record.git.get('pushed_to') or 'no git remote'})" if record.git.get("dirty") else ""),
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


def describe_action(action: Action) -> str:
    """A governance act in one line."""
    target = f" model {action.model_version}" if action.model_version else ""
    why = f": {action.reason}" if action.reason else ""
    return f"{action.action.upper()}  {action.stockcode}{target}  by {action.by}{why}  at {action.at}"
