"""What is approved for a stockcode, and the full lineage behind it.

    python -m flows.lineage_cli show 85123A          # served model + its lineage, then history
    python -m flows.lineage_cli show 85123A --json   # the records as JSON
    python -m flows.lineage_cli list                 # every stockcode with its served version

Reads the approval record only (``registry/<stockcode>.jsonl``): fast, no Prefect, no DVC.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from pricing import registry


def show(root: Path, stockcode: str, as_json: bool) -> int:
    records = registry.history(root, stockcode)
    served = registry.approved_model(stockcode, root)
    if as_json:
        print(json.dumps({"approved": asdict(served) if served else None,
                          "history": [asdict(r) for r in records]}, indent=2, default=str))
        return 0 if records else 1
    if not records:
        print(f"{stockcode}: no decision recorded in {registry.record_file(root, stockcode)}")
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
    for stockcode in registry.stockcodes(root):
        served = registry.approved_model(stockcode, root)
        last = registry.latest(root, stockcode)
        print(f"{stockcode:10} serving {served.model_version if served else '—':14} "
              f"last decision: {last.decision if last else '—'} {last.decided_at if last else ''}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.lineage_cli", description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=".", help="project directory (default: .)")
    commands = parser.add_subparsers(dest="command", required=True)
    show_parser = commands.add_parser("show", help="what is approved for a stockcode, and its lineage")
    show_parser.add_argument("stockcode")
    show_parser.add_argument("--json", action="store_true")
    commands.add_parser("list", help="every stockcode with a recorded decision")
    args = parser.parse_args(argv)
    root = Path(args.root)
    if args.command == "show":
        return show(root, args.stockcode, args.json)
    return list_all(root)


if __name__ == "__main__":
    sys.exit(main())
