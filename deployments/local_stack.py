"""The local Prefect stack: a Prefect server (SQLite) and a process worker, on 127.0.0.1.

    python -m deployments.local_stack start     # prints the PREFECT_API_URL to use
    python -m deployments.local_stack status
    python -m deployments.local_stack stop

Both run in the background, detached from the shell that started them, with their logs and
PIDs in ``.prefect-stack/`` (``--state-dir``); ``stop`` ends them by PID. ``make stack`` and
``make stack-stop`` call this; the tests start their own stack the same way, on a free port.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

DEFAULT_PORT = 4200
DEFAULT_POOL = "pricelineage-process"
DEFAULT_STATE_DIR = Path(".prefect-stack")
STATE_FILE = "stack.json"


@dataclass
class Stack:
    api_url: str
    pool: str
    server_pid: int
    worker_pid: int | None
    state_dir: str
    home: str

    @property
    def env(self) -> dict[str, str]:
        """The environment a client of this stack needs (CLI, flows, tests)."""
        return {**os.environ, **_settings(Path(self.home)), "PREFECT_API_URL": self.api_url}


def _settings(home: Path) -> dict[str, str]:
    return {"PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _healthy(api_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by the process that started it) is not alive.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return True


def _spawn(args: list[str], env: dict[str, str], log: Path) -> int:
    handle = log.open("ab")
    process = subprocess.Popen(
        args, env=env, stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
    )
    return process.pid


def _prefect(*args: str) -> list[str]:
    return [sys.executable, "-m", "prefect", *args]


def start(
    state_dir: Path = DEFAULT_STATE_DIR,
    port: int = DEFAULT_PORT,
    pool: str = DEFAULT_POOL,
    home: Path | None = None,
    worker: bool = True,
    extra_env: dict[str, str] | None = None,
    timeout: float = 90,
) -> Stack:
    """Start the server, wait until it answers, create the pool, start the worker."""
    state_dir = state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    existing = read(state_dir)
    if existing and _alive(existing.server_pid):
        raise RuntimeError(f"a stack is already running ({existing.api_url}, PID {existing.server_pid}); stop it first")
    home = (home or state_dir / "home").resolve()
    api_url = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(_settings(home))
    env.update(extra_env or {})
    server_pid = _spawn(_prefect("server", "start", "--host", "127.0.0.1", "--port", str(port)), env,
                        state_dir / "server.log")
    deadline = time.monotonic() + timeout
    while not _healthy(api_url):
        if not _alive(server_pid):
            raise RuntimeError(f"the Prefect server exited at start; see {state_dir / 'server.log'}:\n"
                               + (state_dir / "server.log").read_text()[-2000:])
        if time.monotonic() > deadline:
            _stop_pid(server_pid)
            raise RuntimeError(f"the Prefect server did not answer on {api_url} within {timeout:.0f} s")
        time.sleep(0.5)
    client_env = {**env, "PREFECT_API_URL": api_url}
    created = subprocess.run(_prefect("work-pool", "create", pool, "--type", "process", "--overwrite"),
                             env=client_env, capture_output=True, text=True)
    if created.returncode != 0:
        _stop_pid(server_pid)
        raise RuntimeError(f"creating work pool {pool} failed: {created.stdout}{created.stderr}")
    worker_pid = None
    if worker:
        worker_pid = _spawn(_prefect("worker", "start", "--pool", pool), client_env, state_dir / "worker.log")
    stack = Stack(api_url, pool, server_pid, worker_pid, str(state_dir), str(home))
    (state_dir / STATE_FILE).write_text(json.dumps(asdict(stack), indent=2))
    return stack


def read(state_dir: Path = DEFAULT_STATE_DIR) -> Stack | None:
    path = state_dir / STATE_FILE
    return Stack(**json.loads(path.read_text())) if path.exists() else None


def _stop_pid(pid: int | None, grace: float = 15) -> None:
    if not _alive(pid):
        return
    try:
        os.killpg(pid, signal.SIGTERM)  # the process and what it started (the server's workers)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _alive(pid):
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def stop(stack: Stack | None = None, state_dir: Path = DEFAULT_STATE_DIR) -> bool:
    stack = stack or read(state_dir)
    if stack is None:
        return False
    _stop_pid(stack.worker_pid)
    _stop_pid(stack.server_pid)
    (Path(stack.state_dir) / STATE_FILE).unlink(missing_ok=True)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deployments.local_stack", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["start", "stop", "status"])
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--pool", default=DEFAULT_POOL)
    args = parser.parse_args(argv)
    if args.command == "start":
        stack = start(args.state_dir, args.port, args.pool)
        print(f"Prefect server  {stack.api_url.removesuffix('/api')}  (UI; PID {stack.server_pid})")
        print(f"process worker  pool {stack.pool}  (PID {stack.worker_pid})")
        print(f"logs            {stack.state_dir}/server.log, worker.log")
        print(f"\nexport PREFECT_API_URL={stack.api_url}")
        return 0
    if args.command == "status":
        stack = read(args.state_dir)
        if not stack or not _alive(stack.server_pid):
            print("no stack running")
            return 1
        print(f"server {stack.api_url} PID {stack.server_pid} ({'up' if _healthy(stack.api_url) else 'not answering'}); "
              f"worker PID {stack.worker_pid} ({'up' if _alive(stack.worker_pid) else 'down'})")
        return 0
    print("stopped" if stop(state_dir=args.state_dir) else "no stack recorded")
    return 0


if __name__ == "__main__":
    sys.exit(main())
