"""One workspace per product run, and what lands back in the user's checkout.

A product's run never works in the user's checkout: it gets a clone of the project at the
revision being run (``git clone --shared``: no copy of the history), whose ``params.yaml``
names that one stockcode plus the run's overrides and whose ``dvc.lock`` holds the ETL and
that product's stages only — so DVC's cost per product stays that of a one-product project,
and products run side by side without meeting on DVC's lock. Every workspace uses the
checkout's DVC cache (outputs are hard- or symlinks into it, never copies), so the ETL's
outputs, made once per data version, are checked out by hash in every workspace whose seeded
``dvc.lock`` names them (DVC keeps no run cache for ``persist`` outputs), and an approved model
is in the user's cache the moment it is committed.

The user's files are not written by a run, except what *lands*: for a product configured in
the checkout's ``params.yaml`` whose run was approved with no override (:func:`lands`), its
``dvc.lock`` entries, metrics and plots (so ``dvc metrics show``/``dvc plots show`` keep working
there), under a lock, without touching other entries.
"""
from __future__ import annotations

import fcntl
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pricing.errors import DataValidationError
from pricing.layout import load_params
from pricing.registry import APPROVED
from stores.settings import load_settings
from tasks import dvcrepo
from tasks.stages import lineage_stages

LOCAL_CONFIG = Path(".dvc") / "config.local"
# Links, not copies: the processed data set alone is ~50 MB per workspace otherwise.
CACHE_LINK_TYPES = "hardlink,symlink"
LAND_LOCK = Path(".dvc") / "tmp" / "pricelineage-land.lock"


# Where a dirty-tree run's snapshot commit is kept (and pushed): a ref per commit, never moved.
SNAPSHOT_REFS = "refs/pricelineage/snapshots"


def _git(args: list[str], cwd: Path) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise DataValidationError(
            f"`git {' '.join(args)}` in {cwd} failed (rc {result.returncode}): {result.stderr.strip() or result.stdout.strip()}"
        )
    return result.stdout.strip()


def source_revision(project: Path) -> dict[str, Any]:
    """The revision a run is made of: HEAD, plus the checkout's uncommitted changes to tracked
    files as a commit of their own (``git stash create``: no file touched, no stash entry).

    A snapshot commit is kept by a ref of its own (``refs/pricelineage/snapshots/<sha>``), so
    ``git gc`` never drops what a record names, and pushed to the checkout's git remote where
    it has one, so another clone can fetch it (``ensure_revision``). ``ref`` and ``pushed_to``
    (the remote, or why not) go into the record with the revision."""
    head = _git(["rev-parse", "HEAD"], project)
    # A stale index (files copied or touched) makes `stash create` fail: refresh it first.
    subprocess.run(["git", "update-index", "-q", "--refresh"], cwd=project, capture_output=True)
    snapshot = _git(["-c", "user.name=pricelineage", "-c", "user.email=pricelineage@localhost",
                     "stash", "create"], project)
    source: dict[str, Any] = {"rev": head, "commit": snapshot or head, "dirty": bool(snapshot)}
    if snapshot:
        ref = f"{SNAPSHOT_REFS}/{snapshot}"
        _git(["update-ref", ref, snapshot], project)
        source.update(ref=ref, pushed_to=_push_ref(project, ref))
    return source


def git_remote(project: Path) -> str | None:
    """The checkout's git remote: ``origin`` if it has one, else its first, else None."""
    remotes = _git(["remote"], project).split()
    return "origin" if "origin" in remotes else (remotes[0] if remotes else None)


def _push_ref(project: Path, ref: str) -> str | None:
    remote = git_remote(project)
    if remote is None:
        return None
    pushed = subprocess.run(["git", "push", "--quiet", remote, f"{ref}:{ref}"], cwd=project,
                            capture_output=True, text=True)
    if pushed.returncode != 0:  # the run goes on; the record says the snapshot is only local
        return f"not pushed to {remote}: {pushed.stderr.strip() or pushed.stdout.strip()}"
    return remote


