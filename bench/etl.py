"""Full-data ETL benchmark: the real `etl_pipeline` stage (polars) against the pandas reference.

    .venv/bin/python -m bench.etl [--runs 5] [--warmup 1] [--profile] [--strict] [--root DIR]

Each side runs as its own process (``python -m stages.etl_pipeline`` and
``python -m bench.pandas_reference``) in a temporary copy of the files it needs (params.yaml,
the input data, pricing/, stages/, bench/pandas_reference.py), so the repo's outputs are
never touched. Runs alternate (polars, pandas, polars, ...) so that load from other users of
the machine hits both alike. Every figure is whole-process: wall time from spawn to exit,
and the child's own ``struct rusage`` from ``os.wait4`` (the per-child form of
``getrusage(RUSAGE_CHILDREN)``) for peak RSS and CPU time.

Targets (issue 2, "Benchmark"): the polars stage < 2 s whole-process, >= 5x the pandas
reference, at < half its peak memory. Both sides run in this command; no figure measured
elsewhere is printed or divided by. ``--profile`` adds an in-process breakdown of the
polars stage (imports included), each run in a fresh interpreter. ``--root`` benchmarks
another checkout (e.g. a patched copy) instead of this one.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent

TARGET_SECONDS = 2.0
TARGET_SPEEDUP = 5.0
TARGET_MEMORY_RATIO = 0.5


@dataclass
class Runs:
    label: str
    command: list[str]
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    peak_mib: list[float] = field(default_factory=list)

    @property
    def median_wall(self) -> float:
        return statistics.median(self.wall)

    @property
    def median_cpu(self) -> float:
        return statistics.median(self.cpu)

    @property
    def median_peak(self) -> float:
        return statistics.median(self.peak_mib)


def prepare_workdir(root: Path, workdir: Path) -> dict:
    """Copy what the two ETLs read into ``workdir``; return the params."""
    params = yaml.safe_load((root / "params.yaml").read_text())
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copy2(root / "params.yaml", workdir / "params.yaml")
    for package in ("pricing", "stages"):
        shutil.copytree(root / package, workdir / package, ignore=ignore)
    (workdir / "bench").mkdir()
    (workdir / "bench" / "__init__.py").touch()
    shutil.copy2(root / "bench" / "pandas_reference.py", workdir / "bench" / "pandas_reference.py")
    source = root / params["data"]["input_path"]
    target = workdir / params["data"]["input_path"]
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source, target)
    return params


def run_once(runs: Runs, workdir: Path, record: bool = True) -> None:
    """Run the command as a child process; record its wall time, CPU time and peak RSS."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        child = subprocess.Popen(runs.command, cwd=workdir, stdout=out, stderr=err)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        if child.returncode != 0:
            err.seek(0)
            message = err.read().decode(errors="replace")
            sys.exit(f"{runs.label} failed (exit {child.returncode}):\n{message}")
    if record:
        runs.wall.append(wall)
        runs.cpu.append(usage.ru_utime + usage.ru_stime)
        runs.peak_mib.append(usage.ru_maxrss / 1024)  # Linux reports KiB


def outputs_agree(workdir: Path, pandas_out: Path) -> str:
    polars_metrics = json.loads((workdir / "metrics" / "etl.json").read_text())
    pandas_metrics = json.loads((pandas_out / "etl.json").read_text())
    if polars_metrics != pandas_metrics:
        return "WARNING: the two metrics/etl.json DIFFER, so the timings compare different work"
    return (
        f"both: {polars_metrics['lines_in']:,} lines in, {polars_metrics['lines_kept']:,} kept, "
        "identical metrics/etl.json"
    )


