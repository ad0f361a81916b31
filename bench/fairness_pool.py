"""Fairness per product against fairness pooled over the products: the interval widths that
decide whether a verdict can tell.

    .venv/bin/python -m bench.fairness_pool [--registry PATH]

Reads the latest decision of every stockcode in a registry store (default: the one the project
uses) that measured its gaps (the risk stage's bootstrap intervals), and prints per product the
group sizes, each gap's estimate with its interval and width, and the product's own verdict;
then each gap pooled over all of them exactly as the decision pools it
(``pricing.fairness.pool_gaps``, the ``risk`` params), and the ratio of the median per-product
width to the pooled width. Nothing is trained: run the lineage first (``python -m flows.lineage
-s ...``).
"""
from __future__ import annotations

import argparse
import statistics

from pricing import registry
from pricing.fairness import POOLED_CHECKS, pool_gaps
from pricing.layout import Layout, load_params
from stores.registry_store import RegistryStore
from stores.settings import load_settings


def _width(check: dict) -> float | None:
    band = check.get("interval")
    return None if not band else band["high"] - band["low"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fairness_pool", description=__doc__.split("\n\n")[0])
    parser.add_argument("--registry", default=None, help="registry store (default: the project's)")
    args = parser.parse_args(argv)
    root = Layout().root
    store = RegistryStore(args.registry or load_settings(root).registry)
    histories = {code: store.history(code) for code in store.stockcodes()}
    members = registry.peer_risk_metrics(histories)
    if not members:
        raise SystemExit(f"{store.location}: no decision with measured gaps; run the lineage first")
    risk = load_params(root)["risk"]
    thresholds = {"mean_outcome_difference": float(risk["mean_outcome_difference_threshold"]),
                  "mae_diff": float(risk["mae_diff_threshold"])}
    print(f"{len(members)} products in {store.location}; thresholds ±{thresholds['mean_outcome_difference']} "
          f"(excess gap) and ±{thresholds['mae_diff']} (MAE gap), {float(risk['confidence_level']):.0%} intervals\n")
    print(f"{'product':<22} {'priv':>5} {'unpriv':>6}  {'excess gap [interval] width':<34} {'MAE gap [interval] width':<34} own")
    widths: dict[str, list[float]] = {check: [] for check in POOLED_CHECKS}
    for label, metrics in sorted(members.items()):
        counts = metrics.get("counts") or {}
        cells = []
        for check, field in POOLED_CHECKS.items():
            detail = metrics["checks"][check]
            width = _width(detail)
            if width is None:
                cells.append(f"{'(group too small)':<34}")
                continue
            widths[check].append(width)
            band = detail["interval"]
            cells.append(f"{detail[field]:+.3f} [{band['low']:+.3f}, {band['high']:+.3f}] {width:.3f}".ljust(34))
        print(f"{label:<22} {counts.get('privileged', '?'):>5} {counts.get('unprivileged', '?'):>6}  {cells[0]} {cells[1]} "
              f"{metrics.get('fairness_verdict') or metrics.get('verdict')}")
    pooled = pool_gaps(members, confidence_level=float(risk["confidence_level"]),
                       min_products=int(risk["min_pool_products"]), thresholds=thresholds)
    print("\npooled (random effects over the products):")
    for check, entry in pooled["checks"].items():
        if "low" not in entry:
            print(f"  {check}: {entry['why']}")
            continue
        width = entry["high"] - entry["low"]
        median = statistics.median(widths[check])
        print(f"  {check}: {entry['estimate']:+.3f} [{entry['low']:+.3f}, {entry['high']:+.3f}] width {width:.3f} over "
              f"{entry['products']} products, between-product variance {entry['between_product_variance']:.4f}: "
              f"{entry['verdict']}; median per-product width {median:.3f} = {median / width:.1f}x the pooled")
    print(f"\npooled verdict: {pooled['verdict']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
