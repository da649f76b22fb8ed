"""The lab's network drive: a FUSE mount of its SeaweedFS filer (``weed mount``), shaped.

On the users' platform the network drive is Lustre: every file open asks a metadata server,
every read crosses the network. A local folder answers in microseconds and made the lab rank
network-drive routes first. So the lab mounts its own filer at ``LAB/network``: the mount's
data requests go through a shaping ``LabProxy`` (latency per request, per-client and shared
bandwidth) and its metadata requests (gRPC) through a ``DelayProxy`` (``metadata_ms``); the
mount keeps no chunk cache of its own, and the profile's ``connections`` caps its fetches in
flight, which is also its read-ahead (unbounded, a 64 kB read fetched 8 MB). Files live in
the filer (``LAB/seaweedfs``), so they survive restarts. Where FUSE is missing the drive is
a plain folder, said in one warning line and in the results' environment.

SeaweedFS's filer can store one inode number for several files: icechunk's local storage
hard-links ``repo`` to ``overwritten/…`` and renames a new ``repo`` over it, and the new entry
keeps the old number. The mount that wrote them keeps them apart, but a new mount hands the
kernel one inode for both, which then serves one file's size and pages for the other. So
before mounting, ``heal_inodes`` rewrites every file that shares its inode number through the
filer's HTTP API (a new entry, a new number), crash-safe: a backup copy first, removed last.

The mount is stopped with the lab's other servers: its process by PID, then the mount point
is detached (a killed ``weed mount`` leaves a dead mount behind). A lab whose parent was
SIGKILLed leaves both: the next start stops the recorded process (if it is still our weed
mount) and detaches the mount point before mounting again.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import requests

from sentinel2_l1c.errors import DslabError
from sentinel2_l1c.lab.network import NetworkProfile
from sentinel2_l1c.lab.object_store import SeaweedFS, free_ports, weed_binary
from sentinel2_l1c.lab.proxy import ProxyProcess
from sentinel2_l1c.run.processes import die_with_parent, stop_process

log = logging.getLogger(__name__)

FILER_FOLDER = "/drive"  # the drive's root in the filer
MOUNT_TIMEOUT = 30.0
HEAL_TIMEOUT = 60.0
STOP_TIMEOUT = 5.0
# weed mount finds the filer's gRPC port 10000 above its HTTP port (an explicit
# ``host:port.grpc`` breaks its filerProxy reads, which take the whole string as the address).
GRPC_OFFSET = 10000
_MNT_DETACH = 2


def fuse_missing() -> str | None:
    """Why a FUSE mount cannot be made here, or None if it can."""
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse does not exist"
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        return "/dev/fuse is not readable and writable for this user"
    if os.geteuid() != 0:
        return "mounting without fusermount needs root"
    return None


def _canonical(path: Path) -> Path:
    """``path`` without symlinks, without a stat of its own (a dead FUSE mount fails one)."""
    path = Path(path).absolute()
    return Path(os.path.realpath(path.parent)) / path.name


def mounted(path: Path) -> bool:
    """Whether ``path`` is a mount point, alive or dead."""
    target = str(_canonical(path))
    with open("/proc/self/mountinfo") as mounts:
        return any(line.split()[4] == target for line in mounts)


def detach(path: Path) -> None:
    """Detach the mount at ``path`` (lazily: a dead FUSE mount cannot be unmounted otherwise)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.umount2(os.fsencode(_canonical(path)), _MNT_DETACH) != 0:
        error = ctypes.get_errno()
        raise DslabError(f"cannot unmount the lab's network drive {path}: {os.strerror(error)}")


def _free_port_pair() -> int:
    """A free port on 127.0.0.1 whose +GRPC_OFFSET is free too."""
    for _ in range(100):
        (port,) = free_ports(1)
        if port + GRPC_OFFSET < 65536:
            try:
                with socket.create_server(("127.0.0.1", port + GRPC_OFFSET)):
                    return port
            except OSError:
                continue
    raise DslabError("no free pair of ports for the lab's network drive")


