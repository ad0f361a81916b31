"""What is served for a stockcode and why, the full lineage behind it, that lineage again, and
the governance acts that decide what is served.

    python -m flows.lineage_cli show 85123A          # served model, why, its lineage, then history
    python -m flows.lineage_cli show 85123A --json   # the records and acts as JSON
    python -m flows.lineage_cli list                 # every stockcode with its served version
    python -m flows.lineage_cli checkout 85123A [VERSION]   # a workspace holding that lineage
    python -m flows.lineage_cli reproduce 85123A [VERSION]  # re-run it: same model bytes?
    python -m flows.lineage_cli approve 85123A VERSION --by NAME --reason TEXT  # sign off a candidate
    python -m flows.lineage_cli pin 85123A VERSION [--by NAME] [--reason TEXT]  # serve it until unpinned
    python -m flows.lineage_cli unpin 85123A
    python -m flows.lineage_cli rollback 85123A      # serve the version served before this one
    python -m flows.lineage_cli revoke 85123A VERSION --reason TEXT             # never serve it again
    python -m flows.lineage_cli settings             # every setting in effect, and where it came from
    python -m flows.lineage_cli rebuild-heads        # every stockcode's head and the index, from the objects

``show`` and ``list`` read the registry store only (``orchestration.registry`` in params.yaml,
or PRICELINEAGE_REGISTRY: see ``settings``): fast, no Prefect, no DVC. ``checkout`` restores a
record's exact lineage by hash (from the DVC cache, else the remote); ``reproduce`` runs it
again, stage by stage in lineage order, and exits 1 naming every output whose md5 is not the
record's.

``approve``, ``pin``, ``unpin``, ``rollback`` and ``revoke`` each write one object of their own
to the registry store, next in the stockcode's sequence (``pricing.registry.Action``: who, why,
which version); no record is ever edited. The price API serves by them within its reload
interval. An act that would mean nothing (a sign-off of a version that is not a candidate, a pin
of a revoked one, an empty ``--by``) is refused with the reason, exit 2, and nothing written.
``--by`` defaults to the login name except for ``approve``, where it must be given.

``rebuild-heads`` works out again, from every object, each stockcode's head (what is served)
and the index naming them (``stores.registry_store.rebuild_heads``): after a writer died
between an object and its head, after objects were copied in by hand, or for a store written
before heads. Readers never trust a head the objects contradict; this makes them cheap again.

``settings`` prints every setting the flows, tasks and the price API read (``stores.settings``):
its effective value and where it came from, the environment (``PRICELINEAGE_*``), params.yaml
or the default; exit 2 if one does not parse.
"""
from __future__ import annotations

import argparse
import getpass
import json
import sys
from dataclasses import asdict
from pathlib import Path

from pricing import registry
from pricing.errors import DataValidationError
from stores import registry_store
from stores.registry_store import RegistryStore
from stores.settings import load_settings
from tasks.stages import lineage_stages


def _store(root: Path) -> RegistryStore:
    """The registry store this command reads, named on stderr: which one follows the shell's
    environment (PRICELINEAGE_REGISTRY, PRICELINEAGE_STORAGE) before params.yaml."""
    store = RegistryStore(load_settings(root).registry)
    print(f"registry store {store.location}", file=sys.stderr)
    return store


def _serving_line(serving: registry.Serving) -> str:
    if serving.record is None:
        return f"{serving.stockcode}: nothing served: {serving.why}"
    return f"{serving.stockcode}: serving model {serving.version}: {serving.why}"


def show(root: Path, stockcode: str, as_json: bool) -> int:
    store = _store(root)
    entries = store.entries(stockcode)
    items = [entry.item for entry in entries]
    serving = registry.serving(stockcode, items)
    if as_json:
        print(json.dumps({"approved": asdict(serving.record) if serving.record else None,
                          "serving": {"model_version": serving.version, "why": serving.why, "pinned": serving.pinned},
                          "history": [asdict(r) for r in registry.decisions(items)],
                          "entries": [{"name": e.name, "sequence": e.sequence, **asdict(e.item)} for e in entries]},
                         indent=2, default=str))
        return 0 if entries else 1
    if not entries:
        print(f"{stockcode}: no decision recorded in {store.location}")
        return 1
    print(_serving_line(serving))
    if serving.record:
        print()
        print(registry.describe(serving.record, detailed=True))
    print(f"\nHistory ({len(entries)} objects, in the store's order, newest first):")
    for n, entry in reversed(list(enumerate(entries, 1))):
        text = (registry.describe(entry.item, detailed=False) if isinstance(entry.item, registry.Record)
                else registry.describe_action(entry.item))
        print(f"#{n} {entry.name}\n{text}")
    return 0


