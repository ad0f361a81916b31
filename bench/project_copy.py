"""A throw-away copy of this project as its own git + DVC repo, for end-to-end runs: the
benchmarks that time real runs (``bench.backfill``) and the end-to-end tests use the same one."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


# What a run of the lineage leaves in the work tree: never part of a fresh copy.
RUN_PRODUCTS = ("dvc.lock", "metrics/", "plots/", "reports/", "models/", "dvc_plots/", "registry/", "data/")
PROJECT_DATA = "data/raw/"


def project_files() -> list[str]:
    """Source files of the project: tracked or new, but not ignored and not run products."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True, text=True,
    )
    names = [name for name in listed.stdout.split("\0") if name]
    return [name for name in names if name.startswith(PROJECT_DATA) or not name.startswith(RUN_PRODUCTS)]


def run(args: list[str], cwd: Path, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a command with this venv first on PATH (dvc calls `python` from dvc.yaml)."""
    base = env or os.environ
    env = {**base, "PATH": f"{VENV_BIN}{os.pathsep}{base['PATH']}"}
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def make_project_copy(destination: Path, params_update: dict | None = None, dvc_cache: Path | None = None) -> Path:
    """Copy the project's files (tracked or not ignored, as in the work tree) into a fresh git repo.

    ``dvc_cache``: a DVC cache folder that copies share (``cache.dir`` in ``config.local``), so
    a stage that another copy already ran with the same code, data and params is restored by
    DVC's run cache — as every workspace of one checkout shares that checkout's cache."""
    destination.mkdir(parents=True, exist_ok=True)
    for name in project_files():
        source = ROOT / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    if params_update:
        update_params(destination, params_update)
    run(["git", "init", "-q", "-b", "main"], destination)
    # The copy pushes to a remote of its own, not the user's default one (config.local is untracked).
    run([str(VENV_BIN / "dvc"), "remote", "modify", "--local", "local", "url", str(remote_dir(destination))], destination)
    if dvc_cache is not None:
        run([str(VENV_BIN / "dvc"), "config", "--local", "cache.dir", str(dvc_cache)], destination)
    run(["git", "-c", "user.name=test", "-c", "user.email=test@example.com", "add", "-A"], destination)
    run(["git", "-c", "user.name=test", "-c", "user.email=test@example.com", "commit", "-qm", "copy"], destination)
    return destination


def remote_dir(project: Path) -> Path:
    """The DVC remote folder of a copy made by ``make_project_copy``."""
    return project.parent / f"{project.name}-dvc-remote"


def update_params(project: Path, changes: dict) -> None:
    """Merge ``changes`` (nested dicts) into the project's params.yaml."""
    path = project / "params.yaml"
    params = yaml.safe_load(path.read_text())

    def merge(into: dict, new: dict) -> None:
        for key, value in new.items():
            if isinstance(value, dict) and isinstance(into.get(key), dict):
                merge(into[key], value)
            else:
                into[key] = value

    merge(params, changes)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def stages_run(repro_output: str) -> list[str]:
    """Names of the stages a `dvc repro` actually ran, from its output."""
    marker = "Running stage '"
    return [line.split(marker, 1)[1].split("'", 1)[0] for line in repro_output.splitlines() if marker in line]
