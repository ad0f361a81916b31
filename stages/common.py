"""What every stage CLI shares: error reporting, exit codes, writes that never leave half a file."""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pricing.errors import DataValidationError, DriftGateError

# Exit codes orchestration reads: a validation error is final, a gate refusal is a verdict.
EXIT_DATA_VALIDATION = 2
EXIT_DRIFT_GATE = 3
# Printed before the message so callers that only see stderr (dvc repro) can tell them apart.
DATA_VALIDATION_MARKER = "DataValidationError"
DRIFT_GATE_MARKER = "DriftGateError"


def run_stage(main: Callable[[list[str]], None], argv: list[str] | None = None) -> None:
    """Run a stage's ``main``; turn domain errors into one stderr line and an exit code."""
    args = sys.argv[1:] if argv is None else argv
    try:
        main(args)
    except DataValidationError as error:
        print(f"{DATA_VALIDATION_MARKER}: {error}", file=sys.stderr)
        sys.exit(EXIT_DATA_VALIDATION)
    except DriftGateError as error:
        print(f"{DRIFT_GATE_MARKER}: {error}", file=sys.stderr)
        sys.exit(EXIT_DRIFT_GATE)


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; move it into place only if the block succeeds."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    # mkstemp makes the file private; outputs get the usual permissions.
    os.chmod(tmp, 0o666 & ~_current_umask())
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_directory(target: Path) -> Iterator[Path]:
    """Yield a fresh directory beside ``target``; swap it in for ``target`` only on success."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    os.chmod(staging, 0o777 & ~_current_umask())
    try:
        yield staging
        retired = staging.with_suffix(".old")
        if target.exists():
            os.replace(target, retired)
        os.replace(staging, target)
        shutil.rmtree(retired, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(target: Path, payload: Any) -> None:
    """Write ``payload`` as indented JSON, atomically."""
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")


def stockcode_arg(argv: list[str]) -> str:
    """The single stockcode argument of a per-stockcode stage."""
    if len(argv) != 1 or not argv[0].strip():
        raise DataValidationError("expected exactly one argument: the stockcode")
    return argv[0].strip()
