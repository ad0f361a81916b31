"""The DVC side of a stage task: run the CLI, read hashes, restore a lock entry, push, git rev.

Everything that talks to DVC (or git) lives here, so the Prefect tasks stay thin and the
domain never sees it. Stage commands run through the DVC CLI in a subprocess — exactly what a
user's ``dvc repro`` does — while hashes come from DVC's Python API in-process, because a
``dvc status`` subprocess per stage would cost more than the no-op run it serves.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from stages.common import DATA_VALIDATION_MARKER, DRIFT_GATE_MARKER, EXIT_DATA_VALIDATION, EXIT_DRIFT_GATE
from tasks.errors import (
    StageCommandError,
    StageDataValidationError,
    StageDriftGateError,
    StageError,
    TransientStageError,
)

LOCK_FILE = "dvc.lock"
# Bump when what a cached result means changes (its shape, the checks behind it).
CACHE_VERSION = 1

# What a fault worth retrying looks like in DVC's own error lines: a stage whose outputs
# another `dvc repro` holds, DVC's repo lock, a remote that timed out or dropped the connection.
TRANSIENT_PATTERNS = (
    r"is busy, it is being blocked by",
    r"Unable to acquire lock",
    r"timed? ?out",
    r"Connection (reset|aborted|refused)",
    r"Temporary failure in name resolution",
    r"Service Unavailable|SlowDown|RequestTimeout",
)
_TRANSIENT = re.compile("|".join(TRANSIENT_PATTERNS), re.IGNORECASE)
# The patterns are read on DVC's logger lines only: the stage's own output shares the stream,
# and a banner saying "(timeout 360 s)" before a crash is no time-out.
DVC_ERROR_PREFIX = "ERROR: "
# DVC's line for a failed stage command quotes the command: its words are the user's, not a
# diagnosis of DVC's.
_FAILED_COMMAND = re.compile(r"failed to run: .*, exited with -?\d+")
_EXITED = re.compile(r"exited with (-?\d+)")
OUTPUT_TAIL_LINES = 200
# dvc's hints after each repro/commit: noise in a flow's log.
_HINT = re.compile(r"^\s*(To track the changes with git|git add |To enable auto staging|dvc config core.autostage"
                   r"|Use `dvc push`)")


def venv_env() -> dict[str, str]:
    """This interpreter's bin folder first on PATH: dvc.yaml's ``python`` is this venv's."""
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}


def find_root(start: Path | str | None = None) -> Path:
    """The DVC project containing ``start`` (default: the working directory)."""
    from dvc.repo import Repo

    return Path(Repo.find_root(str(start or Path.cwd()))).resolve()


@dataclass
class DvcRun:
    args: list[str]
    returncode: int
    tail: list[str] = field(default_factory=list)

    @property
    def output(self) -> str:
        return "\n".join(self.tail)


