"""A run's hold on its stockcode is a lease on a real Prefect server (SQLite): a live run
keeps its stockcode past the lease by renewing it, and a run killed without letting go (an
ECS container stopped, a machine lost) frees its stockcode once the lease runs out, instead of
holding it for ever. Each process has a lock folder of its own, as containers do: only the
Prefect lease stands between them."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.prefect_server import prefect_env, running_prefect_server, sqlite_url

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
LEASE_SECONDS = 60.0  # the least Prefect's server grants
# The server's sweep of expired leases runs every 15 s by default; every 2 s here, so the test
# waits for the lease, not for the sweep.
SWEEP_SECONDS = 2

HOLD = """
import sys, time
from pathlib import Path
from tasks.locks import stockcode_lock
stockcode, locks, lease = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3])
with stockcode_lock(stockcode, 30, locks, lease_seconds=lease):
    print("held", flush=True)
    time.sleep(3600)
"""

TAKE = """
import sys, time
from pathlib import Path
from tasks.locks import StockcodeBusyError, stockcode_lock
stockcode, locks, lease, wait = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
started = time.monotonic()
try:
    with stockcode_lock(stockcode, wait, locks, lease_seconds=lease):
        print(f"took {time.monotonic() - started:.1f}", flush=True)
except StockcodeBusyError as error:
    print(f"busy {error}", flush=True)
"""


def hold(stockcode: str, locks: Path, env: dict[str, str]) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", HOLD, stockcode, str(locks), str(LEASE_SECONDS)], cwd=ROOT,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    line = process.stdout.readline()
    assert line == b"held\n", (line, process.stderr.read() if process.poll() is not None else "")
    return process


def take(stockcode: str, locks: Path, env: dict[str, str], wait: float) -> str:
    ran = subprocess.run([sys.executable, "-c", TAKE, stockcode, str(locks), str(LEASE_SECONDS), str(wait)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=wait + 120)
    assert ran.returncode == 0 and ran.stdout, ran.stderr[-3000:]
    return ran.stdout.strip().splitlines()[-1]


def test_a_live_run_keeps_its_stockcode_past_its_lease_and_a_killed_one_frees_it(tmp_path):
    with running_prefect_server(tmp_path / "server", sqlite_url(tmp_path),
                                PREFECT_SERVER_SERVICES_REPOSSESSOR_LOOP_SECONDS=str(SWEEP_SECONDS)) as (api_url, _):
        env = prefect_env(tmp_path / "client", PREFECT_API_URL=api_url, PYTHONPATH=str(ROOT))
        live = hold("85123A", tmp_path / "locks-live", env)
        killed = hold("22423", tmp_path / "locks-killed", env)
        held_at = time.monotonic()
        try:
            os.killpg(killed.pid, signal.SIGKILL)  # no exit handler runs: nothing lets go
            killed.wait(30)
            killed_at = time.monotonic()

            taken = take("22423", tmp_path / "locks-other", env, wait=LEASE_SECONDS + 30)
            assert taken.startswith("took "), taken
            freed_after = time.monotonic() - killed_at
            print(f"22423 freed {freed_after:.1f} s after its holder was killed")
            assert freed_after <= LEASE_SECONDS + SWEEP_SECONDS + 10, freed_after

            # By now the live holder's first lease would have run out and been swept had it
            # not been renewed.
            time.sleep(max(0.0, held_at + LEASE_SECONDS + 2 * SWEEP_SECONDS + 1 - time.monotonic()))
            assert live.poll() is None
            refused = take("85123A", tmp_path / "locks-other", env, wait=5)
            assert refused.startswith("busy 85123A: another run of this stockcode is still going"), refused
        finally:
            for process in (live, killed):
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(30)
