"""At most one run per stockcode at a time, wherever the runs come from.

Two locks, because runs meet in two ways:
- runs that share a Prefect server (deployments, workers, ECS tasks, backfills) take a slot of
  a Prefect global concurrency limit named after the stockcode (limit 1, created here). The slot
  is a lease the run renews while it lives (a thread of Prefect's client): a run that dies
  without letting go — a container killed, a machine lost — frees the stockcode when its lease
  runs out, instead of holding it for ever (Prefect's #17415). If a renewal fails, the run is
  stopped rather than carry on unprotected (``strict``);
- runs on one machine that each start Prefect's temporary API (two ``make run``) do not see
  each other's limits, so they also take a file lock beside the workspaces.
A second run waits for the first, up to a bound, then is refused with a clear message.
"""
from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prefect.client.orchestration import get_client
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists

from tasks.workspace import _file_lock


class StockcodeBusyError(RuntimeError):
    """Another run of the stockcode held it for longer than the run may wait."""


def limit_name(stockcode: str) -> str:
    return "pricelineage-stockcode-" + re.sub(r"[^a-z0-9]+", "-", stockcode.lower()).strip("-")


def ensure_limit(name: str) -> None:
    """Create the one-slot global concurrency limit ``name`` unless it exists."""
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
            return
        except ObjectNotFound:
            pass
        try:
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
        except ObjectAlreadyExists:  # another run created it first
            pass


@contextmanager
def stockcode_lock(stockcode: str, wait_seconds: float, lock_dir: Path, lease_seconds: float) -> Iterator[None]:
    name = limit_name(stockcode)
    started = time.monotonic()
    ensure_limit(name)
    held = False  # a TimeoutError from the run itself is not a busy stockcode
    try:
        with concurrency(name, occupy=1, timeout_seconds=wait_seconds, strict=True, lease_duration=lease_seconds):
            remaining = max(0.0, wait_seconds - (time.monotonic() - started))
            try:
                with _file_lock(lock_dir / f"{name}.lock", remaining):
                    held = True
                    yield
            except TimeoutError as error:
                if held:
                    raise
                raise StockcodeBusyError(_busy(stockcode, wait_seconds, f"file lock: {error}")) from None
    except TimeoutError:
        if held:
            raise
        raise StockcodeBusyError(_busy(stockcode, wait_seconds, f"Prefect concurrency limit {name!r}")) from None


def _busy(stockcode: str, wait_seconds: float, what: str) -> str:
    return (
        f"{stockcode}: another run of this stockcode is still going after {wait_seconds:.0f} s "
        f"({what}); this run is refused — start it again later, or raise "
        "orchestration.stockcode_wait_seconds"
    )