PROFILE_STAGE = r"""
import json, time
t0 = time.perf_counter()
import polars as pl
t1 = time.perf_counter()
from pricing.etl import CleaningRules, clean, profile_raw
from pricing.features import add_features
from pricing.layout import Layout, load_params
from pricing.raw_data import load_raw
from stages.common import atomic_path
t2 = time.perf_counter()
steps = {"import polars": t1 - t0, "import pricing, stages, yaml": t2 - t1}
def step(name, fn):
    start = time.perf_counter(); value = fn(); steps[name] = time.perf_counter() - start; return value
layout = Layout(); params = load_params(layout.root); data, etl = params["data"], params["etl"]
raw = step("load_raw (read + checks)", lambda: load_raw(layout.root / data["input_path"], data["csv_datetime_format"]))
rules = CleaningRules(etl["non_product_codes"], etl["non_product_prefixes"])
cleaned, report = step("clean", lambda: clean(raw, rules))
processed = step("add_features", lambda: add_features(cleaned, etl["recent_window_days"], etl["days_since_cap"]))
step("profile_raw (metrics)", lambda: profile_raw(raw))
def write(frame, target):
    with atomic_path(target) as tmp:
        frame.write_parquet(tmp)
step("write original_df", lambda: write(raw, layout.original_df))
step("write processed_df", lambda: write(processed, layout.processed_df))
print(json.dumps(steps))
"""

PROFILE_FEATURES = r"""
import json, time
import polars as pl
from pricing import features as F
from pricing.etl import CleaningRules, clean
from pricing.layout import load_params
from pricing.raw_data import load_raw
params = load_params(); etl = params["etl"]
rules = CleaningRules(etl["non_product_codes"], etl["non_product_prefixes"])
cleaned, _ = clean(load_raw(params["data"]["input_path"]), rules)
steps = {}
def step(name, fn):
    start = time.perf_counter(); value = fn(); steps[name] = time.perf_counter() - start; return value
frame = step("sort + line features", lambda: cleaned.sort([F.WHEN, "invoice_no", F.PRODUCT], maintain_order=True)
             .with_row_index("_line").with_columns(F._line_features()))
parts = [
    (step("_product_history (rolling incl.)", lambda: F._product_history(frame, etl["recent_window_days"])),
     [F.PRODUCT, F.WHEN]),
    (step("_product_last_month", lambda: F._product_last_month(frame)), [F.PRODUCT, "_month_start"]),
    (step("_market_history", lambda: F._market_history(frame)), F.WHEN),
    (step("_customer_product_history", lambda: F._customer_product_history(frame)),
     [F.CUSTOMER, F.PRODUCT, F.WHEN]),
    (step("_customer_history", lambda: F._customer_history(frame)), [F.CUSTOMER, F.WHEN]),
]
def joins():
    out = frame
    for part, on in parts:
        out = out.join(part, on=on, how="left")
    return out
joined = step("5 joins", joins)
step("sort back + derived + select", lambda: joined.sort("_line").with_columns(F._derived_features(etl["days_since_cap"]))
     .select([*cleaned.columns, *F.FEATURE_COLUMNS]))
print(json.dumps(steps))
"""


