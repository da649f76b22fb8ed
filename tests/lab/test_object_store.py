"""The lab's SeaweedFS: ready means readable, and stopping leaves nothing behind in /tmp."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest

from sentinel2_l1c.lab.object_store import Identity, SeaweedFS
from tests.helpers import weed_sockets

pytestmark = pytest.mark.lab  # every test starts a SeaweedFS

ADMIN = Identity("admin", ("Admin",))


def test_weed_leaves_no_sockets_but_keeps_a_newer_one_of_the_same_name(tmp_path: Path) -> None:
    """weed's sockets have fixed names in /tmp and outlive a killed weed (hundreds piled up
    there); stopping removes ours, not a file another server made under a name once ours."""
    with SeaweedFS(tmp_path / "store", [ADMIN]) as store:
        assert store.process is not None
        sockets = weed_sockets(psutil.Process(store.process.pid).cmdline())
        assert len(sockets) >= 3, sockets
        newer = sockets[0]
        newer.unlink()
        newer.write_text("another server's")
    assert [path for path in sockets if path.exists()] == [newer]
    newer.unlink()


def test_a_restarted_store_reads_as_soon_as_it_is_ready(tmp_path: Path) -> None:
    """Restarted on its data, weed listed buckets seconds before GETs stopped failing with
    500 InternalError (1 start in 4), and s3fs's retries gave up before that: ready waits
    for a read. The client here does not retry, so a GET too early fails the test."""
    with SeaweedFS(tmp_path / "store", [ADMIN]) as store:
        client = store.client(ADMIN)
        for bucket in ("one", "two", "empty"):
            client.create_bucket(Bucket=bucket)
        client.put_object(Bucket="one", Key="a/b.bin", Body=b"x" * 100_000)
        client.put_object(Bucket="two", Key="nothing", Body=b"")
        client.put_object(Bucket="two", Key="z", Body=b"last")
    for _ in range(3):
        with SeaweedFS(tmp_path / "store", [ADMIN]) as store:
            client = store.client(ADMIN)
            assert client.get_object(Bucket="one", Key="a/b.bin")["Body"].read() == b"x" * 100_000
            assert client.get_object(Bucket="two", Key="z")["Body"].read() == b"last"
