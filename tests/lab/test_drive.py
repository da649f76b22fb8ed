"""lab.drive: the network drive is a real, shaped FUSE mount that the lab always takes down."""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import icechunk
import pytest
import requests
import zarr

from sentinel2_l1c.lab import drive
from sentinel2_l1c.lab.drive import NetworkDrive, mounted
from sentinel2_l1c.lab.network import parse
from sentinel2_l1c.lab.object_store import Identity, SeaweedFS

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(drive.fuse_missing() is not None, reason=f"{drive.fuse_missing()}"),
]
PROFILE = parse("latency_ms=30,mbps=20,metadata_ms=10")


@pytest.fixture
def store(tmp_path: Path) -> SeaweedFS:
    with SeaweedFS(tmp_path / "seaweedfs", [Identity("admin", ("Admin",))], True) as running:
        yield running


def _cold(path: Path) -> None:
    """Out of the page cache, so the next read crosses the (shaped) network."""
    descriptor = os.open(path, os.O_RDONLY)
    os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(descriptor)


def test_reads_cross_the_shaped_network_and_return_the_same_bytes(
    tmp_path: Path, store: SeaweedFS
) -> None:
    data = os.urandom(3_000_000)
    with NetworkDrive(tmp_path / "network", store, PROFILE) as mount:
        assert mounted(mount.mount_point) and mount.describe().startswith("weed mount")
        target = mount.mount_point / "folder" / "file.bin"
        target.parent.mkdir()
        target.write_bytes(data)
        _cold(target)
        begin = time.perf_counter()
        with target.open("rb") as handle:
            handle.seek(1000)
            assert handle.read(1000) == data[1000:2000]
        small = time.perf_counter() - begin
        assert small >= PROFILE.latency_ms / 1000  # a read waits for the network's latency
        _cold(target)
        begin = time.perf_counter()
        assert hashlib.sha256(target.read_bytes()).digest() == hashlib.sha256(data).digest()
        whole = time.perf_counter() - begin
        assert whole >= len(data) / (PROFILE.mbps * 1e6)  # N MB take at least N / bandwidth
    assert not mounted(tmp_path / "network")
    assert not any((tmp_path / "network").iterdir())  # the files live in the filer


def _received(pid: int) -> int:
    """Bytes a process has read (sockets included)."""
    with open(f"/proc/{pid}/io") as counters:
        return next(int(line.split()[1]) for line in counters if line.startswith("rchar"))


@pytest.mark.parametrize("connections, most_mb", [(None, None), (1, 3)])
def test_connections_bound_the_mounts_read_ahead(
    tmp_path: Path, store: SeaweedFS, connections: int | None, most_mb: int | None
) -> None:
    """A 64 kB read in the middle of a 12 MB file: unbounded, the mount prefetches several
    of the file's next 1 MB chunks; with ``connections=1`` it fetches two at most."""
    shaped = "latency_ms=8,mbps=100"
    profile = parse(f"{shaped},connections={connections}" if connections else shaped)
    with NetworkDrive(tmp_path / "network", store, profile) as mount:
        target = mount.mount_point / "file.bin"
        target.write_bytes(os.urandom(12_000_000))
        _cold(target)
        assert mount.process is not None
        before = _received(mount.process.pid)
        with target.open("rb", buffering=0) as handle:
            handle.seek(5_000_000)
            handle.read(65536)
        time.sleep(1)  # prefetches still in flight land
        fetched = (_received(mount.process.pid) - before) / 1e6
    if most_mb is None:
        assert fetched > 4
    else:
        assert fetched < most_mb


def test_files_survive_a_restart_of_the_drive(tmp_path: Path, store: SeaweedFS) -> None:
    with NetworkDrive(tmp_path / "network", store, PROFILE) as mount:
        (mount.mount_point / "kept.txt").write_text("still here")
    with NetworkDrive(tmp_path / "network", store, PROFILE) as mount:
        assert (mount.mount_point / "kept.txt").read_text() == "still here"