def run_dvc(args: Sequence[str], root: Path, echo: Callable[[str], None] | None = None) -> DvcRun:
    """Run ``dvc <args>`` in ``root``, streaming each output line to ``echo``; keep the tail."""
    command = [sys.executable, "-m", "dvc", *args]
    tail: deque[str] = deque(maxlen=OUTPUT_TAIL_LINES)
    with subprocess.Popen(
        command,
        cwd=root,
        env=venv_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            line = line.rstrip("\n")
            tail.append(line)
            if echo and line.strip() and not _HINT.match(line):
                echo(line)
        returncode = process.wait()
    return DvcRun(["dvc", *args], returncode, list(tail))


def set_local_config(root: Path, settings: dict[tuple[str, ...], str]) -> None:
    """``dvc config --local`` of each ``(section[, name], option): value``, in one validated
    write through DVC's own config (a subprocess per option costs ~1 s of DVC start-up)."""
    from dvc.config import Config, ConfigError

    from pricing.errors import DataValidationError

    try:
        with Config(dvc_dir=str(root / ".dvc")).edit("local") as config:
            for (*sections, option), value in settings.items():
                section = config
                for name in sections:
                    section = section.setdefault(name, {})
                section[option] = value
    except ConfigError as error:
        names = ", ".join(".".join(keys) for keys in settings)
        raise DataValidationError(f"{root}: DVC refused the local config ({names}): {error}") from error


def dvc_error_lines(lines: Sequence[str]) -> list[str]:
    """The lines DVC's logger printed as errors (``ERROR: ...``)."""
    return [line for line in lines if line.startswith(DVC_ERROR_PREFIX)]


# What `dvc repro` prints just before it starts a stage's command; a stage that is up to date
# prints "didn't change, skipping" instead (and DVC keeps no run cache for persist outputs).
_RUNNING_STAGE = "Running stage '{address}':"


@dataclass
class ReproRun(DvcRun):
    command_ran: bool = False


def repro_stage(address: str, root: Path, echo: Callable[[str], None] | None = None) -> ReproRun:
    """``dvc repro --no-commit --single-item <address>``, and whether the stage's command ran.

    Watched line by line as it streams: a long stage's output can push the line out of the tail.
    """
    running = _RUNNING_STAGE.format(address=address)
    seen: list[str] = []

    def watch(line: str) -> None:
        if line.strip() == running:
            seen.append(line)
        if echo:
            echo(line)

    run = run_dvc(["repro", "--no-commit", "--single-item", address], root, echo=watch)
    return ReproRun(run.args, run.returncode, run.tail, command_ran=bool(seen))


def classify_failure(address: str, run: DvcRun) -> StageError:
    """Turn a failed dvc run into the error orchestration acts on (retry or stop)."""
    output = run.output
    for line in run.tail:
        stripped = line.strip()
        if stripped.startswith(f"{DATA_VALIDATION_MARKER}:"):
            return StageDataValidationError(address, stripped, output)
        if stripped.startswith(f"{DRIFT_GATE_MARKER}:"):
            return StageDriftGateError(address, stripped, output)
    exited = _EXITED.findall(output)
    if exited and int(exited[-1]) == EXIT_DATA_VALIDATION:
        return StageDataValidationError(address, f"{DATA_VALIDATION_MARKER} (exit {EXIT_DATA_VALIDATION})", output)
    if exited and int(exited[-1]) == EXIT_DRIFT_GATE:
        return StageDriftGateError(address, f"{DRIFT_GATE_MARKER} (exit {EXIT_DRIFT_GATE})", output)
    errors = dvc_error_lines(run.tail)
    last = (errors or run.tail[-1:] or ["no output"])[-1]
    message = f"`{' '.join(run.args)}` failed (rc {run.returncode}): {last}"
    if any(_TRANSIENT.search(_FAILED_COMMAND.sub("", line)) for line in errors):
        return TransientStageError(address, message, output)
    return StageCommandError(address, message, output)


# -- hashes ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Fingerprint:
    """What DVC hashes for a stage before running it, and whether the workspace matches."""

    address: str
    key: str  # sha256 over cmd, deps' hashes, params' values (what dvc.lock would record)
    in_sync: bool  # dvc.lock records exactly these inputs, and the outputs match dvc.lock
    inputs: dict[str, Any]


def _open_repo(root: Path):
    from dvc.repo import Repo

    return Repo(str(root))


def _collect(repo, address: str):
    """The one stage ``address`` of the repo's own dvc.yaml (DVC would resolve a bare
    target against the working directory, which need not be the project)."""
    (stage,) = repo.stage.collect(f"{os.path.join(repo.root_dir, 'dvc.yaml')}:{address}")
    return stage


# Files DVC parses to define the stages (dvc.yaml, its templating params, the lock). Parsing
# them is most of a fingerprint's cost (ruamel: ~0.2 s per stage here), and a no-op flow run
# changes none of them, so the parsed stages are kept until one of them changes on disk.
PIPELINE_FILES = ("dvc.yaml", LOCK_FILE, "params.yaml")


@dataclass
class _ParsedPipeline:
    signature: tuple
    repo: Any
    stages: dict[str, Any] = field(default_factory=dict)


_parsed: dict[str, _ParsedPipeline] = {}


def _pipeline_signature(root: Path) -> tuple:
    signature = []
    for name in PIPELINE_FILES:
        try:
            stat = (root / name).stat()
            signature.append((name, stat.st_ino, stat.st_size, stat.st_mtime_ns))
        except FileNotFoundError:
            signature.append((name, None))
    return tuple(signature)


def _parsed_stage(root: Path, address: str):
    """The stage ``address`` as DVC defines it now; parsed again only after a pipeline file changed.

    Only definitions are kept: the hashes of deps and outs are read from the workspace on
    every call (DVC's state database makes an unchanged file a stat).
    """
    key = str(root.resolve())
    signature = _pipeline_signature(root)
    parsed = _parsed.get(key)
    if parsed is None or parsed.signature != signature:
        if parsed is not None:
            parsed.repo.close()
        repo = _open_repo(root)
        pipeline = os.path.join(repo.root_dir, "dvc.yaml")
        # Keyed by name, not `addressing`: that one is relative to the working directory.
        stages = {stage.name: stage for stage in repo.index.stages if stage.path == pipeline}
        parsed = _parsed[key] = _ParsedPipeline(signature, repo, stages)
    if address not in parsed.stages:
        parsed.stages[address] = _collect(parsed.repo, address)  # raises DVC's own error
    return parsed.stages[address]


def fingerprint(root: Path, address: str) -> Fingerprint:
    """Hash a stage's inputs the way ``dvc.lock`` records them, from the workspace.

    DVC's state database remembers file hashes by inode, size and mtime, so an unchanged
    multi-MB dependency costs a stat, not a read.
    """
    stage = _parsed_stage(root, address)
    deps: dict[str, Any] = {}
    params: dict[str, Any] = {}
    in_sync = bool(stage.md5 or _has_lock_entry(root, address)) and not stage.changed_stage()
    for dep in stage.deps:
        recorded = dep.hash_info.value if dep.hash_info else None
        try:
            current = dep.get_hash().value
        except Exception as error:  # a missing file or param: the stage will say so
            current = f"<missing: {type(error).__name__}>"
        if type(dep).__name__ == "ParamsDependency":
            params[dep.def_path] = current
        else:
            deps[dep.def_path] = current
        in_sync = in_sync and recorded is not None and recorded == current
    if in_sync:
        in_sync = all(not out.status() for out in stage.outs)
    inputs = {"version": CACHE_VERSION, "stage": address, "cmd": stage.cmd, "deps": deps, "params": params}
    digest = hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()
    return Fingerprint(address, f"dvc-stage-{digest}", in_sync, inputs)


def unprotect_if_changed(root: Path, address: str) -> list[str]:
    """The outputs a `dvc repro` about to run this stage's command must rewrite (none if the
    stage is up to date), each made a plain file of its own first.

    ``persist: true`` outputs are not removed before the command: DVC unprotects them (a cache
    link becomes a copy, with a new inode and mtime) just before it starts. Done here, by the
    same DVC call, it leaves DVC nothing to change, so an output's inode and mtime then change
    only if the command writes it.
    """
    from dvc.lock import LockError

    stage = _parsed_stage(root, address)
    try:
        with stage.repo.lock:
            if not stage.changed():
                return []
            for out in stage.outs:
                out.unprotect()
    except LockError as error:  # another dvc process holds the repo or an output: retry later
        raise TransientStageError(address, f"{address}: {error}", str(error)) from error
    return [out.def_path for out in stage.outs]


@dataclass(frozen=True)
class Output:
    path: str
    metric: bool
    plot: bool
    cached: bool = True


def stage_outputs(root: Path, address: str) -> list[Output]:
    """The outputs ``dvc.yaml`` declares for a stage (outs, metrics and plots)."""
    with _open_repo(root) as repo:
        stage = _collect(repo, address)
        return [Output(out.def_path, bool(out.metric), bool(out.plot), bool(out.use_cache)) for out in stage.outs]


def write_lock_entries(root: Path, entries: dict[str, dict[str, Any] | None]) -> None:
    """Set (or, for None, drop) ``dvc.lock`` entries of ``root``, under DVC's repo lock."""
    from dvc.utils.serialize import modify_yaml

    path = root / LOCK_FILE
    with _open_repo(root) as repo, repo.lock:
        if not path.exists():
            path.write_text("schema: '2.0'\nstages: {}\n")
        with modify_yaml(str(path)) as data:
            data.setdefault("schema", "2.0")
            stages = data.setdefault("stages", {}) or {}
            data["stages"] = stages
            for address, entry in entries.items():
                if entry is None:
                    stages.pop(address, None)
                else:
                    stages[address] = entry


def cache_dir(root: Path) -> Path:
    """The DVC cache of the project at ``root`` (where its outputs' contents live)."""
    with _open_repo(root) as repo:
        return Path(repo.cache.local_cache_dir).resolve()


# -- dvc.lock -------------------------------------------------------------------------------
def load_dvc_yaml(text: str) -> Any:
    """YAML as DVC reads it (1.2: ``1e-06`` is a number, PyYAML's 1.1 reads a string), as plain data."""
    from ruamel.yaml import YAML

    return json.loads(json.dumps(YAML(typ="safe", pure=True).load(text), default=str))


def read_lock(root: Path) -> dict[str, Any]:
    path = root / LOCK_FILE
    if not path.exists():
        return {}
    return (load_dvc_yaml(path.read_text()) or {}).get("stages", {}) or {}


def lock_entry(root: Path, address: str) -> dict[str, Any] | None:
    return read_lock(root).get(address)


def _has_lock_entry(root: Path, address: str) -> bool:
    return lock_entry(root, address) is not None


def restore_lock_entry(root: Path, address: str, entry: dict[str, Any] | None) -> None:
    """Put a stage's ``dvc.lock`` entry back as it was (or drop it), under DVC's repo lock.

    ``dvc repro --no-commit`` still writes the new hashes to ``dvc.lock``; when the outputs
    then fail our checks, this takes that record back so nothing of the run is committed.
    """
    if not (root / LOCK_FILE).exists() and entry is None:
        return
    write_lock_entries(root, {address: entry})


# -- git ------------------------------------------------------------------------------------
def git_revision(root: Path) -> dict[str, Any]:
    """HEAD of the checkout and whether tracked files differ from it.

    Untracked files do not count: a run's own products (dvc.lock, metrics, the registry) are
    untracked in a fresh clone, and they do not change what code and params ran.
    """

    def git(*args: str) -> str | None:
        result = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
        return result.stdout.strip() if result.returncode == 0 else None

    rev = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"rev": rev, "dirty": bool(status) if status is not None else None}