class NetworkDrive:
    """``with NetworkDrive(mount_point, store, profile) as drive:``; ``drive.describe()``
    says what it is (recorded with results)."""

    def __init__(self, mount_point: Path, store: SeaweedFS, profile: NetworkProfile) -> None:
        self.mount_point = _canonical(mount_point)
        self.store = store
        self.profile = profile
        self.state = store.data_dir / "drive"  # PID file, log and the mount's own cache folder
        self.process: subprocess.Popen[bytes] | None = None
        self.proxies = ExitStack()
        self.fallback: str | None = None

    def describe(self) -> str:
        if self.fallback:
            return f"folder (no FUSE: {self.fallback})"
        return f"weed mount, {self.profile.describe()}"

    def start(self) -> NetworkDrive:
        self.state.mkdir(parents=True, exist_ok=True)
        self._clean_up_after_a_killed_lab()
        self.fallback = fuse_missing()
        if self.fallback:
            log.warning("the lab's network drive is a plain folder: %s", self.fallback)
            self.mount_point.mkdir(parents=True, exist_ok=True)
            return self
        self._set_plain_folder_aside()
        try:
            healed = heal_inodes(f"http://127.0.0.1:{self.store.filer_ports[0]}", FILER_FOLDER)
            if healed:
                log.info("rewrote %d files of the network drive that shared inodes", healed)
            self._mount()
        except BaseException:
            self.stop()
            raise
        return self

    def _clean_up_after_a_killed_lab(self) -> None:
        pid_file = self.state / "mount.pid"
        if pid_file.is_file():
            pid = int(pid_file.read_text() or 0)
            if pid and _is_our_mount(pid, self.mount_point):
                os.kill(pid, signal.SIGKILL)
            pid_file.unlink()
        if mounted(self.mount_point):
            detach(self.mount_point)

    def _set_plain_folder_aside(self) -> None:
        """A drive that was a plain folder keeps its files, beside the mount point."""
        if self.mount_point.is_dir() and any(self.mount_point.iterdir()):
            aside = self.mount_point.with_name(f"{self.mount_point.name}.folder-{time.time():.0f}")
            self.mount_point.rename(aside)
            log.warning(
                "the lab's network drive is now a FUSE mount; its old plain folder is %s", aside
            )
        self.mount_point.mkdir(parents=True, exist_ok=True)

    def _mount(self) -> None:
        http, grpc = self.store.filer_ports
        port = _free_port_pair()
        data = self.proxies.enter_context(ProxyProcess(http, self.profile, port=port))
        self.proxies.enter_context(
            ProxyProcess(grpc, self.profile, tcp=True, port=port + GRPC_OFFSET)
        )
        debug_port, peer_port = free_ports(2)
        cache = self.state / "cache"
        cache.mkdir(exist_ok=True)
        command = [
            weed_binary(), "mount",
            f"-filer=127.0.0.1:{data.port}",
            f"-filer.path={FILER_FOLDER}", f"-dir={self.mount_point}", "-dirAutoCreate",
            "-volumeServerAccess=filerProxy",  # every byte through the filer, so the proxy
            "-chunkSizeLimitMB=1",  # files in 1 MB chunks, read whole: Lustre's stripes, RPCs
            "-cacheCapacityMB=0",  # no chunk cache on local disk: reads cross the network
            f"-cacheDir={cache}", f"-localSocket={self.state / 'mount.sock'}",
            f"-debug.port={debug_port}", f"-peer.listen=127.0.0.1:{peer_port}",
        ]  # fmt: skip
        if self.profile.connections:  # also the mount's read-ahead: it prefetches a file's
            # next chunks with every fetch it may still start (a Lustre client: RPCs in flight)
            command.append(f"-concurrentReaders={self.profile.connections}")
        with open(self.state / "mount.log", "ab") as log_file:
            self.process = subprocess.Popen(
                command, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent(),
            )  # fmt: skip
        (self.state / "mount.pid").write_text(str(self.process.pid))
        deadline = time.monotonic() + MOUNT_TIMEOUT
        while not mounted(self.mount_point):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise DslabError(
                    f"the lab's network drive did not mount at {self.mount_point}; "
                    f"see {self.state / 'mount.log'}"
                )
            time.sleep(0.1)
        log.info("network drive %s mounted (%s)", self.mount_point, self.describe())

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, STOP_TIMEOUT)
            self.process = None
            (self.state / "mount.pid").unlink(missing_ok=True)
        if not self.fallback and mounted(self.mount_point):
            detach(self.mount_point)
        self.proxies.close()

    def __enter__(self) -> NetworkDrive:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


