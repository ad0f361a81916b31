"""Benchmarks print what they ran: every reference is run in the same command, and nothing
cites a file the repository does not hold."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from bench import etl

ROOT = Path(__file__).resolve().parents[1]
TINY_LINES = 5000
# Built from parts, or this file would cite them itself.
CITATIONS_OUTSIDE_THE_REPO = ("measured-" + "facts", "../" + "shared")


@pytest.fixture
def tiny_checkout(tmp_path):
    """What bench.etl reads from a checkout, with the first lines of the bundled data only."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in ("pricing", "stages"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=ignore)
    (tmp_path / "bench").mkdir()
    shutil.copy2(ROOT / "bench" / "pandas_reference.py", tmp_path / "bench" / "pandas_reference.py")
    shutil.copy2(ROOT / "params.yaml", tmp_path / "params.yaml")
    raw = tmp_path / params["data"]["input_path"]
    raw.parent.mkdir(parents=True)
    pq.write_table(pq.read_table(ROOT / params["data"]["input_path"]).slice(0, TINY_LINES), raw)
    return tmp_path


def table_row(printed: str, label: str) -> dict[str, float]:
    number = r"\s+([\d.,]+)"
    match = re.search(rf"^{label}{number * 6}$", printed, re.MULTILINE)
    assert match, f"no table row {label!r} in:\n{printed}"
    median, _, _, cpu, _, peak = (float(value.replace(",", "")) for value in match.groups())
    return {"wall": median, "cpu": cpu, "peak": peak}


def test_every_ratio_the_etl_bench_prints_is_of_the_runs_it_made(tiny_checkout, capsys):
    assert etl.main(["--runs", "1", "--warmup", "0", "--root", str(tiny_checkout)]) == 0
    printed = capsys.readouterr().out
    assert f"{TINY_LINES:,} lines in" in printed  # both sides ran on the tiny input
    polars, pandas = table_row(printed, "polars ETL stage"), table_row(printed, "pandas reference")
    measured = [pandas["wall"] / polars["wall"], pandas["cpu"] / polars["cpu"]]
    speedups = [float(value) for value in re.findall(r"(\d+\.\d\d)x\b", printed)]  # targets say "5x"
    assert speedups, printed
    for value in speedups:
        assert any(value == pytest.approx(ratio, rel=0.05) for ratio in measured), (value, measured, printed)
    memory = float(re.search(r"memory ratio, polars / pandas reference:\s+([\d.]+)", printed).group(1))
    assert memory == pytest.approx(polars["peak"] / pandas["peak"], rel=0.05, abs=0.01)
    assert "tutorial" not in printed.lower()


def test_nothing_cites_files_the_repository_does_not_hold():
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split("\n")
    citing = []
    for name in filter(None, listed):
        path = ROOT / name
        if not path.is_file() or path.is_symlink():
            continue
        text = path.read_bytes().decode("utf-8", errors="ignore")
        citing += [f"{name}: {cited}" for cited in CITATIONS_OUTSIDE_THE_REPO if cited in text]
    assert not citing
