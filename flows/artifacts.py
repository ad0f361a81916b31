"""Prefect artifacts of a lineage run: stable keys per stockcode, so the Artifacts page keeps history.

Keys (lowercase, digits and dashes, as Prefect requires):
``lineage-<sc>-summary`` (markdown), ``lineage-<sc>-metrics`` (table),
``lineage-<sc>-drift-report`` and ``lineage-<sc>-shap`` (links), ``lineage-run`` (markdown),
``price-report`` (table: every product of a run or backfill, ``pricing.report``),
``catalogue-shard`` (table: a catalogue run's shard, an outcome per product) and
``catalogue-run`` (markdown: the catalogue run in brief).
"""
from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

from pricing.layout import Layout
from pricing.report import report_rows
from pricing.registry import Record


def artifact_key(stockcode: str, kind: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", stockcode.lower()).strip("-")
    return f"lineage-{slug}-{kind}"


def flatten_numbers(data: Any, prefix: str = "") -> dict[str, float]:
    """Numeric leaves of nested metrics as ``a.b.c`` → value (booleans left out)."""
    flat: dict[str, float] = {}
    if isinstance(data, Mapping):
        for key, value in data.items():
            flat.update(flatten_numbers(value, f"{prefix}{key}."))
    elif isinstance(data, (int, float)) and not isinstance(data, bool):
        flat[prefix[:-1]] = data
    return flat


def metrics_rows(val: Mapping[str, Any] | None, test: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """One row per metric (network and naive baselines alike), val beside test."""
    flat_val, flat_test = flatten_numbers(val or {}), flatten_numbers(test or {})
    names = list(dict.fromkeys([*flat_val, *flat_test]))
    return [{"metric": name, "val": flat_val.get(name), "test": flat_test.get(name)} for name in names]


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def summary_markdown(outcome: Mapping[str, Any]) -> str:
    sc = outcome["stockcode"]
    lines = [f"# Lineage of {sc}: {outcome['status']}", "", outcome["message"], ""]
    drift = outcome.get("drift") or {}
    fairness = outcome.get("fairness")
    lines += ["| gate | verdict |", "|---|---|"]
    if drift:
        columns = ", ".join(drift.get("drifted_columns") or []) or "none"
        lines.append(f"| drift | {drift.get('status')} (drifted columns: {columns}) |")
    if fairness is not None:
        verdict = "passed" if fairness.get("passed") else "failed: " + "; ".join(fairness.get("reasons") or [])
        lines.append(f"| fairness | {verdict} |")
    served = outcome.get("served_version")
    lines += ["", f"**Served model:** {served or 'none approved yet'}"]
    if outcome.get("overrides"):
        lines.append(f"**Params overridden for this run:** `{' '.join(outcome['overrides'])}`")
    rows = [
        row
        for row in metrics_rows(outcome.get("val_metrics"), outcome.get("test_metrics"))
        if re.search(r"mae|mse|rmsle", row["metric"], re.IGNORECASE)
    ]
    if rows:
        lines += ["", "| metric | val | test |", "|---|---|---|"]
        lines += [f"| {row['metric']} | {_fmt(row['val'])} | {_fmt(row['test'])} |" for row in rows]
    stages = outcome.get("stages") or {}
    if stages:
        lines += ["", "| stage | run |", "|---|---|"] + [f"| {a} | {s} |" for a, s in stages.items()]
    return "\n".join(lines)


def publish_stockcode(root: Path, outcome: Mapping[str, Any]) -> None:
    """The markdown summary, the metrics table and the report links of one stockcode."""
    sc = outcome["stockcode"]
    layout = Layout(root.resolve())
    create_markdown_artifact(
        summary_markdown(outcome), key=artifact_key(sc, "summary"), description=f"{sc}: {outcome['status']}"
    )
    rows = metrics_rows(outcome.get("val_metrics"), outcome.get("test_metrics"))
    if rows:
        create_table_artifact(rows, key=artifact_key(sc, "metrics"), description=f"{sc}: val and test metrics")
    report = layout.drift_report(sc)
    if report.exists():
        create_link_artifact(
            report.as_uri(), link_text=f"Drift report {sc}", key=artifact_key(sc, "drift-report"),
            description=f"Evidently drift report of {sc}",
        )
    shap = layout.shap_importance(sc)
    if shap.exists():
        create_link_artifact(
            shap.as_uri(), link_text=f"SHAP importance {sc} (`dvc plots show` renders it)",
            key=artifact_key(sc, "shap"), description=f"SHAP plots of {sc}: {shap.name}, "
            f"{layout.shap_beeswarm(sc).name}",
        )


def publish_run(outcomes: list[Mapping[str, Any]]) -> None:
    lines = ["# Lineage run", "", "| stockcode | outcome | detail |", "|---|---|---|"]
    lines += [f"| {o['stockcode']} | {o['status']} | {o['message']} |" for o in outcomes]
    create_markdown_artifact("\n".join(lines), key="lineage-run", description="Outcome per stockcode")


def publish_price_report(decided: list[tuple[str, Record | None, str]], what: str) -> list[dict[str, Any]]:
    """The run's price report (``pricing.report``) as a table artifact; returns its rows."""
    rows = report_rows(decided)
    acted = sum(row["act_on"] for row in rows)
    create_table_artifact(rows, key="price-report",
                          description=f"{what}: {len(rows)} products, {acted} with an approved price to act on")
    return rows


SHARD_KEY = "catalogue-shard"
SHARD_COLUMNS = ("stockcode", "status", "version", "message")


def publish_shard(outcomes: list[Mapping[str, Any]]) -> None:
    """A shard's outcome per product, where the catalogue run reads it back (``read_shard``)."""
    rows = [{name: outcome.get(name) for name in SHARD_COLUMNS} for outcome in outcomes]
    create_table_artifact(rows, key=SHARD_KEY, description=f"{len(rows)} products of a catalogue run's shard")


def read_shard(flow_run_id: Any) -> list[dict[str, Any]]:
    """The outcomes a shard's flow run published (the newest table if it published more)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[SHARD_KEY]),
                                           flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])),
            sort=ArtifactSort.CREATED_DESC, limit=1)
    if not found:
        raise LookupError(f"flow run {flow_run_id} published no {SHARD_KEY} table")
    data = found[0].data
    return [dict(row) for row in (json.loads(data) if isinstance(data, str) else data)]
