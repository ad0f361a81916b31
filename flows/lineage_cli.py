"""What is approved for a stockcode, the full lineage behind it, and that lineage again.

    python -m flows.lineage_cli show 85123A          # served model + its lineage, then history
    python -m flows.lineage_cli show 85123A --json   # the records as JSON
    python -m flows.lineage_cli list                 # every stockcode with its served version
    python -m flows.lineage_cli checkout 85123A [VERSION]   # a workspace holding that lineage
    python -m flows.lineage_cli reproduce 85123A [VERSION]  # re-run it: same model bytes?

``show`` and ``list`` read the registry store only (``orchestration.registry`` in params.yaml,
or PRICELINEAGE_REGISTRY): fast, no Prefect, no DVC. ``checkout`` restores a record's exact
lineage by hash (from the DVC cache, else the remote); ``reproduce`` runs it again, stage by
stage in lineage order, and exits 1 naming every output whose md5 is not the record's.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from pricing import registry
from pricing.errors import DataValidationError
from pricing.layout import registry_location, workspaces_dir
from tasks.stages import lineage_stages


def _store(root: Path) -> registry.RegistryStore:
    """The registry store this command reads, named on stderr: which one follows the shell's
    environment (PRICELINEAGE_REGISTRY, PRICELINEAGE_STORAGE) before params.yaml."""
    store = registry.RegistryStore(registry_location(root))
    print(f"registry store {store.location}", file=sys.stderr)
    return store


def show(root: Path, stockcode: str, as_json: bool) -> int:
    store = _store(root)
    records = registry.history(store, stockcode)
    served = registry.approved_model(stockcode, store)
    if as_json:
        print(json.dumps({"approved": asdict(served) if served else None,
                          "history": [asdict(r) for r in records]}, indent=2, default=str))
        return 0 if records else 1
    if not records:
        print(f"{stockcode}: no decision recorded in {store.location}")
        return 1
    if served:
        print(f"{stockcode}: serving model {served.model_version}\n")
        print(registry.describe(served, detailed=True))
    else:
        print(f"{stockcode}: no model approved yet")
    print(f"\nHistory ({len(records)} decisions, newest first):")
    for record in reversed(records):
        print(registry.describe(record, detailed=False))
    return 0


def list_all(root: Path) -> int:
    store = _store(root)
    for stockcode in registry.stockcodes(store):
        records = registry.history(store, stockcode)
        served = next((r for r in reversed(records) if r.approved), None)
        last = records[-1] if records else None
        print(f"{stockcode:10} serving {served.model_version if served else '—':14} "
              f"last decision: {last.decision if last else '—'} {last.decided_at if last else ''}")
    return 0


def chosen_record(root: Path, stockcode: str, version: str | None) -> registry.Record:
    store = _store(root)
    if version is None:
        record = registry.approved_model(stockcode, store)
        if record is None:
            raise DataValidationError(f"{stockcode}: no approved model in {store.location}")
        return record
    matches = [r for r in registry.history(store, stockcode) if r.model_version.startswith(version)]
    if not matches:
        raise DataValidationError(f"{stockcode}: no recorded model version starting {version!r} in {store.location}")
    return matches[-1]


def checkout(root: Path, stockcode: str, version: str | None) -> int:
    from tasks import workspace

    record = chosen_record(root, stockcode, version)
    ws = workspace.from_record(root.resolve(), record, base=workspaces_dir(root) / "checkouts")
    print(f"{stockcode}: model {record.model_version} ({record.decision} {record.decided_at}) checked out in\n{ws.path}")
    print("Its dvc.lock is the record's; `dvc status` there shows it up to date.")
    return 0


def reproduce(root: Path, stockcode: str, version: str | None, keep: bool) -> int:
    from tasks import workspace

    record = chosen_record(root, stockcode, version)
    if not record.model_path or not record.model_md5:
        raise DataValidationError(f"{stockcode}: decision {record.model_version} trained no model to reproduce")
    recorded = dict(record.lineage.get("stages") or {})
    stages = recorded_in_lineage_order(record.stockcode, recorded)
    ws = workspace.from_record(root.resolve(), record, base=workspaces_dir(root) / "reproductions", fetch=False)
    print(f"{stockcode}: re-running {len(stages)} stages of model {record.model_version} in {ws.path}")
    again = workspace.reproduce(ws, stages)
    new_md5 = registry.output_md5(again, record.model_path)
    same = new_md5 == record.model_md5
    print(f"  recorded model md5   {record.model_md5}")
    print(f"  reproduced model md5 {new_md5}  -> {'IDENTICAL bytes' if same else 'DIFFERENT bytes'}")
    differing: list[str] = []
    for address in stages:
        changed = registry.differing_outputs(recorded[address], again.get(address))
        differing += changed
        print(f"  {address:32} {'same outputs' if not changed else 'differs: ' + ', '.join(changed)}")
    if differing:
        print(f"{len(differing)} output(s) differ from the record: {', '.join(differing)}")
        now = registry.current_platform()
        print(f"  made on   {record.platform}\n  rerun on  {now}")
        print("  (the same seed gives other bytes on another CPU or library version)")
    if not keep:
        workspace.remove(ws)
    return 1 if differing else 0


def recorded_in_lineage_order(stockcode: str, recorded: dict) -> list[str]:
    """The record's stages in the order the lineage runs them (a record's keys are sorted by
    name, which puts assess before tune)."""
    ordered = [address for address in lineage_stages(stockcode) if address in recorded]
    unknown = sorted(set(recorded) - set(ordered))
    if unknown:
        raise DataValidationError(f"{stockcode}: the record holds stages outside its lineage: {', '.join(unknown)}")
    return ordered


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.lineage_cli", description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=".", help="project directory (default: .)")
    commands = parser.add_subparsers(dest="command", required=True)
    show_parser = commands.add_parser("show", help="what is approved for a stockcode, and its lineage")
    show_parser.add_argument("stockcode")
    show_parser.add_argument("--json", action="store_true")
    commands.add_parser("list", help="every stockcode with a recorded decision")
    for name, text in (("checkout", "a workspace holding a recorded lineage, restored by hash"),
                       ("reproduce", "re-run a recorded lineage and compare the model bytes")):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("stockcode")
        sub.add_argument("version", nargs="?", default=None, help="model version (prefix); default: the served one")
        if name == "reproduce":
            sub.add_argument("--keep", action="store_true", help="keep the workspace afterwards")
    args = parser.parse_args(argv)
    root = Path(args.root)
    try:
        if args.command == "show":
            return show(root, args.stockcode, args.json)
        if args.command == "checkout":
            return checkout(root, args.stockcode, args.version)
        if args.command == "reproduce":
            return reproduce(root, args.stockcode, args.version, args.keep)
        return list_all(root)
    except DataValidationError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
