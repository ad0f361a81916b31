"""The local stack tells the truth: a taken port or a server that dies at start is refused
with a non-zero exit, "up" means the server this stack started (alive, listening, answering),
and status and url say what is running. Real processes and sockets throughout; the slow test
starts a real Prefect server."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from deployments import local_stack
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[1]
# A real HTTP server in a process of its own, answering what Prefect's health route answers.
HEALTH_SERVER = textwrap.dedent("""
    import http.server, sys
    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/api/health" else 404)
            self.end_headers()
        def log_message(self, *args):
            pass
    http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Health).serve_forever()
""")


def cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deployments.local_stack", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.fixture
def held_port():
    """A port another process listens on (this one, through a plain socket)."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def spawn(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *args], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def end(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def test_a_taken_port_is_refused_before_any_server_starts(held_port, tmp_path):
    done = cli("start", "--port", str(held_port), "--state-dir", str(tmp_path / "stack"))
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"port {held_port} on 127.0.0.1 is taken" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "stack" / "server.log").exists()  # no server was spawned
    assert not (tmp_path / "stack" / local_stack.STATE_FILE).exists()


def test_up_means_the_server_this_stack_started(tmp_path):
    """Another process answering on the port is not this stack's server."""
    port = local_stack.free_port()
    other = spawn("-c", HEALTH_SERVER, str(port))
    ours = spawn("-c", "import time; time.sleep(600)")
    try:
        wait_until(lambda: local_stack.port_taken(port) and local_stack._healthy(f"http://127.0.0.1:{port}/api"))
        api_url = f"http://127.0.0.1:{port}/api"
        impostor = local_stack.Stack(api_url, "pool", ours.pid, None, str(tmp_path), str(tmp_path))
        assert not local_stack.listens_on(ours.pid, port) and not local_stack.serving(impostor)
        assert local_stack.listens_on(other.pid, port)
        assert local_stack.serving(local_stack.Stack(api_url, "pool", other.pid, None, str(tmp_path), str(tmp_path)))
    finally:
        end(other)
        end(ours)


def test_status_and_url_without_a_stack_exit_non_zero(tmp_path):
    for command in ("status", "url"):
        done = cli(command, "--state-dir", str(tmp_path / "none"))
        assert done.returncode == 1 and "no stack running" in done.stdout + done.stderr, done


def test_a_server_that_dies_at_start_is_refused_and_leaves_nothing(tmp_path):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    with pytest.raises(local_stack.StackError, match="exited while starting") as caught:
        local_stack.start(tmp_path / "stack", port=local_stack.free_port(), home=not_a_folder / "home",
                          worker=False, timeout=180)
    assert "unable to open database file" in str(caught.value)  # the end of the server's own log
    assert local_stack.read(tmp_path / "stack") is None


@pytest.mark.slow
def test_a_real_stack_says_what_it_runs_and_refuses_a_second_one_on_its_port(tmp_path):
    registry, workspaces = tmp_path / "registry", tmp_path / "workspaces"
    env = {"PRICELINEAGE_REGISTRY": str(registry), "PRICELINEAGE_WORKSPACES": str(workspaces)}
    port = local_stack.free_port()
    stack = local_stack.start(tmp_path / "stack", port=port, extra_env=env, timeout=180, project=ROOT)
    try:
        assert stack.stores["registry store"] == str(registry) and stack.stores["workspaces"] == str(workspaces)
        status = cli("status", "--state-dir", str(tmp_path / "stack"))
        assert status.returncode == 0, status.stdout + status.stderr
        assert f"PREFECT_HOME    {stack.home}" in status.stdout and str(registry) in status.stdout
        assert cli("url", "--state-dir", str(tmp_path / "stack")).stdout.strip() == stack.api_url
        second = cli("start", "--port", str(port), "--state-dir", str(tmp_path / "second"))
        assert second.returncode == 1 and f"port {port} on 127.0.0.1 is taken" in second.stderr
        assert local_stack.serving(stack)  # the first one is untouched
        os.killpg(stack.server_pid, signal.SIGKILL)
        wait_until(lambda: not local_stack._alive(stack.server_pid))
        after = cli("status", "--state-dir", str(tmp_path / "stack"))
        assert after.returncode == 1 and "is not up" in after.stdout, after.stdout
    finally:
        local_stack.stop(stack)
