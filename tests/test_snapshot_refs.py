"""A dirty-tree run's snapshot commit is durable: kept by a ref through ``git gc``, pushed to the
git remote, and fetched from there by another clone that checks out or reproduces the record."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pricing.errors import DataValidationError
from tasks.workspace import SNAPSHOT_REFS, ensure_revision, source_revision

GIT = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com"]


def git(*args: str, cwd: Path) -> str:
    return subprocess.run([*GIT, *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def has_commit(project: Path, commit: str) -> bool:
    return subprocess.run(["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=project).returncode == 0


@pytest.fixture
def checkout(tmp_path) -> Path:
    """A checkout with a bare remote (origin) and an uncommitted change to a tracked file."""
    remote = tmp_path / "remote.git"
    git("init", "-q", "--bare", str(remote), cwd=tmp_path)
    project = tmp_path / "project"
    git("clone", "-q", str(remote), str(project), cwd=tmp_path)
    (project / "params.yaml").write_text("seed: 42\n")
    git("add", "params.yaml", cwd=project)
    git("commit", "-qm", "first", cwd=project)
    git("push", "-q", "origin", "HEAD", cwd=project)
    (project / "params.yaml").write_text("seed: 7\n")  # the user's unsaved edit
    return project


def test_a_snapshot_survives_gc_and_reaches_another_clone(checkout, tmp_path):
    source = source_revision(checkout)
    assert source["dirty"] and source["ref"] == f"{SNAPSHOT_REFS}/{source['commit']}"
    assert source["pushed_to"] == "origin"
    assert (checkout / "params.yaml").read_text() == "seed: 7\n"  # nothing of the user's changed
    git("reflog", "expire", "--expire=now", "--all", cwd=checkout)
    git("gc", "-q", "--prune=now", cwd=checkout)
    assert has_commit(checkout, source["commit"])

    other = tmp_path / "other"
    git("clone", "-q", "--no-local", str(tmp_path / "remote.git"), str(other), cwd=tmp_path)
    assert not has_commit(other, source["commit"])  # a clone does not bring custom refs along
    assert ensure_revision(other, source, "85123A") == source["commit"]
    assert git("show", f"{source['commit']}:params.yaml", cwd=other) == "seed: 7"


def test_a_snapshot_without_a_remote_stays_local_and_says_so(tmp_path):
    project = tmp_path / "solo"
    project.mkdir()
    git("init", "-q", cwd=project)
    (project / "a.txt").write_text("1\n")
    git("add", "a.txt", cwd=project)
    git("commit", "-qm", "first", cwd=project)
    (project / "a.txt").write_text("2\n")
    source = source_revision(project)
    assert source["dirty"] and source["pushed_to"] is None
    assert git("rev-parse", source["ref"], cwd=project) == source["commit"]


def test_a_clone_that_cannot_fetch_the_snapshot_is_told_which_ref_is_missing(checkout, tmp_path):
    source = source_revision(checkout)
    git("push", "-q", "origin", "--delete", source["ref"], cwd=checkout)
    other = tmp_path / "other"
    git("clone", "-q", "--no-local", str(tmp_path / "remote.git"), str(other), cwd=tmp_path)
    with pytest.raises(DataValidationError, match=f"its snapshot ref {source['ref']} is not on origin either"):
        ensure_revision(other, source, "85123A")


def test_a_clean_checkout_has_no_snapshot(checkout):
    git("checkout", "-q", "--", "params.yaml", cwd=checkout)
    source = source_revision(checkout)
    assert not source["dirty"] and "ref" not in source and source["commit"] == source["rev"]
