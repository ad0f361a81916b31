"""The risk gate's fairness verdict with its uncertainty, on the five best sellers.

    .venv/bin/python -m bench.fairness_intervals [--stockcodes 85123A ...] [--n-trials N]

For each stockcode the real stages run in a temporary directory (params.yaml and the repo's
`data/processed_df.parquet`; run `dvc repro etl_pipeline` first): `preprocess` (with a "no
drift" verdict written for it, so the figures do not depend on the drift gate),
`tune_primary_model`, `inference_primary_model`, `assess_model_risk`. Printed per product:
the group sizes, each gap with its bootstrap interval, the interval gate's verdict, and
beside it the baseline: the point-estimate gate of the old main (|gap| <= threshold).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from bench.model_quality import DEFAULT_STOCKCODES, ROOT, preprocess
from pricing.layout import Layout

STAGES = ("stages.tune_primary_model", "stages.inference_primary_model", "stages.assess_model_risk")


def run_stages(workdir: Path, stockcode: str) -> dict:
    preprocess(workdir, stockcode)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for module in STAGES:
        done = subprocess.run([sys.executable, "-m", module, stockcode], cwd=workdir, env=env,
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{module} {stockcode} failed:\n{done.stdout}\n{done.stderr}")
    return json.loads(Layout(workdir).risk_metrics(stockcode).read_text())


def describe(check: dict) -> str:
    band = check["interval"]
    value = check.get("excess_over_actual", check["value"])
    if band is None:
        return f"{value:+.3f} (no interval)" if value is not None else "n/a"
    return f"{value:+.3f} [{band['low']:+.3f}, {band['high']:+.3f}] {check['verdict']}"


def point_gate(checks: dict) -> str:
    """The old main's verdict on the same numbers: each |gap| against its threshold."""
    gaps = [(checks["mean_outcome_difference"]["gated_value"], checks["mean_outcome_difference"]["threshold"]),
            (checks["mae_diff"]["gated_value"], checks["mae_diff"]["threshold"])]
    if any(value is None for value, _ in gaps):
        return "failed (group too small)"
    return "passed" if all(value <= threshold for value, threshold in gaps) else "failed"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fairness_intervals", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stockcodes", nargs="+", default=DEFAULT_STOCKCODES)
    parser.add_argument("--n-trials", type=int, default=None, help="default: params.yaml's tune.n_trials")
    args = parser.parse_args(argv)
    processed = Layout(ROOT).processed_df
    if not processed.exists():
        raise SystemExit(f"{processed} is missing: run `dvc repro etl_pipeline` first")
    params = yaml.safe_load(Layout(ROOT).params_file.read_text())
    if args.n_trials:
        params["tune"]["n_trials"] = args.n_trials
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-fairness-") as tmp:
        workdir = Path(tmp)
        (workdir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        (workdir / "data").mkdir()
        os.symlink(processed, workdir / "data" / "processed_df.parquet")
        for stockcode in args.stockcodes:
            risk = run_stages(workdir, stockcode)
            checks = risk["checks"]
            rows.append((stockcode, risk["counts"], describe(checks["mean_outcome_difference"]),
                         describe(checks["mae_diff"]), risk["fairness_verdict"], point_gate(checks)))
            print(f"{stockcode}: done ({risk['verdict']})", flush=True)
    level = f"{params['risk']['confidence_level']:.0%}"
    print(f"\nfairness on test, {SCALE_NOTE}; {level} bootstrap intervals ({params['risk']['bootstrap_resamples']} "
          f"resamples, seed {params['seed']}); thresholds ±{params['risk']['mean_outcome_difference_threshold']} "
          f"(excess gap) and ±{params['risk']['mae_diff_threshold']} (MAE gap)")
    print("| stockcode | registered / unregistered lines | excess gap [interval] | MAE gap [interval] | interval gate | point gate (old main) |")
    print("|---|---|---|---|---|---|")
    for stockcode, counts, excess, mae, verdict, old in rows:
        print(f"| {stockcode} | {counts['privileged']} / {counts['unprivileged']} | {excess} | {mae} | {verdict} | {old} |")
    return 0


SCALE_NOTE = "gaps unregistered − registered on the log1p(quantity) scale"

if __name__ == "__main__":
    sys.exit(main())
