"""The local Prefect stack: a Prefect server (SQLite) and a process worker, on 127.0.0.1.

    python -m deployments.local_stack start [--port 4200]   # prints the PREFECT_API_URL to use
    python -m deployments.local_stack status                # exit 1 unless its own server answers
    python -m deployments.local_stack url                   # the running stack's PREFECT_API_URL
    python -m deployments.local_stack stop

Both run in the background, detached from the shell that started them, with their logs and
PIDs in ``.prefect-stack/`` (``--state-dir``); ``stop`` ends them by PID. ``make stack
[PORT=...]``, ``make deploy`` and ``make stack-stop`` call this; the tests start their own
stack the same way, on a free port.

``start`` refuses a port something else listens on, and a server that exits while starting.
A server counts as up only when the process it started is alive and it is the one listening
on the port (its sockets, read from /proc) and answering: another server on the same port is
not this stack. The stores the flows use (registry, DVC remote, workspaces) follow the
environment ``start`` ran in, which the worker inherits: start prints them, status repeats them.
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
from dataclasses import asdict, dataclass, field
from pathlib import Path

DEFAULT_PORT = 4200
DEFAULT_POOL = "pricelineage-process"
DEFAULT_STATE_DIR = Path(".prefect-stack")
STATE_FILE = "stack.json"
# Prefect's defaults suit a busy shared server: a product run refused a slot of its deployment's
# concurrency limit is re-offered 30 s later, and the worker polls every 10 s, so on one machine
# a backfill idles up to ~40 s between products. The stack polls every 5 s and re-offers a
# refused run after 5 s; the environment that starts the stack can set either.
PROMPT_START = {
    "PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS": "5",
    "PREFECT_WORKER_QUERY_SECONDS": "5",
}


@dataclass
class Stack:
    api_url: str
    pool: str
    server_pid: int
    worker_pid: int | None
    state_dir: str
    home: str
    # Where the worker's flow runs read and write, as resolved in its environment at start.
    stores: dict[str, str] = field(default_factory=dict)

    @property
    def port(self) -> int:
        return int(self.api_url.rsplit(":", 1)[1].split("/", 1)[0])

    @property
    def env(self) -> dict[str, str]:
        """The environment a client of this stack needs (CLI, flows, tests)."""
        return {**os.environ, **_settings(Path(self.home)), "PREFECT_API_URL": self.api_url}


class StackError(RuntimeError):
    """The stack cannot start (port taken, server died) or is not what its state file says."""


def _settings(home: Path) -> dict[str, str]:
    return {"PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def port_taken(port: int) -> bool:
    """Something already listens on 127.0.0.1:``port`` (or holds it)."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _listening_sockets(port: int) -> set[str]:
    """Inodes of the sockets listening on ``port`` (any address), from the kernel's tables."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            listening = fields[3] == "0A"
            if listening and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def _process_group(pgid: int) -> list[int]:
    """The processes of group ``pgid``: the server and what it started (its session's leader)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            after_name = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(after_name[2]) == pgid:  # state, ppid, pgrp
            members.append(int(stat.parent.name))
    return members


def listens_on(pid: int, port: int) -> bool:
    """The process ``pid`` started (its group) holds the socket listening on ``port``."""
    if not Path("/proc/net/tcp").exists():  # no procfs (macOS): the PID alive is all there is to check
        return _alive(pid)
    inodes = _listening_sockets(port)
    for member in _process_group(pid):
        try:
            links = [os.readlink(fd) for fd in Path(f"/proc/{member}/fd").iterdir()]
        except OSError:
            continue
        if any(link.startswith("socket:[") and link[8:-1] in inodes for link in links):
            return True
    return False


def serving(stack: Stack) -> bool:
    """This stack's own server is up: its process alive, listening on the port, answering."""
    return _alive(stack.server_pid) and listens_on(stack.server_pid, stack.port) and _healthy(stack.api_url)


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
    project: Path = Path("."),
) -> Stack:
    """Start the server, wait until it answers, create the pool, start the worker."""
    state_dir = state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    existing = read(state_dir)
    if existing and _alive(existing.server_pid):
        raise StackError(f"a stack is already running ({existing.api_url}, PID {existing.server_pid}); stop it first")
    if port_taken(port):
        raise StackError(f"port {port} on 127.0.0.1 is taken by another process: start on another one "
                         "(`make stack PORT=<port>`, or --port)")
    home = (home or state_dir / "home").resolve()
    api_url = f"http://127.0.0.1:{port}/api"
    env = {**PROMPT_START, **{k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}}
    env.update(_settings(home))
    env.update(extra_env or {})
    log = state_dir / "server.log"
    log_start = log.stat().st_size if log.exists() else 0
    server_pid = _spawn(_prefect("server", "start", "--host", "127.0.0.1", "--port", str(port)), env, log)
    deadline = time.monotonic() + timeout
    while not (listens_on(server_pid, port) and _healthy(api_url)):
        if not _alive(server_pid):
            _stop_pid(server_pid)  # what it started, if anything outlived it
            raise StackError(f"the Prefect server exited while starting; the end of {log}:\n"
                             + log.read_text(errors="replace")[log_start:][-2000:])
        if time.monotonic() > deadline:
            _stop_pid(server_pid)
            raise StackError(f"the Prefect server did not answer on {api_url} within {timeout:.0f} s; see {log}")
        time.sleep(0.5)
    client_env = {**env, "PREFECT_API_URL": api_url}
    created = subprocess.run(_prefect("work-pool", "create", pool, "--type", "process", "--overwrite"),
                             env=client_env, capture_output=True, text=True)
    if created.returncode != 0:
        _stop_pid(server_pid)
        raise StackError(f"creating work pool {pool} failed: {created.stdout}{created.stderr}")
    worker_pid = None
    if worker:
        worker_pid = _spawn(_prefect("worker", "start", "--pool", pool), client_env, state_dir / "worker.log")
    stack = Stack(api_url, pool, server_pid, worker_pid, str(state_dir), str(home), stores_in_use(project, env))
    (state_dir / STATE_FILE).write_text(json.dumps(asdict(stack), indent=2))
    return stack