# -- params overrides for one run -----------------------------------------------------------
def override_strings(overrides: Any) -> list[str]:
    """``{"tune.n_trials": 3}`` or ``["tune.n_trials=3"]`` → ``dvc exp run -S`` strings."""
    if not overrides:
        return []
    if isinstance(overrides, dict):
        return [f"{key}={json.dumps(value)}" for key, value in overrides.items()]
    return [str(item) for item in overrides]


def apply_params_overrides(root: Path, overrides: list[str]) -> None:
    """Apply ``-S`` style overrides to the params files of ``root`` (a run's workspace).

    Uses DVC's own implementation of ``dvc exp run -S`` (Hydra override grammar, unknown keys
    refused, ``file.yaml:key=value`` for other params files), so ``dvc.lock`` records the
    values each stage really ran with.
    """
    if not overrides:
        return
    from dvc.exceptions import InvalidArgumentError
    from dvc.utils.cli_parse import to_path_overrides
    from dvc.utils.hydra import apply_overrides

    from pricing.errors import DataValidationError

    for path, items in to_path_overrides(overrides).items():
        try:
            apply_overrides(root / path, items)
        except InvalidArgumentError as error:
            cause = error.__cause__ or error
            raise DataValidationError(f"invalid params override {items}: {cause}") from error