def profile_polars(workdir: Path, runs: int) -> None:
    """Median in-process step times of the polars stage, each run in a fresh interpreter."""
    for title, script in (("polars stage, by step", PROFILE_STAGE), ("add_features, by part", PROFILE_FEATURES)):
        samples: list[dict[str, float]] = []
        for _ in range(runs):
            done = subprocess.run([sys.executable, "-c", script], cwd=workdir, capture_output=True, text=True)
            if done.returncode != 0:
                sys.exit(f"profile failed:\n{done.stderr}")
            samples.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"\nProfile: {title} (in-process, median of {runs} fresh interpreters)")
        total = 0.0
        for name in samples[0]:
            seconds = statistics.median(sample[name] for sample in samples)
            total += seconds
            print(f"  {name:34s} {seconds:6.3f} s")
        print(f"  {'sum':34s} {total:6.3f} s")
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], cwd=workdir, check=True)
    print(f"  (bare interpreter start-up: {time.perf_counter() - start:.3f} s)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Full-data ETL benchmark: polars stage vs pandas reference.")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per side (median reported; default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs per side first (default 1)")
    parser.add_argument("--profile", action="store_true", help="also break the polars stage down by step")
    parser.add_argument("--strict", action="store_true", help="exit 1 if any target is missed")
    parser.add_argument("--root", type=Path, default=ROOT, help="checkout to benchmark (default: this one)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    with tempfile.TemporaryDirectory(prefix="bench-etl-") as tmp:
        workdir = Path(tmp)
        params = prepare_workdir(args.root.resolve(), workdir)
        pandas_out = workdir / "pandas_out"
        polars = Runs("polars ETL stage", [sys.executable, "-m", "stages.etl_pipeline"])
        pandas_command = [sys.executable, "-m", "bench.pandas_reference", "--out", str(pandas_out)]
        pandas = Runs("pandas reference", pandas_command)
        cpus = os.cpu_count() or 1
        start_load = os.getloadavg()[0]
        print(
            f"ETL benchmark of {args.root.resolve()}: {params['data']['input_path']}, {args.runs} timed runs per side "
            f"after {args.warmup} warm-up, alternating; {cpus} CPUs, load average {start_load:.2f} at start"
        )
        for _ in range(args.warmup):
            run_once(polars, workdir, record=False)
            run_once(pandas, workdir, record=False)
        for i in range(args.runs):
            for runs in (polars, pandas):
                run_once(runs, workdir)
                print(f"  run {i + 1}: {runs.label:17s} {runs.wall[-1]:6.2f} s  {runs.peak_mib[-1]:6.0f} MiB", flush=True)
        lines_in = json.loads((workdir / "metrics" / "etl.json").read_text())["lines_in"]
        agreement = outputs_agree(workdir, pandas_out)
        end_load = os.getloadavg()[0]

        print()
        header = (
            f"{'process':27s} {'median s':>8s} {'min s':>6s} {'max s':>6s} {'CPU s':>6s} "
            f"{'rows/s':>9s} {'peak RSS MiB':>12s}"
        )
        print(header)
        print("-" * len(header))
        for runs in (polars, pandas):
            print(
                f"{runs.label:27s} {runs.median_wall:8.2f} {min(runs.wall):6.2f} {max(runs.wall):6.2f} "
                f"{runs.median_cpu:6.2f} {lines_in / runs.median_wall:9,.0f} {runs.median_peak:12.0f}"
            )
        print(f"(medians of {args.runs}; CPU s = user + sys of the process; {agreement})")
        if max(start_load, end_load) > cpus:
            print(
                f"NOTE: load average {start_load:.1f} -> {end_load:.1f} on {cpus} CPUs: the machine is busy, "
                "so wall times are inflated (compare the CPU column)."
            )

        speedup = pandas.median_wall / polars.median_wall
        memory_ratio = polars.median_peak / pandas.median_peak
        print()
        cpu_speedup = pandas.median_cpu / polars.median_cpu
        print(f"speed-up, polars vs pandas reference:     {speedup:5.2f}x  (in CPU time: {cpu_speedup:.2f}x)")
        print(f"memory ratio, polars / pandas reference:  {memory_ratio:5.2f}")
        checks = [
            (f"polars stage whole-process < {TARGET_SECONDS:g} s", polars.median_wall < TARGET_SECONDS,
             f"{polars.median_wall:.2f} s"),
            (f"speed-up >= {TARGET_SPEEDUP:g}x the pandas reference", speedup >= TARGET_SPEEDUP, f"{speedup:.2f}x"),
            (f"peak memory < {TARGET_MEMORY_RATIO:g} x the pandas reference", memory_ratio < TARGET_MEMORY_RATIO,
             f"{memory_ratio:.2f}"),
        ]
        print("\nTargets (issue 2):")
        for name, ok, value in checks:
            print(f"  {'PASS' if ok else 'MISS'}  {name:44s} {value}")

        if args.profile:
            profile_polars(workdir, args.runs)
    missed = not all(ok for _, ok, _ in checks)
    return 1 if (args.strict and missed) else 0


if __name__ == "__main__":
    sys.exit(main())
