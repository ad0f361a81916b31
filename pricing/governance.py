"""Which params a run may override and stay approvable: the rule behind a ``candidate``.

Gates are params, but not knobs for anyone. ``governance.approvable_overrides`` in params.yaml
names the keys (``tune.n_trials``) or sections (``tune.``) a run may override and still be
approved; a run that passes every gate but overrode anything else is a **candidate**: recorded
with its verdicts and pushed, but served only once someone signs it off
(``python -m flows.lineage_cli approve``). A run that fails a gate stays rejected.

The ``governance`` section itself is never approvable: a run cannot widen its own list.

Pure: no Prefect, no DVC.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pricing.errors import DataValidationError

SECTION = "governance"
APPROVABLE = "approvable_overrides"


def approvable_overrides(params: Mapping[str, Any]) -> tuple[str, ...]:
    """The keys and sections (``tune.``) of ``params`` a run may override and stay approvable.
    No ``governance`` section: none (every override makes a candidate)."""
    section = params.get(SECTION) or {}
    if not isinstance(section, Mapping):
        raise DataValidationError(f"params.yaml: '{SECTION}' must be a mapping, got {section!r}")
    entries = section.get(APPROVABLE) or []
    if not isinstance(entries, list) or not all(isinstance(e, str) and e.strip(".").strip() for e in entries):
        raise DataValidationError(
            f"params.yaml: {SECTION}.{APPROVABLE} must be a list of param keys or sections (e.g. 'tune.'), "
            f"got {entries!r}")
    refused = [entry for entry in entries if _covers(entry, SECTION) or _covers(SECTION, entry)]
    if refused:
        raise DataValidationError(f"params.yaml: {SECTION}.{APPROVABLE} may not name {SECTION} itself: {refused}")
    return tuple(entries)


def override_key(override: str) -> str:
    """The param key an override string sets (``+tune.x=1``, ``~tune.x``, ``tune.x=1`` -> ``tune.x``)."""
    return override.split("=", 1)[0].strip().lstrip("+~").strip()


def _covers(entry: str, key: str) -> bool:
    name = entry.strip().rstrip(".")
    return key == name or key.startswith(name + ".")


def locked_overrides(overrides: Iterable[str], approvable: Iterable[str]) -> list[str]:
    """The overrides that make a run a candidate: every one whose key no approvable entry covers."""
    allowed = list(approvable)
    return [item for item in overrides
            if _covers(SECTION, override_key(item)) or not any(_covers(entry, override_key(item)) for entry in allowed)]


def candidate_reason(locked: Iterable[str]) -> str:
    """Why a run that passed every gate is a candidate, not approved."""
    return (f"overrides outside {SECTION}.{APPROVABLE}: {', '.join(locked)}; "
            "served only once signed off (lineage_cli approve)")