def ensure_revision(project: Path, git: dict[str, Any], stockcode: str) -> str:
    """The commit a record names, present in ``project``: fetched by its snapshot ref from the git
    remote when this clone lacks it. Raises naming what to do when it cannot be had."""
    commit = git.get("commit") or git.get("rev")
    if not commit:
        raise DataValidationError(f"{stockcode}: the record names no git revision to check out")
    if _has_commit(project, commit):
        return commit
    ref, remote = git.get("ref"), git_remote(project)
    if ref and remote:
        subprocess.run(["git", "fetch", "--quiet", remote, f"{ref}:{ref}"], cwd=project, capture_output=True)
        if _has_commit(project, commit):
            return commit
    where = f" (its snapshot ref {ref} is not on {remote or 'any git remote'} either)" if ref else ""
    raise DataValidationError(
        f"{stockcode}: revision {commit} of the record is not in {project}{where} "
        "(fetch it, or run from a clone that has it)")


def _has_commit(project: Path, commit: str) -> bool:
    return subprocess.run(["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=project,
                          capture_output=True).returncode == 0


@dataclass
class Workspace:
    path: Path
    project: Path
    stockcode: str
    overrides: list[str]
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def git(self) -> dict[str, Any]:
        """What the approval record keeps as the run's git revision."""
        return dict(self.source)


def create(
    project: Path,
    stockcode: str,
    overrides: list[str] | None = None,
    source: dict[str, Any] | None = None,
    base: Path | None = None,
    seed: dict[str, dict[str, Any]] | None = None,
) -> Workspace:
    """A fresh workspace for one run of ``stockcode`` (bad overrides fail here, before any stage).

    Its ``dvc.lock`` starts from the product's last known lineage — the entries the user's
    checkout holds for it, else ``seed`` (the product's last record in the registry store) —
    with those outputs linked from the shared cache: a stage whose inputs have not changed
    since is then up to date, and is not run again.
    """
    project = project.resolve()
    source = source or source_revision(project)
    settings = load_settings(project)
    base = (base or settings.workspaces).expanduser()
    base.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f"{stockcode}-{source['commit'][:8]}-", dir=base))
    try:
        _git(["clone", "-q", "--shared", "--no-checkout", str(project), str(path)], base)
        _git(["-c", "advice.detachedHead=false", "checkout", "-q", "--detach", source["commit"]], path)
        if (project / LOCAL_CONFIG).exists():  # the user's remote settings and credentials
            shutil.copy2(project / LOCAL_CONFIG, path / LOCAL_CONFIG)
        config = {("cache", "dir"): str(dvcrepo.cache_dir(project)), ("cache", "type"): CACHE_LINK_TYPES}
        remote_url = settings.dvc_remote_url
        if remote_url:  # pushes and pulls go there; the user's options for that remote still apply
            name = remote_name(remote_url)
            config.update({("remote", name, "url"): remote_url, ("core", "remote"): name})
        dvcrepo.set_local_config(path, config)
        # Through DVC's own `-S` (not a YAML dump): values keep the types DVC reads them with.
        dvcrepo.apply_params_overrides(path, [f"stockcodes=['{stockcode}']", *(overrides or [])])
        _seed_lock(path, project, stockcode, seed or {})
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise
    return Workspace(path, project, stockcode, list(overrides or []), source)


def remote_name(url: str) -> str:
    """The remote of ``.dvc/config`` a URL takes the place of: ``s3`` for S3 (so endpoint and
    credentials set on it in ``config.local`` still apply), ``local`` for a folder."""
    scheme = url.split("://", 1)[0] if "://" in url else "local"
    return {"s3": "s3", "local": "local"}.get(scheme, "storage")


def _seed_lock(path: Path, project: Path, stockcode: str, seed: dict[str, dict[str, Any]]) -> None:
    """Only this product's lineage in the workspace's ``dvc.lock``, from the freshest source."""
    addresses = lineage_stages(stockcode)
    committed = dvcrepo.read_lock(path)  # a committed dvc.lock may hold other products
    landed = dvcrepo.read_lock(project)
    entries: dict[str, dict[str, Any] | None] = {address: None for address in committed if address not in addresses}
    for address in addresses:
        entry = landed.get(address) or seed.get(address) or committed.get(address)
        if entry:
            entries[address] = entry
    if not any(entries.values()) and not committed:
        return
    dvcrepo.write_lock_entries(path, entries)
    seeded = [address for address in addresses if entries.get(address)]
    if seeded:  # what the cache lacks stays missing: that stage just runs
        dvcrepo.run_dvc(["checkout", "--quiet", "--allow-missing", *seeded], path)


