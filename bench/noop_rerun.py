"""Wall time of a lineage flow run in which nothing changed, against a bare ``dvc status``.

    python bench/noop_rerun.py --toy              # a throw-away toy project (seconds)
    python bench/noop_rerun.py --root .           # this project (runs the pipeline once if needed!)
    PREFECT_API_URL=http://127.0.0.1:4200/api python bench/noop_rerun.py --toy   # vs a running server

Prints, as medians over ``--repeat`` runs: ``dvc status``; the no-op flow inside a process
whose Prefect API is already up (the orchestration overhead proper); the flow as the README
command runs it (a fresh ``python -m flows.lineage`` process, Prefect start-up included);
and the ratios. Targets (issue 4): in-process flow < 2 × ``dvc status``; whole command < 5 s
against a running Prefect server.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--toy", action="store_true", help="bench a throw-away toy project (default)")
    where.add_argument("--root", help="bench this project directory instead")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    if args.root:
        root = Path(args.root).resolve()
    else:
        from bench.toy_project import make_toy_project

        root = make_toy_project(Path(tempfile.mkdtemp(prefix="noop-bench-")) / "toy")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}

    def dvc_status() -> None:
        subprocess.run([sys.executable, "-m", "dvc", "status"], cwd=root, env=env, check=True, capture_output=True)

    def cli_run() -> None:
        subprocess.run([sys.executable, "-m", "flows.lineage", "--root", str(root)], cwd=ROOT, env=env,
                       check=True, capture_output=True)

    from flows.lineage import lineage_at

    startup = timed(lambda: lineage_at(root=str(root), return_state=True))  # warm-up: runs what is stale
    print(f"project: {root}\nwarm-up run (API start-up + whatever was stale): {startup:.2f} s")

    status_times = [timed(dvc_status) for _ in range(args.repeat)]
    flow_times, cached = [], True
    for _ in range(args.repeat):
        start = time.perf_counter()
        state = lineage_at(root=str(root), return_state=True)
        flow_times.append(time.perf_counter() - start)
        for outcome in state.result()["outcomes"]:
            cached = cached and set(outcome["stages"].values()) == {"cached"}
    cli_times = [timed(cli_run) for _ in range(max(1, args.repeat // 2))]

    status, flow, cli = (statistics.median(t) for t in (status_times, flow_times, cli_times))
    api = os.environ.get("PREFECT_API_URL") or "temporary (started by each process)"
    print(f"Prefect API: {api}")
    print(f"dvc status                          {status:6.2f} s")
    print(f"no-op flow, API up (in-process)     {flow:6.2f} s  = {flow / status:.2f} x dvc status"
          f"  (every stage cached: {cached})")
    print(f"python -m flows.lineage (no-op)     {cli:6.2f} s  = {cli / status:.2f} x dvc status;"
          f" Prefect start-up + imports ≈ {cli - flow:.2f} s")
    print(f"targets: in-process < 2 x dvc status: {'met' if flow < 2 * status else 'NOT met'};"
          f" whole command < 5 s against a running server: {'met' if cli < 5 else 'NOT met'}"
          f"{'' if os.environ.get('PREFECT_API_URL') else ' (n/a: no server running)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
