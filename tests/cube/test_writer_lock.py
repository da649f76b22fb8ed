"""One writer per tile-year and store: two converters at once, a holder that is alive, one
SIGKILLed mid-write, and one on another host that stopped beating; in a folder and a bucket."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from sentinel2_l1c import convert_safe_to_zarr
from sentinel2_l1c.convert_safe_to_zarr import ZarrOptions
from sentinel2_l1c.cube import writer_lock
from sentinel2_l1c.cube.writer_lock import WriterLock
from sentinel2_l1c.errors import InputDataError
from sentinel2_l1c.lab.cdse import LocalCdse
from sentinel2_l1c.lab.layout import lab_locations
from sentinel2_l1c.storage.places import LOCKS, BucketPlace
from tests.helpers import Archive, one_error_line, store_contents

REPO = Path(__file__).resolve().parents[2]
INJECTOR = Path(__file__).resolve().parents[1] / "crash_injector"
LOCK = "35VLH-2024"


def converter(archive: Archive, target: Path, *options: str, crash_at: int = 0) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(INJECTOR), str(REPO)])}
    env["DSLAB_CRASH_AT"] = str(crash_at or "")
    argv = ["--source", str(archive.root), "--target", str(target), "--quiet", *options]
    return subprocess.Popen(
        [sys.executable, "-m", "sentinel2_l1c.convert_safe_to_zarr", *argv],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


@pytest.fixture(scope="module")
def single_run(archive: Archive, tmp_path_factory: pytest.TempPathFactory) -> dict:
    target = tmp_path_factory.mktemp("single") / "zarr"
    convert_safe_to_zarr.convert(ZarrOptions(archive.root, target), show_progress=False)
    return store_contents(target)


def test_two_converters_at_once_one_writes_the_other_waits(
    archive: Archive, single_run: dict, tmp_path: Path
) -> None:
    target = tmp_path / "zarr"
    runs = [converter(archive, target, "--lock-wait", "300") for _ in range(2)]
    results = [run.communicate(timeout=600) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], results
    assert not list((tmp_path / LOCKS).rglob("*.json")), "released"
    contents = store_contents(target)
    assert contents.keys() == single_run.keys()
    for name, values in single_run.items():
        assert (contents[name] == values).all(), name


def test_a_live_holder_is_named_in_one_line_or_waited_for(
    archive: Archive, single_run: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "zarr"
    argv = ["--source", str(archive.root), "--target", str(target)]
    with WriterLock(target, LOCK) as held:
        line = one_error_line(convert_safe_to_zarr.main, argv, capsys)
        assert (
            f"35VLH-2024 is being written by process {os.getpid()} on {socket.gethostname()}"
            in line
        )
        assert held.me.started in line and "--lock-wait SECONDS" in line
        threading.Timer(1.0, held.__exit__, (None, None, None)).start()
        assert convert_safe_to_zarr.main([*argv, "--quiet", "--lock-wait", "60"]) == 0
    assert store_contents(target).keys() == single_run.keys()


def test_the_lock_of_a_sigkilled_converter_is_taken_over(
    archive: Archive, single_run: dict, tmp_path: Path
) -> None:
    target = tmp_path / "zarr"
    killed = converter(archive, target, crash_at=40)
    killed.communicate(timeout=300)
    assert killed.returncode == -signal.SIGKILL
    lock = tmp_path / LOCKS / "zarr" / f"{LOCK}.json"
    assert json.loads(lock.read_text())["pid"] == killed.pid, "killed while holding it"
    assert convert_safe_to_zarr.main(["--source", str(archive.root), "--target", str(target), "--quiet"]) == 0  # fmt: skip
    assert not lock.exists()
    contents = store_contents(target)
    for name, values in single_run.items():
        assert (contents[name] == values).all(), name


def test_another_hosts_lock_is_taken_over_only_without_heartbeat(tmp_path: Path) -> None:
    lock = tmp_path / LOCKS / "zarr" / f"{LOCK}.json"
    lock.parent.mkdir(parents=True)
    holder = {"host": "elsewhere", "pid": 1, "started": "2026-01-01T00:00:00+00:00", "token": "t"}
    lock.write_text(json.dumps(holder))
    with pytest.raises(InputDataError, match="process 1 on elsewhere, writing since 2026-01-01"):
        WriterLock(tmp_path / "zarr", LOCK).__enter__()
    old = time.time() - writer_lock.STALE - 10
    os.utime(lock, (old, old))
    with WriterLock(tmp_path / "zarr", LOCK) as taken:
        assert json.loads(lock.read_text())["token"] == taken.me.token
    assert not lock.exists()


def test_the_lock_on_a_bucket_is_a_conditional_put(
    local_cdse: LocalCdse, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The same lock in a bucket: a second writer stops naming the holder, the lock is no
    object of the store's, a dead holder's lock is taken over, another host's only when stale."""
    locations = local_cdse.locations(lab_locations(tmp_path))
    place = BucketPlace(locations.s3_account, "writer-lock")
    place.client.create_bucket(Bucket=place.bucket)
    key = f"{LOCKS}/{LOCK}.json"
    with WriterLock(place, LOCK) as held:
        with pytest.raises(
            InputDataError, match=f"process {os.getpid()} on .*s3://writer-lock/{key}"
        ):
            WriterLock(place, LOCK).__enter__()
        assert json.loads(place.read(key))["token"] == held.me.token
        assert place.files() == {}, "not an object of the store"
    assert not place.exists()

    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)  # fmt: skip
    dead = {"host": socket.gethostname(), "pid": int(finished.stdout), "started": "2026-01-01", "token": "dead"}  # fmt: skip
    place.write(key, json.dumps(dead).encode())
    with WriterLock(place, LOCK) as taken:
        assert json.loads(place.read(key))["token"] == taken.me.token

    elsewhere = {**dead, "host": "elsewhere", "token": "elsewhere"}
    place.write(key, json.dumps(elsewhere).encode())
    with pytest.raises(InputDataError, match="on elsewhere"):
        WriterLock(place, LOCK).__enter__()
    monkeypatch.setattr(writer_lock, "STALE", -1.0)  # as if its last beat were long ago
    with WriterLock(place, LOCK) as taken:
        assert json.loads(place.read(key))["token"] == taken.me.token
    assert not place.exists()
