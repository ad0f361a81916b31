"""A catalogue run's report as an artifact of the lineage: the table of every product's
recommendation (parquet and CSV) and the distributions of moves and elasticities (CSV, for
``dvc plots``), ``dvc add``-ed in a workspace and pushed to the DVC remote; the registry store
then names it (``RegistryStore.put_report``), where the price API's ``/v1/recommendations``
finds the newest by its hash.
"""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from pricing.report import report_frame, report_histograms
from stores.registry_store import RegistryStore
from tasks import dvcrepo, workspace
from tasks.approval import push
from tasks.stage_task import run_logger

# Top level: /reports/ is git-ignored, and DVC refuses a .dvc file git ignores.
FOLDER = Path("catalogue_report")
TABLE = "price_report.parquet"
def publish_catalogue_report(project: Path, revision: dict[str, Any], probe: str, rows: list[dict[str, Any]],
                             run_key: str, store: RegistryStore, overrides: list[str]) -> dict[str, Any]:
    """Write, ``dvc add`` and push the run's report folder; record it in the registry store.
    Returns what was recorded (the folder's ``.dir`` hash among it)."""
    ws = workspace.create(project, probe, [], source=revision)
    try:
        folder = ws.path / FOLDER
        folder.mkdir(parents=True, exist_ok=True)
        frame = report_frame(rows)
        frame.write_parquet(folder / TABLE)
        frame.write_csv(folder / "price_report.csv")
        for name, bins in report_histograms(rows).items():
            pl.DataFrame(bins, schema={"low": pl.Float64, "high": pl.Float64, "products": pl.Int64},
                         orient="row").write_csv(folder / f"{name}.csv")
        added = dvcrepo.run_dvc(["add", FOLDER.as_posix()], ws.path, echo=run_logger().info)
        if added.returncode != 0:
            raise dvcrepo.classify_failure(f"dvc add {FOLDER}", added)
        pointer = ws.path / f"{FOLDER.as_posix()}.dvc"
        push(ws.path, [pointer.relative_to(ws.path).as_posix()])
        (out,) = yaml.safe_load(pointer.read_text())["outs"]
        report = {
            "kind": "catalogue_report", "run_key": run_key, "created_at": datetime.now(timezone.utc).isoformat(),
            "revision": revision.get("commit"), "overrides": list(overrides), "products": len(rows),
            "act_on": sum(bool(row["act_on"]) for row in rows),
            "decisions": dict(sorted(pl.Series([row["decision"] for row in rows], dtype=pl.Utf8)
                                     .value_counts().iter_rows())),
            "folder": {"path": FOLDER.as_posix(), "md5": out["md5"], "files": out.get("nfiles")},
            "table": TABLE,
        }
        report["name"] = store.put_report(report)
        return report
    finally:
        workspace.remove(ws)