_LAB = """
import sys, time
from pathlib import Path
from sentinel2_l1c.lab.drive import NetworkDrive
from sentinel2_l1c.lab.network import parse
from sentinel2_l1c.lab.object_store import Identity, SeaweedFS
lab = Path(sys.argv[1])
store = SeaweedFS(lab / "seaweedfs", [Identity("admin", ("Admin",))], True).start()
mount = NetworkDrive(lab / "network", store, parse("latency_ms=1")).start()
(lab / "network" / "written.txt").write_text("before the kill")
print(mount.process.pid, store.process.pid, flush=True)
time.sleep(600)
"""


def test_a_killed_lab_leaves_nothing_the_next_start_cannot_clean(tmp_path: Path) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", _LAB, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout is not None
    mount_pid, store_pid = map(int, parent.stdout.readline().split())
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    parent.stdout.close()
    deadline = time.monotonic() + 10
    while _alive(mount_pid) or _alive(store_pid):  # both end with their parent
        assert time.monotonic() < deadline, "the servers outlived the SIGKILLed lab"
        time.sleep(0.1)
    with (
        SeaweedFS(tmp_path / "seaweedfs", [Identity("admin", ("Admin",))], True) as store,
        NetworkDrive(tmp_path / "network", store, PROFILE) as mount,
    ):
        assert (mount.mount_point / "written.txt").read_text() == "before the kill"
    assert not mounted(tmp_path / "network")


def test_without_fuse_the_drive_is_a_folder_said_in_one_line(
    tmp_path: Path,
    store: SeaweedFS,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(drive, "fuse_missing", lambda: "/dev/fuse does not exist")
    with (
        caplog.at_level(logging.WARNING),
        NetworkDrive(tmp_path / "network", store, PROFILE) as mount,
    ):
        assert not mounted(mount.mount_point) and mount.mount_point.is_dir()
        assert mount.describe() == "folder (no FUSE: /dev/fuse does not exist)"
    assert [r.getMessage() for r in caplog.records] == [
        "the lab's network drive is a plain folder: /dev/fuse does not exist"
    ]


def test_a_plain_folder_drive_is_kept_aside_when_the_mount_comes(
    tmp_path: Path, store: SeaweedFS
) -> None:
    (tmp_path / "network").mkdir()
    (tmp_path / "network" / "old.txt").write_text("old")
    with NetworkDrive(tmp_path / "network", store, PROFILE) as mount:
        assert not (mount.mount_point / "old.txt").exists()
    (aside,) = tmp_path.glob("network.folder-*")
    assert (aside / "old.txt").read_text() == "old"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def test_an_icechunk_repo_reads_the_same_after_a_remount(tmp_path: Path, store: SeaweedFS) -> None:
    """icechunk's hard-link-then-rename leaves files sharing an inode number in the filer;
    the next mount must not serve one's bytes for the other."""
    with NetworkDrive(tmp_path / "network", store, PROFILE) as mount:
        repo = icechunk.Repository.create(
            icechunk.local_filesystem_storage(str(mount.mount_point / "ice"))
        )
        for number in range(3):
            session = repo.writable_session("main")
            group = zarr.open_group(session.store, mode="a")
            group.create_array(f"a{number}", shape=(4,), dtype="u2")[:] = number
            session.commit(f"commit {number}")
    with NetworkDrive(tmp_path / "network", store, PROFILE) as mount:
        files = [p for p in (mount.mount_point / "ice").rglob("*") if p.is_file()]
        inodes = [p.stat().st_ino for p in files]
        assert len(set(inodes)) == len(inodes)
        repo = icechunk.Repository.open(
            icechunk.local_filesystem_storage(str(mount.mount_point / "ice"))
        )
        group = zarr.open_group(repo.readonly_session("main").store, mode="r")
        assert sorted(group.array_keys()) == ["a0", "a1", "a2"]
        assert int(group["a2"][0]) == 2


def test_healing_a_file_resumes_after_a_kill(store: SeaweedFS) -> None:
    """A kill between removing a file and writing it anew leaves its backup: restored."""
    filer = f"http://127.0.0.1:{store.filer_ports[0]}"
    requests.put(f"{filer}/drive/folder/x{drive.HEAL_SUFFIX}", data=b"kept", timeout=10)
    assert drive.heal_inodes(filer, "/drive") == 0
    assert requests.get(f"{filer}/drive/folder/x", timeout=10).content == b"kept"
    backup = requests.get(f"{filer}/drive/folder/x{drive.HEAL_SUFFIX}", timeout=10)
    assert backup.status_code == 404