def list_all(root: Path) -> int:
    store = _store(root)
    for stockcode in store.stockcodes():
        items = [entry.item for entry in store.entries(stockcode)]
        serving = registry.serving(stockcode, items)
        records = registry.decisions(items)
        last = records[-1] if records else None
        print(f"{stockcode:10} serving {serving.version or '—':14} "
              f"last decision: {last.decision if last else '—'} {last.decided_at if last else ''}"
              f"{'' if serving.record else '  (' + serving.why + ')'}")
    return 0


def govern(root: Path, stockcode: str, action: str, version: str | None, by: str, reason: str) -> int:
    """Write one governance act (see ``stores.registry_store.govern``) and say what is served after it."""
    act, after = registry_store.govern(_store(root), stockcode, action, version, by, reason)
    print(registry.describe_action(act))
    print(_serving_line(after))
    return 0


def chosen_record(root: Path, stockcode: str, version: str | None) -> registry.Record:
    store = _store(root)
    if version is None:
        record = registry_store.approved_model(stockcode, store)
        if record is None:
            raise DataValidationError(f"{stockcode}: no approved model in {store.location}")
        return record
    matches = [r for r in store.history(stockcode) if r.model_version.startswith(version)]
    if not matches:
        raise DataValidationError(f"{stockcode}: no recorded model version starting {version!r} in {store.location}")
    return matches[-1]


def checkout(root: Path, stockcode: str, version: str | None) -> int:
    from tasks import workspace

    record = chosen_record(root, stockcode, version)
    ws = workspace.from_record(root.resolve(), record, base=load_settings(root).workspaces / "checkouts")
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
    ws = workspace.from_record(root.resolve(), record, base=load_settings(root).workspaces / "reproductions",
                               fetch=False)
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


def rebuild_heads(root: Path) -> int:
    store = _store(root)
    heads = registry_store.rebuild_heads(store)
    refused = sorted(sc for sc, head in heads.items() if head.refused)
    print(f"{len(heads)} heads rebuilt from their objects in {store.location}"
          + (f"; refused (nothing served): {', '.join(refused)}" if refused else ""))
    return 0


def show_settings(root: Path) -> int:
    """Every setting in effect for the checkout at ``root``, and where each came from."""
    rows = load_settings(root.resolve()).explain()
    width = max(len(name) for name, _, _ in rows)
    value_width = min(60, max(len(value) for _, value, _ in rows))
    for name, value, where in rows:
        print(f"{name:{width}}  {value:{value_width}}  {where}")
    return 2 if any(value.startswith("error: ") for _, value, _ in rows) else 0


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
    commands.add_parser("rebuild-heads", help="every stockcode's head and the index, worked out again from the objects")
    commands.add_parser("settings", help="every setting in effect, and where it came from (env, params.yaml, default)")
    for name, text in (("checkout", "a workspace holding a recorded lineage, restored by hash"),
                       ("reproduce", "re-run a recorded lineage and compare the model bytes")):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("stockcode")
        sub.add_argument("version", nargs="?", default=None, help="model version (prefix); default: the served one")
        if name == "reproduce":
            sub.add_argument("--keep", action="store_true", help="keep the workspace afterwards")
    acts = {
        "approve": (registry.SIGNOFF, "sign off a candidate: it is served from then on"),
        "pin": (registry.PIN, "serve this version until unpinned or another pin"),
        "unpin": (registry.UNPIN, "end the pin in effect"),
        "rollback": (registry.ROLLBACK, "serve the version served before the current one"),
        "revoke": (registry.REVOKE, "never serve this version again"),
    }
    for name, (action, text) in acts.items():
        sub = commands.add_parser(name, help=text)
        sub.add_argument("stockcode")
        if action not in (registry.UNPIN, registry.ROLLBACK):
            sub.add_argument("version", help="model version (a prefix is enough)")
        signs = action == registry.SIGNOFF
        sub.add_argument("--by", required=signs, default=None if signs else getpass.getuser(),
                         help="who signs" + ("" if signs else " (default: the login name)"))
        sub.add_argument("--reason", required=action in (registry.SIGNOFF, registry.REVOKE), default="",
                         help="why (kept in the registry store)")
    args = parser.parse_args(argv)
    root = Path(args.root)
    try:
        if args.command in acts:
            return govern(root, args.stockcode, acts[args.command][0], getattr(args, "version", None), args.by,
                          args.reason)
        if args.command == "show":
            return show(root, args.stockcode, args.json)
        if args.command == "checkout":
            return checkout(root, args.stockcode, args.version)
        if args.command == "reproduce":
            return reproduce(root, args.stockcode, args.version, args.keep)
        if args.command == "settings":
            return show_settings(root)
        if args.command == "rebuild-heads":
            return rebuild_heads(root)
        return list_all(root)
    except DataValidationError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