def stores_in_use(project: Path, env: dict[str, str]) -> dict[str, str]:
    """The registry store, DVC remote and workspaces a flow run of ``project`` uses under ``env``
    (the worker's environment), resolved by the settings the flows and the API resolve them with."""
    from stores.settings import load_settings

    settings = load_settings(project, environ=env)
    return {"registry store": settings.registry, "DVC remote": settings.dvc_remote,
            "workspaces": str(settings.workspaces)}


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


def describe(stack: Stack) -> list[str]:
    lines = [f"PREFECT_HOME    {stack.home}"]
    lines += [f"{name:15} {location}" for name, location in stack.stores.items()]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deployments.local_stack", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["start", "stop", "status", "url"])
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--pool", default=DEFAULT_POOL)
    args = parser.parse_args(argv)
    if args.command == "start":
        try:
            stack = start(args.state_dir, args.port, args.pool)
        except StackError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        print(f"Prefect server  {stack.api_url.removesuffix('/api')}  (UI; PID {stack.server_pid})")
        print(f"process worker  pool {stack.pool}  (PID {stack.worker_pid})")
        print(f"logs            {stack.state_dir}/server.log, worker.log")
        print("\n".join(describe(stack)))
        print("(the worker's flow runs use these: they follow the environment this command ran in)")
        print(f"\nexport PREFECT_API_URL={stack.api_url}")
        return 0
    if args.command in ("status", "url"):
        stack = read(args.state_dir)
        if not stack or not serving(stack):
            where = f"{stack.api_url}, PID {stack.server_pid}, is not up" if stack else "none recorded"
            # `url` feeds a shell substitution (make deploy): its complaint goes to the terminal.
            stream = sys.stderr if args.command == "url" else sys.stdout
            print(f"no stack running in {args.state_dir} ({where})", file=stream)
            return 1
        if args.command == "url":
            print(stack.api_url)
            return 0
        worker_up = stack.worker_pid is None or _alive(stack.worker_pid)
        print(f"server {stack.api_url} PID {stack.server_pid} (up); "
              f"worker PID {stack.worker_pid} ({'up' if worker_up else 'DOWN: see worker.log'})")
        print("\n".join(describe(stack)))
        return 0 if worker_up else 1
    print("stopped" if stop(state_dir=args.state_dir) else "no stack recorded")
    return 0


if __name__ == "__main__":
    sys.exit(main())