HEAL_SUFFIX = ".dslab-heal"  # a healed file's backup copy while it is rewritten
_LISTING_PAGE = 1000


def heal_inodes(filer: str, root: str) -> int:
    """Give every file under ``root`` that shares its inode number with another a new entry
    (see the module's docstring); returns how many were rewritten. A backup copy is written
    first and removed last, so a kill at any point leaves the file or its backup, which the
    next call restores."""
    with requests.Session() as http:
        files = list(_filer_files(http, filer, root))
        for entry in files:  # an earlier call's leftovers: restore, then drop the backup
            path = entry["FullPath"]
            if path.endswith(HEAL_SUFFIX):
                original = path.removesuffix(HEAL_SUFFIX)
                if not any(e["FullPath"] == original for e in files):
                    _put(http, filer, original, _get(http, filer, path))
                _call(http.delete, f"{filer}{path}")
        sharing: dict[int, list[str]] = {}
        for entry in files:
            if not entry["FullPath"].endswith(HEAL_SUFFIX):
                sharing.setdefault(entry.get("Inode", 0), []).append(entry["FullPath"])
        healed = [
            p for number, paths in sharing.items() if number and len(paths) > 1 for p in paths
        ]
        for path in healed:
            data = _get(http, filer, path)
            _put(http, filer, path + HEAL_SUFFIX, data)
            _call(http.delete, f"{filer}{path}")
            _put(http, filer, path, data)
            _call(http.delete, f"{filer}{path}{HEAL_SUFFIX}")
        return len(healed)


def _filer_files(http: requests.Session, filer: str, folder: str) -> Iterator[dict]:
    """Every file entry under ``folder`` (the filer's JSON listing, page by page)."""
    last = ""
    while True:
        answer = _call(
            http.get,
            f"{filer}{folder.rstrip('/')}/",
            missing_ok=True,
            params={"limit": _LISTING_PAGE, "lastFileName": last},
            headers={"Accept": "application/json"},
        )
        if answer.status_code == 404:
            return
        entries = answer.json().get("Entries") or []
        for entry in entries:
            if entry["Mode"] & _DIRECTORY_MODE:
                yield from _filer_files(http, filer, entry["FullPath"])
            else:
                yield entry
        if len(entries) < _LISTING_PAGE:
            return
        last = entries[-1]["FullPath"].rsplit("/", 1)[-1]


_DIRECTORY_MODE = 1 << 31  # Go's os.ModeDir, as the filer reports modes


def _get(http: requests.Session, filer: str, path: str) -> bytes:
    return _call(http.get, f"{filer}{path}").content


def _put(http: requests.Session, filer: str, path: str, data: bytes) -> None:
    _call(http.put, f"{filer}{path}", data=data)


def _call(
    method: Callable[..., requests.Response], url: str, missing_ok: bool = False, **kwargs: object
) -> requests.Response:
    """One filer request on loopback, with a deadline; a failure is a DslabError."""
    try:
        answer = method(url, timeout=HEAL_TIMEOUT, **kwargs)
    except requests.RequestException as err:
        raise DslabError(f"the lab's filer did not answer {url}: {err}") from None
    if answer.status_code >= 400 and not (missing_ok and answer.status_code == 404):
        raise DslabError(f"the lab's filer answered {answer.status_code} to {url}")
    return answer


def _is_our_mount(pid: int, mount_point: Path) -> bool:
    """Whether ``pid`` is still the ``weed mount`` of ``mount_point`` (not a reused PID)."""
    try:
        arguments = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"mount" in arguments and f"-dir={mount_point}".encode() in arguments
