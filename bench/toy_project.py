"""A throw-away git + DVC project with the lineage's stage names and paths, and toy commands.

What orchestration costs is timed on it (``bench.noop_rerun``, ``bench.backfill``'s overhead
part: stages that take milliseconds leave only the flow's own work), and the tests of the flows
and tasks run on it: the real flow's shape in seconds, the same
stage names, the same ``Layout`` paths, metrics with the fields the flow branches on — but
each stage is a few lines of Python. Faults are switched on through params (so they go
through the flow's overrides) or, for the one-off transient fault, an environment variable:

- ``toy.invalid: [stage or stage@stockcode, ...]`` → that stage fails with ``DataValidationError`` (exit 2);
- ``toy.sleep: {stage: seconds}`` → that stage takes this long (to hold a run open);
- ``toy.garbage: [stage, ...]`` → the stage exits 0 but writes unparsable metrics;
- ``toy.crash: {stage: text}`` → the stage prints ``text`` and crashes with a traceback (a bug:
  the same every time);
- ``toy.stale: [stage, ...]`` → the stage exits 0 but leaves its main output as it was (the
  previous run's: outputs are ``persist: true``, as in the real ``dvc.yaml``);
- ``drift.shift`` above ``drift.threshold`` → the drift stage reports drift on ``unit_price``;
- ``fairness.max_mae_diff`` below the toy model's gap (0.1) → the risk check fails;
- ``TOY_FAIL_ONCE=<stage address>:<marker file>`` → that stage fails once like a busy DVC lock;
- ``TOY_UNDECLARED_INPUT=<text>`` → the drift report carries it: an input ``dvc.yaml`` does not
  declare, so a re-run with another value makes other bytes.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import yaml

from pricing.layout import Layout, load_params
from tasks.stages import DRIFT, ETL, INFERENCE, PREPROCESS, PRICE_RESPONSE, RISK, TUNE

SC = "${item.stockcode}"
GIT = ["git", "-c", "user.name=pricelineage-test", "-c", "user.email=test@example.com"]

TOY_STAGE = textwrap.dedent(
    '''
    """Toy lineage stage: python toy_stage.py <stage> [stockcode]."""
    import hashlib, json, os, sys
    from pathlib import Path

    import yaml

    stage = sys.argv[1]
    sc = sys.argv[2] if len(sys.argv) > 2 else None
    address = f"{stage}@{sc}" if sc else stage
    params = yaml.safe_load(open("params.yaml"))
    toy = params.get("toy") or {}
    paths = json.loads(os.environ.get("TOY_PATHS") or open("toy_paths.json").read())
    P = {k: (v.replace("@SC@", sc) if sc else v) for k, v in paths.items()}

    fail_once = os.environ.get("TOY_FAIL_ONCE", "")
    if fail_once:
        target, _, marker = fail_once.partition(":")
        if target == address and not Path(marker).exists():
            Path(marker).write_text("failed once")
            print(f"ERROR: '{P['etl_metrics']}' is busy, it is being blocked by: (PID 4242): toy", file=sys.stderr)
            sys.exit(1)
    import time

    time.sleep(float((toy.get("sleep") or {}).get(stage, 0)))
    if stage in (toy.get("crash") or {}):
        print(toy["crash"][stage], flush=True)
        raise RuntimeError(f"toy {address}: a bug, the same on every run")
    if stage in (toy.get("invalid") or []) or address in (toy.get("invalid") or []):
        print(f"DataValidationError: toy {address}: column 'unit_price' is missing", file=sys.stderr)
        sys.exit(2)

    # The output a `toy.stale` stage leaves alone: preprocess's one file inside its folder.
    STALE_OUTPUT = {"preprocess": "train_split", "tune_primary_model": "model_checkpoint",
                    "inference_primary_model": "inference_results"}
    stale = stage in (toy.get("stale") or []) or address in (toy.get("stale") or [])

    def write(key, text):
        if stale and STALE_OUTPUT.get(stage) == key:
            return
        path = Path(P[key])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def metrics(key, payload):
        if stage in (toy.get("garbage") or []):
            write(key, "{not json")
        else:
            write(key, json.dumps(payload, indent=2))

    def digest(*parts):
        return hashlib.md5("|".join(map(str, parts)).encode()).hexdigest()

    if stage == "etl_pipeline":
        import polars as pl

        raw = pl.read_csv(params["data"]["input_path"])
        for key in ("original_df", "processed_df"):
            Path(P[key]).parent.mkdir(parents=True, exist_ok=True)
        raw.write_parquet(P["original_df"])
        raw.with_columns(pl.col("stockcode").str.to_uppercase()).write_parquet(P["processed_df"])
        metrics("etl_metrics", {"lines_in": raw.height, "lines_kept": raw.height})
    elif stage == "estimate_price_response":
        import polars as pl

        products = pl.read_parquet(P["processed_df"])["stockcode"].unique().sort()
        write("price_response_table", json.dumps({code: -1.5 for code in products}))
        metrics("price_response_metrics", {"catalogue_elasticity": -1.5, "products": len(products)})
    elif stage == "data_drift_check":
        shift = float(params["drift"]["shift"])
        drifted = shift > float(params["drift"]["threshold"])
        columns = {
            "unit_price": {"test": "ks", "p_value": 1e-9 if drifted else 0.4, "drift_detected": drifted},
            "quantity": {"test": "ks", "p_value": 0.5, "drift_detected": False},
        }
        note = os.environ.get("TOY_UNDECLARED_INPUT", "")
        write("drift_report", f"<html><body>toy drift report {sc}: shift {shift}{note}</body></html>")
        metrics("drift_metrics", {"status": "drift" if drifted else "ok", "drift_detected": drifted,
                                  "n_drifted_columns": int(drifted), "columns": columns})
    elif stage == "preprocess":
        drift = json.loads(Path(P["drift_metrics"]).read_text())
        if drift.get("drift_detected") and params["drift"]["gate"] == "block":
            print(f"DriftGateError: {sc} drifted; not training", file=sys.stderr)
            sys.exit(3)
        P["train_split"] = str(Path(P["preprocessed_dir"], "X_train.txt"))
        Path(P["preprocessed_dir"]).mkdir(parents=True, exist_ok=True)
        write("train_split", digest(sc, Path(P["processed_df"]).read_bytes()))
        metrics("data_metrics", {"rows": {"train": 8, "val": 2, "test": 2}})
    elif stage == "tune_primary_model":
        n = int(params["tune"]["n_trials"])
        write("model_checkpoint", digest(sc, n, Path(P["preprocessed_dir"], "X_train.txt").read_text()))
        write("tuning_history", "trial,value\\n" + "".join(f"{i},{1 / (i + 1)}\\n" for i in range(n)))
        metrics("val_metrics", {"rmsle": 0.5, "mae": 3.0, "mse": 0.3, "n_trials": n,
                                "baselines": {"train_median": {"rmsle": 1.0, "mae": 5.0}}})
    elif stage == "inference_primary_model":
        model = digest(Path(P["model_checkpoint"]).read_text())  # as the real one names the model it ran
        write("inference_results", f"y_true,y_pred,is_registered,model\\n1,1.1,1,{model}\\n2,1.9,0,{model}\\n")
        write("shap_importance", "feature,importance\\nunit_price,0.7\\nhour,0.1\\n")
        metrics("test_metrics", {"rmsle": 0.52, "mae": 3.2, "mse": 0.31,
                                 "baselines": {"train_median": {"rmsle": 1.05, "mae": 5.1}}})
    elif stage == "assess_model_risk":
        limit = float(params["fairness"]["max_mae_diff"])
        gap = 0.1
        passed = gap <= limit
        reasons = [] if passed else [f"mae_diff {gap} above threshold {limit}"]
        metrics("risk_metrics", {"passed": passed, "reasons": reasons, "mae_diff": gap})
    else:
        sys.exit(f"unknown toy stage {stage}")
    '''
).lstrip()


def _paths() -> dict[str, str]:
    layout = Layout(Path("."))
    sc = "@SC@"
    return {
        "original_df": layout.original_df.as_posix(),
        "processed_df": layout.processed_df.as_posix(),
        "etl_metrics": layout.etl_metrics.as_posix(),
        "price_response_table": layout.price_response_table.as_posix(),
        "price_response_metrics": layout.price_response_metrics.as_posix(),
        "drift_report": layout.drift_report(sc).as_posix(),
        "drift_metrics": layout.drift_metrics(sc).as_posix(),
        "preprocessed_dir": layout.preprocessed_dir(sc).as_posix(),
        "data_metrics": layout.data_metrics(sc).as_posix(),
        "model_checkpoint": layout.model_checkpoint(sc).as_posix(),
        "val_metrics": layout.val_metrics(sc).as_posix(),
        "tuning_history": layout.tuning_history(sc).as_posix(),
        "test_metrics": layout.test_metrics(sc).as_posix(),
        "inference_results": layout.inference_results(sc).as_posix(),
        "shap_importance": layout.shap_importance(sc).as_posix(),
        "risk_metrics": layout.risk_metrics(sc).as_posix(),
    }


def _dvc_yaml() -> dict:
    p = {key: value.replace("@SC@", SC) for key, value in _paths().items()}
    code = "toy_stage.py"
    # As in the real dvc.yaml: DVC keeps the previous outputs while a stage runs.
    kept = lambda path: {path: {"persist": True}}  # noqa: E731
    per_sc = lambda name, body: {"matrix": {"stockcode": "${stockcodes}"},  # noqa: E731
                                 "cmd": f"python {code} {name} {SC}", **body}
    return {
        "stages": {
            ETL: {
                "cmd": f"python {code} {ETL}",
                "deps": ["${data.input_path}", code],
                "params": ["data"],
                "outs": [kept(p["original_df"]), kept(p["processed_df"])],
                "metrics": [kept(p["etl_metrics"])],
            },
            PRICE_RESPONSE: {
                "cmd": f"python {code} {PRICE_RESPONSE}",
                "deps": [p["processed_df"], code],
                "outs": [kept(p["price_response_table"])],
                "metrics": [kept(p["price_response_metrics"])],
            },
            DRIFT: per_sc(DRIFT, {
                "deps": [p["processed_df"], code],
                "params": ["drift"],
                "metrics": [kept(p["drift_metrics"])],
                "plots": [kept(p["drift_report"])],
            }),
            PREPROCESS: per_sc(PREPROCESS, {
                "deps": [p["processed_df"], p["drift_metrics"], code],
                "params": ["drift.gate"],
                "outs": [kept(p["preprocessed_dir"])],
                "metrics": [kept(p["data_metrics"])],
            }),
            TUNE: per_sc(TUNE, {
                "deps": [p["preprocessed_dir"], code],
                "params": ["tune", "seed"],
                "outs": [kept(p["model_checkpoint"])],
                "metrics": [kept(p["val_metrics"])],
                "plots": [kept(p["tuning_history"])],
            }),
            INFERENCE: per_sc(INFERENCE, {
                "deps": [p["model_checkpoint"], p["preprocessed_dir"], code],
                "outs": [kept(p["inference_results"])],
                "metrics": [kept(p["test_metrics"])],
                "plots": [kept(p["shap_importance"])],
            }),
            RISK: per_sc(RISK, {
                "deps": [p["inference_results"], code],
                "params": ["fairness"],
                "metrics": [kept(p["risk_metrics"])],
            }),
        }
    }


DEFAULT_PARAMS = {
    "seed": 42,
    "stockcodes": ["85123A"],
    "data": {"input_path": "data/raw/sales.csv"},
    "drift": {"gate": "block", "shift": 0.0, "threshold": 0.25},
    "tune": {"n_trials": 20},
    "fairness": {"max_mae_diff": 0.5},
    "toy": {"invalid": [], "garbage": [], "crash": {}, "stale": [], "sleep": {"tune_primary_model": 0}},
    # As in the real params.yaml: overriding anything else makes a passing run a candidate.
    "governance": {"approvable_overrides": ["tune.", "toy."]},
}


def _run(args: list[str], cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result.stdout


# Lines per product in the toy's raw data: two products to train, one too small to.
TOY_PRODUCTS = {"85123A": 40, "22423": 30, "TINY1": 3}


def make_toy_project(root: Path, remote: Path | None = None, params: dict | None = None) -> Path:
    """Create the toy project at ``root`` (git + DVC, one commit) with a local DVC remote.

    Its registry store and workspaces are folders beside it (``<root>-registry``,
    ``<root>-workspaces``), never the user's.
    """
    root.mkdir(parents=True, exist_ok=True)
    merged = yaml.safe_load(yaml.safe_dump(DEFAULT_PARAMS))
    merged["orchestration"] = {
        "registry": str(registry_dir(root)),
        "workspaces": str(root.parent / f"{root.name}-workspaces"),
        "max_concurrent_products": 2,
        "stockcode_wait_seconds": 120,
        "min_product_lines": 10,
    }
    for key, value in (params or {}).items():
        if isinstance(value, dict):
            merged[key].update(value)
        else:
            merged[key] = value
    (root / "params.yaml").write_text(yaml.safe_dump(merged, sort_keys=False))
    (root / "dvc.yaml").write_text(yaml.safe_dump(_dvc_yaml(), sort_keys=False))
    (root / "toy_stage.py").write_text(TOY_STAGE)
    import json

    (root / "toy_paths.json").write_text(json.dumps(_paths(), indent=1))
    (root / ".gitignore").write_text("/data/*\n!/data/raw/\n/metrics/\n/plots/\n/reports/\n/models/\n")
    raw = root / merged["data"]["input_path"]
    raw.parent.mkdir(parents=True, exist_ok=True)
    lines = [(code, i) for code, count in TOY_PRODUCTS.items() for i in range(count)]
    raw.write_text("invoice,stockcode,quantity,unit_price\n"
                   + "".join(f"{n},{code},{i % 7 + 1},2.55\n" for n, (code, i) in enumerate(lines)))
    _run(["git", "init", "-q", "-b", "main"], root)
    _run([sys.executable, "-m", "dvc", "init", "-q"], root)
    remote = remote or root.parent / f"{root.name}-remote"
    _run([sys.executable, "-m", "dvc", "remote", "add", "-d", "local", str(remote.resolve())], root)
    _run([sys.executable, "-m", "dvc", "config", "core.analytics", "false"], root)
    _run([*GIT, "add", "-A"], root)
    _run([*GIT, "commit", "-qm", "toy project"], root)
    return root


def registry_dir(root: Path) -> Path:
    """The registry store folder of a toy project."""
    return root.parent / f"{root.name}-registry"


def git_commit_all(root: Path, message: str) -> None:
    """Commit the work tree (what the user does after an approval): dvc.lock, the record…"""
    _run([*GIT, "add", "-A"], root)
    _run([*GIT, "commit", "-qm", message], root)


def run_cmd(args: list[str], cwd: Path) -> str:
    return _run(args, cwd)


def real_tune_banner(stockcode: str) -> str:
    """The first line the real tune stage prints, with this project's tune params (its
    timeout included), for a toy stage to print before it fails."""
    from stages.tune_primary_model import banner

    tune = load_params(Path(__file__).resolve().parents[1])["tune"]
    return banner(stockcode, 1406, 301, 40, tune["n_trials"], tune["timeout"])