def remove(workspace: Workspace) -> None:
    shutil.rmtree(workspace.path, ignore_errors=True)


@contextmanager
def _file_lock(path: Path, wait_seconds: float = 600) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{path} stayed locked for {wait_seconds:.0f} s") from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def configured_stockcodes(project: Path) -> list[str]:
    return [str(code) for code in load_params(project).get("stockcodes") or []]


def lands(outcome: str, overrides: list[str]) -> bool:
    """Does a product run's lineage land in the user's checkout? Only an ``approved`` one made
    at the checkout's own params: no override at all, ``as_of`` and the approvable ones (tune.*)
    included. The checkout's ``dvc.lock`` then holds a model that is served and that its own
    ``params.yaml`` reproduces; an overridden lineage would leave ``dvc status`` reporting
    changed params, and a rejected, candidate or insufficient one is not served. Every other
    run leaves the checkout as it was (its lineage is in the registry store)."""
    return outcome == APPROVED and not overrides


def land(workspace: Workspace, addresses: list[str] | None = None) -> list[str]:
    """Bring a configured product's lineage into the user's checkout; return what landed.

    ``dvc.lock`` entries are merged (other products' entries untouched) and the outputs,
    metrics and plots included, are linked from the shared cache by ``dvc checkout``.
    Products not in the checkout's ``stockcodes`` land nothing: its ``dvc.yaml`` has no stage
    for them (their lineage is in the registry store); a project-wide stage named in
    ``addresses`` (the ETL) lands for any product.
    """
    project = workspace.project
    configured = workspace.stockcode in configured_stockcodes(project)
    wanted = addresses if addresses is not None else (lineage_stages(workspace.stockcode) if configured else [])
    lock = dvcrepo.read_lock(workspace.path)
    # Project-wide stages (the ETL) exist in every checkout; a product's only where configured.
    chosen = [address for address in wanted if address in lock and (configured or "@" not in address)]
    if not chosen:
        return []
    with _file_lock(project / LAND_LOCK):
        dvcrepo.write_lock_entries(project, {address: lock[address] for address in chosen})
        # not --quiet: DVC's refusal (e.g. to delete the user's unsaved files) is the message
        checkout = dvcrepo.run_dvc(["checkout", *chosen], project)
        if checkout.returncode != 0:
            raise dvcrepo.classify_failure(" ".join(chosen), checkout)
    return chosen


def from_record(project: Path, record: Any, base: Path | None = None, fetch: bool = True) -> Workspace:
    """A workspace holding exactly the lineage a registry record describes.

    The project at the record's revision, its overrides applied (so params match the lock
    entries), its ``dvc.lock`` entries, and — with ``fetch`` — their outputs from the shared
    cache or, where the cache lacks them, the DVC remote.
    """
    commit = ensure_revision(project, record.git, record.stockcode)
    source = {"rev": record.git.get("rev") or commit, "commit": commit, "dirty": bool(record.git.get("dirty"))}
    stages = dict(record.lineage.get("stages") or {})
    ws = create(project, record.stockcode, list(record.overrides), source=source, base=base, seed={})
    try:
        dvcrepo.write_lock_entries(ws.path, stages)
        if fetch:
            addresses = list(stages)
            checkout = dvcrepo.run_dvc(["checkout", "--quiet", "--allow-missing", *addresses], ws.path)
            status = dvcrepo.run_dvc(["status", "--quiet", *addresses], ws.path)
            if checkout.returncode != 0 or status.returncode != 0:
                pulled = dvcrepo.run_dvc(["pull", *addresses], ws.path)
                if pulled.returncode != 0:
                    raise dvcrepo.classify_failure(" ".join(addresses), pulled)
    except BaseException:
        remove(ws)
        raise
    return ws


def reproduce(ws: Workspace, addresses: list[str]) -> dict[str, Any]:
    """Run each stage of a checked-out lineage again, in order; return the new lock entries."""
    for address in addresses:
        run = dvcrepo.run_dvc(["repro", "--force", "--single-item", address], ws.path)
        if run.returncode != 0:
            raise dvcrepo.classify_failure(address, run)
    lock = dvcrepo.read_lock(ws.path)
    return {address: lock.get(address) for address in addresses}
